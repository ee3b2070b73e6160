/**
 * billiard's shared-memory allocator, `billiard.heap` (spec/api.md §7.3),
 * block for block: shared values live in **arenas** (temporary files in
 * {@link getTempDir}, unlinked at once, mapped `MAP_SHARED`), carved up by
 * one per-process {@link Heap} exactly as billiard carves them, so that the
 * same calls place values at the same offsets as in Python:
 *
 * - the first arena is one page (4096 bytes); each new one is
 *   `max(next size, request)` rounded up to the page size, and the next size
 *   doubles after each (4096, 8192, 16384...);
 * - requests are rounded up to 8 bytes (`_alignment`) and served best-fit
 *   from the free blocks (the shortest that fits; of equal ones, the one
 *   freed last);
 * - a freed block merges with free neighbours; arenas are never returned.
 *
 * A child started with `'spawn'` gets an arena as
 * `billiard.heap.rebuild_arena(size, DupFd(fd))` and maps the descriptor it
 * inherited; a {@link BufferWrapper} (one allocated block) travels as its
 * state `((arena, start, stop), size)`. See reduction.ts.
 */

import { createArena, mapFd } from '../native/index.js';
import { setState, tuple, type PyTuple } from '../pickle/types.js';
import { AssertionError, AttributeError, TypeError, ValueError } from './errors.js';
import { getTempDir } from './tempdir.js';

/**
 * `mmap.PAGESIZE` of the platforms billiard-ts runs on (x86-64 and most
 * arm64 Linux). Arena sizes are multiples of it.
 */
export const PAGESIZE = 4096;

/** Where arenas come from: the native addon, or (for tests) plain memory. */
export interface ArenaBackend {
  /** A new zero-filled shared mapping of `size` bytes and the descriptor behind it. */
  create(size: number): { fd: number; buffer: ArrayBuffer };
  /** Maps `size` bytes of an existing descriptor (one a parent passed). */
  map(fd: number, size: number): ArrayBuffer;
}

/** The arenas of the native addon: files in {@link getTempDir}, as billiard makes them. */
export const NATIVE_ARENAS: ArenaBackend = Object.freeze({
  create: (size: number) => createArena(getTempDir(), size),
  map: (fd: number, size: number) => mapFd(fd, size),
});

let backend: ArenaBackend = NATIVE_ARENAS;

/**
 * Replaces where arenas come from (`null`: the native addon again) and
 * returns the previous backend. For tests, which exercise the allocator on
 * plain `ArrayBuffer`s; arenas made before the call keep their memory.
 */
export function setArenaBackend(next: ArenaBackend | null): ArenaBackend {
  const previous = backend;
  backend = next ?? NATIVE_ARENAS;
  return previous;
}

/**
 * One shared mapping (billiard's POSIX `Arena(size, fd=-1)`): `fd` is the
 * descriptor of its (unlinked) file, `buffer` the mapped memory. Made with
 * `fd` -1 it creates a new file; with a descriptor, it maps that one (a child
 * rebuilding its parent's arena).
 */
export class Arena {
  /** Its size in bytes. */
  readonly size: number;
  /** The descriptor of the arena's file; it stays open for the life of the process. */
  readonly fd: number;
  /** The shared memory, `size` bytes. */
  readonly buffer: ArrayBuffer;

  constructor(size: number, fd: number = -1) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new TypeError(`an arena's size must be a positive integer, not ${String(size)}`);
    if (!Number.isInteger(fd) || fd < -1) throw new TypeError(`an arena's fd must be a descriptor or -1, not ${String(fd)}`);
    this.size = size;
    if (fd === -1) {
      const made = backend.create(size);
      this.fd = made.fd;
      this.buffer = made.buffer;
    } else {
      this.fd = fd;
      this.buffer = backend.map(fd, size);
    }
    if (this.buffer.byteLength < size) throw new ValueError(`arena mapping is ${this.buffer.byteLength} bytes, expected ${size}`);
  }

  toString(): string {
    return `<Arena size=${this.size} fd=${this.fd}>`;
  }
}

/**
 * An allocated block, `(arena, start, stop)`: bytes `[start, stop)` of the
 * arena (`stop - start` is the request rounded up to 8). It is a Python
 * tuple, which is how it pickles inside a {@link BufferWrapper}'s state.
 */
export type Block = readonly [arena: Arena, start: number, stop: number];

function makeBlock(arena: Arena, start: number, stop: number): Block {
  return tuple(arena, start, stop) as unknown as Block;
}

/** `bisect.bisect_left`: the first index whose item is not less than `x`. */
function bisectLeft(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Rounds `n` up to a multiple of `alignment` (a power of 2). */
function roundup(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/**
 * billiard's `Heap`: allocates blocks from arenas, best-fit, 8-byte
 * aligned, merging freed neighbours. The one all shared values use is
 * {@link BufferWrapper.heap}.
 */
export class Heap {
  /** Requests are rounded up to this many bytes (billiard's `_alignment`). */
  static readonly alignment = 8;

  /** The size of the next arena (before rounding up to the request): doubles after each. */
  #size: number;
  /** The lengths of the free blocks, sorted, each once. */
  readonly #lengths: number[] = [];
  /** The free blocks of each length, in the order they were freed. */
  readonly #lenToSeq = new Map<number, Block[]>();
  /** Free blocks by arena and start, and by arena and stop (for merging). */
  readonly #startToBlock = new Map<Arena, Map<number, Block>>();
  readonly #stopToBlock = new Map<Arena, Map<number, Block>>();
  readonly #allocated = new Set<Block>();
  readonly #arenas: Arena[] = [];

  /** `size`: the first arena's size before rounding (billiard's default, one page). */
  constructor(size: number = PAGESIZE) {
    this.#size = size;
  }

  /** The arenas made so far, oldest first. */
  get arenas(): readonly Arena[] {
    return this.#arenas;
  }

  /** The blocks allocated and not yet freed. */
  get allocatedBlocks(): ReadonlySet<Block> {
    return this.#allocated;
  }

  /**
   * A block of at least `size` bytes (`size` rounded up to 8, at least 8):
   * the smallest free block that fits, split, or a new arena.
   */
  malloc(size: number): Block {
    if (!Number.isSafeInteger(size) || size < 0) throw new AssertionError(`malloc size must be a non-negative integer, not ${String(size)}`);
    size = roundup(Math.max(size, 1), Heap.alignment);
    const [arena, start, stop] = this.#malloc(size);
    const newStop = start + size;
    if (newStop < stop) this.#free(makeBlock(arena, newStop, stop));
    const block = makeBlock(arena, start, newStop);
    this.#allocated.add(block);
    return block;
  }

  /** Gives back a block {@link malloc} returned, merging it with free neighbours. */
  free(block: Block): void {
    if (!this.#allocated.delete(block)) throw new AssertionError('free() of a block this heap did not allocate (or freed twice)');
    this.#free(block);
  }

  /** A free block large enough (it may be much larger), or a new arena. */
  #malloc(size: number): Block {
    const i = bisectLeft(this.#lengths, size);
    if (i === this.#lengths.length) {
      const length = roundup(Math.max(this.#size, size), PAGESIZE);
      this.#size *= 2;
      const arena = new Arena(length);
      this.#arenas.push(arena);
      return makeBlock(arena, 0, length);
    }
    const length = this.#lengths[i]!;
    const seq = this.#lenToSeq.get(length)!;
    const block = seq.pop()!;
    if (seq.length === 0) {
      this.#lenToSeq.delete(length);
      this.#lengths.splice(i, 1);
    }
    const [arena, start, stop] = block;
    this.#startToBlock.get(arena)!.delete(start);
    this.#stopToBlock.get(arena)!.delete(stop);
    return block;
  }

  /** Registers a free block, merged with the free blocks just before and after it. */
  #free(block: Block): void {
    let [arena, start, stop] = block;
    const prev = this.#stopToBlock.get(arena)?.get(start);
    if (prev !== undefined) start = this.#absorb(prev)[0];
    const next = this.#startToBlock.get(arena)?.get(stop);
    if (next !== undefined) stop = this.#absorb(next)[1];

    const merged = makeBlock(arena, start, stop);
    const length = stop - start;
    const seq = this.#lenToSeq.get(length);
    if (seq !== undefined) seq.push(merged);
    else {
      this.#lenToSeq.set(length, [merged]);
      this.#lengths.splice(bisectLeft(this.#lengths, length), 0, length);
    }
    let starts = this.#startToBlock.get(arena);
    if (starts === undefined) this.#startToBlock.set(arena, (starts = new Map()));
    starts.set(start, merged);
    let stops = this.#stopToBlock.get(arena);
    if (stops === undefined) this.#stopToBlock.set(arena, (stops = new Map()));
    stops.set(stop, merged);
  }

  /** Unregisters a free block that is being merged into a neighbour; returns its start and stop. */
  #absorb(block: Block): [number, number] {
    const [arena, start, stop] = block;
    this.#startToBlock.get(arena)!.delete(start);
    this.#stopToBlock.get(arena)!.delete(stop);
    const length = stop - start;
    const seq = this.#lenToSeq.get(length)!;
    seq.splice(seq.indexOf(block), 1);
    if (seq.length === 0) {
      this.#lenToSeq.delete(length);
      this.#lengths.splice(bisectLeft(this.#lengths, length), 1);
    }
    return [start, stop];
  }
}

/** Frees a wrapper's block once the wrapper is garbage (billiard's `util.Finalize(self, heap.free, (block,))`). */
const finalizer = new FinalizationRegistry<{ heap: Heap; block: Block }>(({ heap, block }) => {
  try {
    heap.free(block);
  } catch {
    // The heap was replaced and the block is foreign to it: nothing to give back.
  }
});

/** A state handed to the constructor while rebuilding (see {@link BufferWrapper.fromState}). */
let rebuilding: PyTuple | null | undefined;

/** The Python state `(block, size)` of a wrapper, checked. */
function checkState(state: unknown): PyTuple {
  const fail = (why: string): never => {
    throw new TypeError(`BufferWrapper state must be ((arena, start, stop), size): ${why}`);
  };
  if (!Array.isArray(state) || state.length !== 2) return fail('not a pair');
  const [block, size] = state as unknown[];
  if (!Array.isArray(block) || block.length !== 3) return fail('no (arena, start, stop)');
  const [arena, start, stop] = block as unknown[];
  if (!(arena instanceof Arena)) return fail('the arena is not an Arena');
  if (![start, stop, size].every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)) return fail('start, stop and size must be non-negative integers');
  const [s, e, n] = [start, stop, size] as number[];
  if (s! > e! || e! > arena.size || s! + n! > arena.size) return fail(`block [${s}, ${e}) of ${n} bytes does not fit an arena of ${arena.size}`);
  return tuple(makeBlock(arena, s!, e!), n!);
}

/**
 * One allocated block of shared memory (billiard's `BufferWrapper(size)`):
 * `size` bytes from {@link BufferWrapper.heap}, given back to the heap when
 * the wrapper is garbage-collected. A shared value keeps its wrapper, and a
 * typed array view made by billiard-ts keeps it too.
 */
export class BufferWrapper {
  /**
   * The allocator of this process (billiard's class attribute `_heap`).
   * Tests replace it with a fresh `Heap` to start from an empty one.
   */
  static heap: Heap = new Heap();

  /** `((arena, start, stop), size)`, or undefined while a child is rebuilding it. */
  #state: PyTuple | undefined;

  /** Allocates `size` bytes (a non-negative integer). */
  constructor(size: number) {
    if (rebuilding !== undefined) {
      this.#state = rebuilding ?? undefined;
      return;
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new AssertionError(`BufferWrapper size must be a non-negative integer, not ${String(size)}`);
    const heap = BufferWrapper.heap;
    const block = heap.malloc(size);
    this.#state = tuple(block, size);
    finalizer.register(this, { heap, block });
  }

  /**
   * A wrapper for a block some other process allocated (a child's
   * `BufferWrapper` from its pickled state): it is never freed here.
   * `state` is `((arena, start, stop), size)`.
   */
  static fromState(state: readonly [Block, number]): BufferWrapper {
    rebuilding = checkState(state);
    try {
      return new BufferWrapper(0);
    } finally {
      rebuilding = undefined;
    }
  }

  /** @internal A wrapper without a state, for a pickle's NEWOBJ; BUILD gives it one. */
  static blank(): BufferWrapper {
    rebuilding = null;
    try {
      return new BufferWrapper(0);
    } finally {
      rebuilding = undefined;
    }
  }

  /** `((arena, start, stop), size)`: billiard's `_state`, what the wrapper pickles as. */
  get state(): readonly [Block, number] {
    if (this.#state === undefined) throw new ValueError('BufferWrapper has no state yet');
    return this.#state as unknown as readonly [Block, number];
  }

  /** The block's arena. */
  get arena(): Arena {
    return this.state[0][0];
  }

  /** The first byte of the block in its arena. */
  get start(): number {
    return this.state[0][1];
  }

  /** The size asked for, in bytes. */
  getSize(): number {
    return this.state[1];
  }

  /** The `size` bytes of the block, as a `Uint8Array` over the shared memory (billiard's `create_memoryview()`). */
  createMemoryview(): Uint8Array {
    const [[arena, start], size] = this.state;
    return new Uint8Array(arena.buffer, start, size);
  }

  /** billiard's `get_address()`: on Python 3 it needs the C extension billiard never builds, and raises; so does this. */
  getAddress(): never {
    throw new AttributeError("'NoneType' object has no attribute 'address_of_buffer'");
  }

  /** BUILD of a pickled wrapper: `{'_state': ((arena, start, stop), size)}`. */
  [setState](state: unknown): void {
    if (this.#state !== undefined) throw new ValueError('BufferWrapper already has a state');
    const inner = state instanceof Map ? state.get('_state') : (state as { _state?: unknown } | null)?._state;
    this.#state = checkState(inner);
  }
}

/** Keeps a wrapper alive as long as an ints view of it. */
const kIntsWrapper = Symbol('billiard-ts.sharedctypes.intsWrapper');

/**
 * `count` C ints in one shared block, as billiard's `Barrier` keeps its
 * state and count (`BufferWrapper(struct.calcsize('i') * 2)`, viewed with
 * `create_memoryview().cast('i')`). The view keeps the wrapper alive; the
 * wrapper is what pickles.
 */
export interface SharedInts {
  readonly ints: Int32Array;
  readonly wrapper: BufferWrapper;
}

/** Allocates `count` zeroed C ints (a Barrier: 2). */
export function allocateInts(count: number): SharedInts {
  return intsOf(new BufferWrapper(4 * count));
}

/** The ints of a wrapper (a child's rebuilt one): as many as its size holds. */
export function intsOf(wrapper: unknown): SharedInts {
  if (!(wrapper instanceof BufferWrapper)) throw new TypeError('expected a BufferWrapper');
  const ints = new Int32Array(wrapper.arena.buffer, wrapper.start, Math.floor(wrapper.getSize() / 4));
  Object.defineProperty(ints, kIntsWrapper, { value: wrapper });
  return { ints, wrapper };
}
