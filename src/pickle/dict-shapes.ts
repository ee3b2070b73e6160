/**
 * Compiled setters for the key sequences that object dicts keep repeating.
 *
 * A list of records (`[{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}, ...]`)
 * reaches the unpickler as one SETITEMS per record, each with the same keys in
 * the same order. Stored through one `obj[k] = v` site, those keys make V8's
 * keyed store megamorphic: every property pays a stub-cache lookup and a map
 * transition found the slow way. A setter compiled for one key sequence has
 * one store site per key, each monomorphic, so a record's properties cost
 * about what a literal's do (6-key records: 123 -> 55 ns in a micro-benchmark,
 * most of the rest being the null prototype).
 *
 * The compiled code never contains pickle data: its text is made of indexes
 * and a counter only, and the keys arrive as arguments. Keys are the ones an
 * object dict may hold directly (strings, not array indexes, not
 * `__proto__`), checked by the caller before a sequence is recorded.
 *
 * Hostile input cannot make this cost without bound: at most SHAPE_SLOTS
 * sequences are watched at a time, a sequence is compiled only after
 * COMPILE_AFTER uses, and a process compiles at most MAX_COMPILES setters in
 * its life (after that, dicts take the generic path, as before). Where code
 * generation from strings is disallowed (`--disallow-code-generation-from-strings`)
 * the first failure turns compiling off.
 */

/** Sets `stack[from + 1], stack[from + 3], ...` as the values of the shape's keys. */
export type ShapeSetter = (obj: Record<string, unknown>, stack: unknown[], from: number) => void;

interface Shape {
  /** The keys as last matched: the last load's own string objects, so that `===` mostly compares pointers. */
  match: unknown[];
  uses: number;
  setter: ShapeSetter | null;
}

/** Fewest and most keys a shape may have. */
export const SHAPE_MIN_KEYS = 2;
export const SHAPE_MAX_KEYS = 24;
const SHAPE_SLOTS = 8;
const SHAPE_MAX_KEY_LENGTH = 64;
const COMPILE_AFTER = 16;
export const MAX_COMPILES = 256;

const shapes: Shape[] = [];
let nextSlot = 0;
let compiles = 0;
let codegen = true;

/**
 * The setter for the `count` keys at `stack[from], stack[from + 2], ...`;
 * null when that sequence is watched but has no setter (yet), and undefined
 * when it is not watched. Counts the use of a watched sequence.
 */
export function shapeSetter(stack: unknown[], from: number, count: number): ShapeSetter | null | undefined {
  const k0 = stack[from];
  for (let s = 0; s < shapes.length; s++) {
    const shape = shapes[s]!;
    const match = shape.match;
    if (match.length !== count || match[0] !== k0) continue;
    let j = 1;
    for (; j < count; j++) if (match[j] !== stack[from + 2 * j]) break;
    if (j < count) continue;
    // Equal keys: keep this load's string objects, which later records of the load share.
    match[0] = k0;
    for (j = 1; j < count; j++) match[j] = stack[from + 2 * j];
    if (shape.setter !== null) return shape.setter;
    if (++shape.uses >= COMPILE_AFTER && codegen && compiles < MAX_COMPILES) shape.setter = compile(match as string[]);
    return shape.setter;
  }
  return undefined;
}

/** Starts watching the keys of a dict just set the generic way (all valid object keys). */
export function watchShape(stack: unknown[], from: number, count: number): void {
  const match = new Array<unknown>(count);
  for (let j = 0; j < count; j++) {
    const k = stack[from + 2 * j] as string;
    // Shapes outlive the load: a long key is not kept.
    if (k.length > SHAPE_MAX_KEY_LENGTH) return;
    match[j] = k;
  }
  const shape: Shape = { match, uses: 1, setter: null };
  if (shapes.length < SHAPE_SLOTS) shapes.push(shape);
  else shapes[nextSlot] = shape;
  nextSlot = (nextSlot + 1) % SHAPE_SLOTS;
}

function compile(keys: readonly string[]): ShapeSetter | null {
  compiles++;
  const params: string[] = [];
  const body: string[] = [];
  for (let j = 0; j < keys.length; j++) {
    params.push(`k${j}`);
    body.push(`o[k${j}] = s[i + ${2 * j + 1}];`);
  }
  // The counter makes each source unique, so that V8's eval cache never hands two shapes one feedback vector.
  const source = `"use strict"; /* shape ${compiles} */ return function set(o, s, i) { ${body.join(' ')} };`;
  try {
    // Property names given as the internalized strings a fresh object's keys are.
    const names = keys.map((k) => Object.keys({ [k]: 0 })[0]!);
    return new Function(...params, source)(...names) as ShapeSetter;
  } catch {
    codegen = false;
    return null;
  }
}

/** For tests: forget every watched shape and the compile count. */
export function resetShapes(): { compiles: number } {
  const was = { compiles };
  shapes.length = 0;
  nextSlot = 0;
  compiles = 0;
  codegen = true;
  return was;
}
