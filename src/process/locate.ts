/**
 * Finding where a function lives, so that a child process can import it:
 * a target travels as `<module URL>#<export name>`, as a Python function
 * travels as `module.qualname`.
 *
 * Modules the user registered (`registerModule`) are searched first: their
 * exports are compared by identity. Otherwise V8's inspector (a session on
 * this thread, synchronous) tells the URL of the script that defines the
 * function ([[FunctionLocation]]) and the module-level binding that holds
 * it ([[Scopes]]); the script's exports then say whether, and under which
 * name, a child can import that binding: for an ES module, its export
 * syntax (`export function f`, `export const f = ...`, `export { f as g }`,
 * `export default f`...); for a module Vite transformed (vitest), its export
 * calls. The script's URL comes from V8's best-effort coverage, and a plain
 * JavaScript module's source from its file: turning the debugger domain on
 * replays every loaded script (some 30 ms in a fresh process that imported
 * billiard-ts), so it is turned on only when those do not answer (a script
 * coverage does not list; a module a loader transformed, whose text is not
 * its file's). A top-level function that is not exported is refused here, with
 * the fix in the message, rather than failing in the child. A function of
 * a CommonJS module is found among its module's exports. Lambdas, closures,
 * bound functions and functions of the REPL or of eval cannot travel, as in
 * Python.
 */

import type { Session } from 'node:inspector';

import { PicklingError } from '../pickle/errors.js';

/** Where a target is imported from: a module URL and an export name. */
export interface TargetRef {
  url: string;
  name: string;
}

/** `url#name`, the form a target travels in. */
export function formatRef(ref: TargetRef): string {
  return `${ref.url}#${ref.name}`;
}

/** Parses `url#name` (the last `#` separates them). */
export function parseRef(spec: string): TargetRef {
  const hash = spec.lastIndexOf('#');
  if (hash <= 0 || hash === spec.length - 1) throw new TypeError(`target ${JSON.stringify(spec)} is not of the form 'module#export'`);
  return { url: spec.slice(0, hash), name: spec.slice(hash + 1) };
}

const registered: Array<{ url: string; namespace: Record<string, unknown> }> = [];
let cache = new WeakMap<object, TargetRef>();

/**
 * Registers a module whose exports can be process targets: its URL and its
 * namespace (`registerModule(import.meta.url, await import(import.meta.url))`,
 * or `registerModule(url, { f, g })`). Exports are then found by identity,
 * whatever their names.
 */
export function registerModule(url: string | URL, namespace: Record<string, unknown>): void {
  const href = String(url);
  registered.push({ url: href, namespace });
  // Functions located before are looked up again: a registration may name them differently.
  cache = new WeakMap();
}

let session: Session | undefined;
const scripts = new Map<string, string>();
/** The exports of each script looked at: local binding name -> exported names. */
const exportsByScript = new Map<string, Map<string, string[]> | null>();
let debuggerOn = false;

function post<T>(method: string, params?: Record<string, unknown>): T {
  let result: T | undefined;
  let error: Error | null = null;
  session!.post(method, params ?? {}, (e, r) => {
    error = e;
    result = r as T;
  });
  if (error) throw error;
  return result as T;
}

/**
 * Turns the debugger domain on (it is what maps a script id to its URL) until
 * the event loop turns: enabling it replays every script's `scriptParsed`,
 * which costs in proportion to the scripts loaded, so the processes started
 * in one go (a pool's workers, with their different targets) pay for it once.
 */
function connected(): void {
  if (session !== undefined) return;
  // Loaded on first use: a child that starts no process of its own never pays for it.
  const { Session: InspectorSession } = process.getBuiltinModule('node:inspector');
  session = new InspectorSession();
  session.connect();
  session.on('Debugger.scriptParsed', (m: { params: { scriptId: string; url: string } }) => scripts.set(m.params.scriptId, m.params.url));
}

function debuggerEnabled(): void {
  connected();
  if (debuggerOn) return;
  post('Debugger.enable');
  debuggerOn = true;
  setImmediate(() => {
    debuggerOn = false;
    post('Debugger.disable');
  }).unref();
}

/**
 * The URL of the script `scriptId`. V8's best-effort coverage lists the
 * scripts whose code has run, with their URLs, in a few milliseconds and
 * without changing any mode of the isolate; the debugger domain, which knows
 * every script, is turned on only for a script it does not list: turning it
 * on replays every loaded script's `scriptParsed` (hashing its source),
 * some 30 ms in a fresh process that imported billiard-ts, on the way to a
 * program's first child.
 */
function scriptUrl(scriptId: string): string | null {
  const known = scripts.get(scriptId);
  if (known !== undefined) return known;
  try {
    for (const c of post<{ result: Array<{ scriptId: string; url: string }> }>('Profiler.getBestEffortCoverage').result) {
      if (c.url !== '') scripts.set(c.scriptId, c.url);
    }
  } catch {
    // no coverage here: the debugger below knows
  }
  if (!scripts.has(scriptId)) debuggerEnabled();
  return scripts.get(scriptId) ?? null;
}

interface RemoteObject {
  objectId?: string;
  description?: string;
}

/**
 * What the inspector knows of `fn`: the URL and id of the script defining it,
 * and the binding of its scope chain (the module scope, or the wrapper scope
 * of a transformed module) that holds this very function, if any: its
 * module-level name, and that scope's kind (`Module` for an ES module).
 */
function inspect(fn: object): { url: string | null; scriptId: string | null; binding: string | null; scope: string | null } {
  connected();
  const key = '__billiard_ts_locate__';
  try {
    (globalThis as Record<string, unknown>)[key] = fn;
    const { result } = post<{ result: RemoteObject }>('Runtime.evaluate', { expression: `globalThis.${key}`, objectGroup: key });
    if (result.objectId === undefined) return { url: null, scriptId: null, binding: null, scope: null };
    const props = post<{ internalProperties?: Array<{ name: string; value?: RemoteObject & { value?: { scriptId: string } } }> }>('Runtime.getProperties', {
      objectId: result.objectId,
      ownProperties: true,
    });
    const internal = props.internalProperties ?? [];
    const loc = internal.find((p) => p.name === '[[FunctionLocation]]')?.value?.value;
    const url = loc === undefined ? null : scriptUrl(loc.scriptId);
    const scopesRef = internal.find((p) => p.name === '[[Scopes]]')?.value;
    let binding: string | null = null;
    let scope: string | null = null;
    if (scopesRef?.objectId !== undefined) {
      const scopes = post<{ result: Array<{ value: RemoteObject }> }>('Runtime.getProperties', { objectId: scopesRef.objectId, ownProperties: true }).result;
      const name = (fn as { name: string }).name;
      const holds = (objectId: string): boolean =>
        post<{ result: { value?: boolean } }>('Runtime.callFunctionOn', {
          functionDeclaration: 'function (other) { return this === other; }',
          objectId,
          arguments: [{ objectId: result.objectId }],
          returnByValue: true,
        }).result.value === true;
      search: for (const { value } of scopes) {
        if (value.objectId === undefined || value.description === 'Global') continue;
        const vars = post<{ result: Array<{ name: string; value?: RemoteObject & { type?: string } }> }>('Runtime.getProperties', { objectId: value.objectId, ownProperties: true }).result;
        // The binding of the function's own name first, then any binding that holds it
        // (a transform's `d_default` for an anonymous default export, `const f = function g() {}`).
        const named = vars.find((v) => v.name === name);
        for (const v of named === undefined ? vars : [named, ...vars.filter((x) => x !== named)]) {
          if (v.value?.type !== 'function' || v.value.objectId === undefined) continue;
          if (holds(v.value.objectId)) {
            binding = v.name;
            scope = value.description ?? null;
            break search;
          }
        }
      }
    }
    return { url, scriptId: loc?.scriptId ?? null, binding, scope };
  } finally {
    delete (globalThis as Record<string, unknown>)[key];
    post('Runtime.releaseObjectGroup', { objectGroup: key });
  }
}

const IDENT = String.raw`[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*`;
const EXPORT_DECLARATION = new RegExp(String.raw`\bexport\s+(?:(?:async\s+)?function\s*\*?\s*|class\s+)(${IDENT})`, 'gu');
const EXPORT_DEFAULT_DECLARATION = new RegExp(String.raw`\bexport\s+default\s+(?:(?:async\s+)?function\s*\*?\s*|class\s+)(${IDENT})`, 'gu');
const EXPORT_DEFAULT_NAME = new RegExp(String.raw`\bexport\s+default\s+(${IDENT})\s*(?:;|\n|$)`, 'gu');
const EXPORT_VARIABLES = /\bexport\s+(?:const|let|var)\s/g;
const EXPORT_CLAUSE = /\bexport\s*\{([^}]*)\}(\s*from\b)?/g;
const LEADING_IDENT = new RegExp(String.raw`^\s*(${IDENT})`, 'u');
/**
 * Vite's server-side transform (vitest runs modules through it): a module
 * becomes a function whose exports are getters, `__vite_ssr_exportName__("f",
 * () => { try { return f } catch {} })` or, before Vite 6,
 * `Object.defineProperty(__vite_ssr_exports__, "f", { ..., get(){ return f }})`.
 */
const VITE_MARKER = '__vite_ssr_export';
const VITE_EXPORT = new RegExp(String.raw`__vite_ssr_export(?:Name__\(|s__\s*,)\s*["']([^"']+)["']\s*,[\s\S]{0,160}?return\s+(${IDENT})`, 'gu');

/** The names declared by `export const a = ..., b = ...` from `pos` on (a light scan: it stops at the end of the statement). */
function declaredNames(source: string, pos: number): string[] {
  const names: string[] = [];
  for (;;) {
    const m = LEADING_IDENT.exec(source.slice(pos, pos + 300));
    if (m === null) return names;
    names.push(m[1]!);
    // Skip the initializer: to a comma (the next declarator) or the end of the statement, outside brackets and strings.
    let depth = 0;
    let i = pos + m[0].length;
    for (; i < source.length; i++) {
      const c = source[i]!;
      if (c === '"' || c === "'" || c === '`') {
        for (i++; i < source.length && source[i] !== c; i++) if (source[i] === '\\') i++;
      } else if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') {
        if (--depth < 0) return names;
      } else if (depth === 0 && (c === ';' || c === '\n')) return names;
      else if (depth === 0 && c === ',') break;
    }
    if (i >= source.length) return names;
    pos = i + 1;
  }
}

/**
 * The exports of an ES module's source, as local binding name -> exported
 * names: `export function f`, `export const f = ...`, `export class C`,
 * `export default function f`, `export default f`, `export { f, g as h }`
 * (re-exports, `export { f } from '...'`, name bindings of other modules,
 * whose functions the inspector places in those modules). A light lexical
 * scan, not a parse: enough to tell an exported binding from a merely
 * module-level one.
 */
export function exportsOfSource(source: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const add = (local: string, exported: string): void => {
    const list = out.get(local) ?? [];
    if (!list.includes(exported)) list.push(exported);
    out.set(local, list);
  };
  for (const m of source.matchAll(EXPORT_DECLARATION)) add(m[1]!, m[1]!);
  for (const m of source.matchAll(EXPORT_DEFAULT_DECLARATION)) add(m[1]!, 'default');
  for (const m of source.matchAll(EXPORT_DEFAULT_NAME)) if (!['function', 'class', 'async'].includes(m[1]!)) add(m[1]!, 'default');
  for (const m of source.matchAll(EXPORT_VARIABLES)) for (const name of declaredNames(source, m.index! + m[0].length)) add(name, name);
  for (const m of source.matchAll(EXPORT_CLAUSE)) {
    if (m[2] !== undefined) continue;
    for (const item of m[1]!.split(',')) {
      const [local, exported] = item.trim().split(/\s+as\s+/);
      if (!local) continue;
      add(local, (exported ?? local).replace(/^["']|["']$/g, ''));
    }
  }
  return out;
}

/** The exports of a module's source after Vite's server-side transform (see {@link VITE_EXPORT}). */
function viteExports(source: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of source.matchAll(VITE_EXPORT)) out.set(m[2]!, [...(out.get(m[2]!) ?? []), m[1]!]);
  return out;
}

/**
 * The exports of the script `scriptId`, read once: of an ES module (the
 * function's binding is in a `Module` scope), from its export syntax; of a
 * module transformed into a function (its binding is in a `Closure` scope),
 * from the transform's export calls when it is one this file knows (Vite's),
 * else null: the exports cannot be told, and the child checks.
 */
function exportsOfScript(scriptId: string, scope: string | null): Map<string, string[]> | null {
  const key = `${scope}:${scriptId}`;
  let found = exportsByScript.get(key);
  if (found === undefined) {
    const scriptSource = sourceOf(scriptId, scope);
    found = scope === 'Module' ? exportsOfSource(scriptSource) : scriptSource.includes(VITE_MARKER) ? viteExports(scriptSource) : null;
    exportsByScript.set(key, found);
  }
  return found;
}

/**
 * The source of the script `scriptId`: for a plain JavaScript ES module
 * file (`.js`, `.mjs`), its file, which Node hands V8 as it is; else what V8
 * holds, through the debugger domain (a module a loader transformed, such as
 * TypeScript under tsx or a module of vitest, has other text than its file).
 */
function sourceOf(scriptId: string, scope: string | null): string {
  const url = scripts.get(scriptId);
  if (scope === 'Module' && url !== undefined && url.startsWith('file:') && /\.m?js$/.test(new URL(url).pathname)) {
    try {
      const { readFileSync } = process.getBuiltinModule('node:fs');
      const { fileURLToPath } = process.getBuiltinModule('node:url');
      return readFileSync(fileURLToPath(url), 'utf8');
    } catch {
      // gone or unreadable: ask V8
    }
  }
  debuggerEnabled();
  return post<{ scriptSource: string }>('Debugger.getScriptSource', { scriptId }).scriptSource;
}

/**
 * The CommonJS module at `url`, if it is one: the name under which it exports
 * `fn` (its own name first), 'default' when `module.exports` is `fn` itself,
 * or null. A CommonJS module's top-level functions live in its wrapper
 * function's frame, so its exports are asked instead of its source.
 */
function commonJsExport(url: string, fn: Function): { name: string | null } | null {
  if (!url.startsWith('file:')) return null;
  const { createRequire } = process.getBuiltinModule('node:module');
  const { fileURLToPath } = process.getBuiltinModule('node:url');
  const path = fileURLToPath(url);
  const cached = createRequire(path).cache[path];
  if (cached === undefined) return null;
  const exports = cached.exports as unknown;
  if (exports === fn) return { name: 'default' };
  if (exports === null || (typeof exports !== 'object' && typeof exports !== 'function')) return { name: null };
  const record = exports as Record<string, unknown>;
  if (Object.hasOwn(record, fn.name) && record[fn.name] === fn) return { name: fn.name };
  for (const key of Object.keys(record)) if (record[key] === fn) return { name: key };
  return { name: null };
}

function notImportable(message: string): PicklingError {
  return new PicklingError(message, { code: 'TARGET_NOT_IMPORTABLE' });
}

/**
 * The module URL and export name of a function or class, or a PicklingError
 * (code `TARGET_NOT_IMPORTABLE`) saying why it cannot be found and how to
 * make it so. Answers are kept per function.
 */
export function locateFunction(fn: unknown): TargetRef {
  if (typeof fn !== 'function') throw notImportable(`a process target must be a function, not ${typeof fn}`);
  const hit = cache.get(fn);
  if (hit !== undefined) return hit;
  const ref = findFunction(fn);
  cache.set(fn, ref);
  return ref;
}

function findFunction(fn: Function): TargetRef {
  for (const m of registered) {
    for (const [name, value] of Object.entries(m.namespace)) {
      if (value === fn) return { url: m.url, name };
    }
  }
  const name = fn.name;
  if (!name || name === 'anonymous' || name.startsWith('bound ')) {
    throw notImportable(
      `cannot send ${name ? `'${name}'` : 'an anonymous function'} to a child process: a target must be a named export of a module (export function f or export const f = ...), or an export of a module given to registerModule`,
    );
  }
  const { url, scriptId, binding, scope } = inspect(fn);
  if (url === null || !/^(file|data):/.test(url)) {
    throw notImportable(`cannot send '${name}' to a child process: it is not defined in a module file${url ? ` (${url})` : ''}`);
  }
  const cjs = commonJsExport(url, fn);
  if (cjs !== null) {
    if (cjs.name !== null) return { url, name: cjs.name };
    throw notImportable(`cannot send '${name}' to a child process: the CommonJS module ${url} does not export it (add exports.${name} = ${name}, or pass an exported function)`);
  }
  if (binding === null) {
    throw notImportable(
      `cannot send '${name}' to a child process: it is not a module-level declaration of ${url} (a target must be a named export: export function ${name} or export const ${name} = ..., or an export of a module given to registerModule)`,
    );
  }
  const exports = scriptId === null ? null : exportsOfScript(scriptId, scope);
  // A transform this file does not know: taken to be exported under its name, and the child checks.
  if (exports === null) return { url, name: binding };
  const exported = exports.get(binding);
  if (exported === undefined || exported.length === 0) {
    throw notImportable(
      `cannot send '${name}' to a child process: it is declared at the top level of ${url} but not exported, so a child cannot import it; export it (export function ${binding} ... or export { ${binding} }), or register the module with registerModule(url, { ${binding} })`,
    );
  }
  return { url, name: exported.includes(binding) ? binding : exported[0]! };
}
