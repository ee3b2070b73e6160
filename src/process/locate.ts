/**
 * Finding where a function lives, so that a child process can import it:
 * a target travels as `<module URL>#<export name>`, as a Python function
 * travels as `module.qualname`.
 *
 * Modules the user registered (`registerModule`) are searched first: their
 * exports are compared by identity. Otherwise V8's inspector (a session on
 * this thread, synchronous) tells the URL of the script that defines the
 * function ([[FunctionLocation]]) and whether the function is a module-level
 * binding of its own name ([[Scopes]]): then it is taken to be exported under
 * that name (`export function f`, `export const f = () => ...`, or a default
 * export named f; the child checks). A function of a CommonJS module is
 * found among its module's exports. Lambdas, closures, bound functions and
 * functions of the REPL or of eval cannot travel, as in Python.
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

interface RemoteObject {
  objectId?: string;
  description?: string;
}

/**
 * What the inspector knows of `fn`: the URL of the script defining it, and
 * whether a binding of its name in its scope chain (the module scope, or the
 * wrapper scope of a transformed module) holds this very function, i.e.
 * whether it is a module-level declaration an importer can find by name.
 */
function inspect(fn: object): { url: string | null; bound: boolean } {
  if (session === undefined) {
    // Loaded on first use: a child that starts no process of its own never pays for it.
    const { Session: InspectorSession } = process.getBuiltinModule('node:inspector');
    session = new InspectorSession();
    session.connect();
    session.on('Debugger.scriptParsed', (m: { params: { scriptId: string; url: string } }) => scripts.set(m.params.scriptId, m.params.url));
  }
  post('Debugger.enable');
  const key = '__billiard_ts_locate__';
  try {
    (globalThis as Record<string, unknown>)[key] = fn;
    const { result } = post<{ result: RemoteObject }>('Runtime.evaluate', { expression: `globalThis.${key}`, objectGroup: key });
    if (result.objectId === undefined) return { url: null, bound: false };
    const props = post<{ internalProperties?: Array<{ name: string; value?: RemoteObject & { value?: { scriptId: string } } }> }>('Runtime.getProperties', {
      objectId: result.objectId,
      ownProperties: true,
    });
    const internal = props.internalProperties ?? [];
    const loc = internal.find((p) => p.name === '[[FunctionLocation]]')?.value?.value;
    const url = loc === undefined ? null : (scripts.get(loc.scriptId) ?? null);
    const scopesRef = internal.find((p) => p.name === '[[Scopes]]')?.value;
    let bound = false;
    if (scopesRef?.objectId !== undefined) {
      const scopes = post<{ result: Array<{ value: RemoteObject }> }>('Runtime.getProperties', { objectId: scopesRef.objectId, ownProperties: true }).result;
      const name = (fn as { name: string }).name;
      for (const scope of scopes) {
        if (scope.value.objectId === undefined || scope.value.description === 'Global') continue;
        const vars = post<{ result: Array<{ name: string; value?: RemoteObject }> }>('Runtime.getProperties', { objectId: scope.value.objectId, ownProperties: true }).result;
        const binding = vars.find((v) => v.name === name)?.value?.objectId;
        if (binding === undefined) continue;
        const same = post<{ result: { value?: boolean } }>('Runtime.callFunctionOn', {
          functionDeclaration: 'function (other) { return this === other; }',
          objectId: binding,
          arguments: [{ objectId: result.objectId }],
          returnByValue: true,
        });
        if (same.result.value === true) {
          bound = true;
          break;
        }
      }
    }
    return { url, bound };
  } finally {
    delete (globalThis as Record<string, unknown>)[key];
    post('Runtime.releaseObjectGroup', { objectGroup: key });
    post('Debugger.disable');
  }
}

/**
 * The module URL and export name of a function or class, or a PicklingError
 * (code `TARGET_NOT_IMPORTABLE`) explaining why it cannot be found.
 */
/**
 * The name under which a CommonJS module at `url` exports `fn` (its own name
 * first), 'default' when `module.exports` is `fn` itself, or null. A CommonJS
 * module's top-level functions live in its wrapper function's frame, where
 * the inspector does not see them, so its exports are asked instead.
 */
function commonJsExport(url: string, fn: Function): string | null {
  if (!url.startsWith('file:')) return null;
  const { createRequire } = process.getBuiltinModule('node:module');
  const { fileURLToPath } = process.getBuiltinModule('node:url');
  const path = fileURLToPath(url);
  const exports = createRequire(path).cache[path]?.exports as unknown;
  if (exports === fn) return 'default';
  if (exports === null || (typeof exports !== 'object' && typeof exports !== 'function')) return null;
  const record = exports as Record<string, unknown>;
  if (Object.hasOwn(record, fn.name) && record[fn.name] === fn) return fn.name;
  for (const key of Object.keys(record)) if (record[key] === fn) return key;
  return null;
}

export function locateFunction(fn: unknown): TargetRef {
  if (typeof fn !== 'function') throw new PicklingError(`a process target must be a function, not ${typeof fn}`, { code: 'TARGET_NOT_IMPORTABLE' });
  const hit = cache.get(fn);
  if (hit !== undefined) return hit;
  for (const m of registered) {
    for (const [name, value] of Object.entries(m.namespace)) {
      if (value === fn) {
        const ref = { url: m.url, name };
        cache.set(fn, ref);
        return ref;
      }
    }
  }
  const name = fn.name;
  if (!name || name === 'anonymous' || name.startsWith('bound ')) {
    throw new PicklingError(
      `cannot send ${name ? `'${name}'` : 'an anonymous function'} to a child process: a target must be a named export of a module (export function f or export const f = ...), or an export of a module given to registerModule`,
      { code: 'TARGET_NOT_IMPORTABLE' },
    );
  }
  const { url, bound } = inspect(fn);
  if (url === null || !/^(file|data):/.test(url)) {
    throw new PicklingError(`cannot send '${name}' to a child process: it is not defined in a module file${url ? ` (${url})` : ''}`, { code: 'TARGET_NOT_IMPORTABLE' });
  }
  if (!bound) {
    const exported = commonJsExport(url, fn);
    if (exported !== null) {
      const ref = { url, name: exported };
      cache.set(fn, ref);
      return ref;
    }
    throw new PicklingError(
      `cannot send '${name}' to a child process: it is not a module-level declaration of ${url} under that name (a target must be a named export: export function ${name} or export const ${name} = ...)`,
      { code: 'TARGET_NOT_IMPORTABLE' },
    );
  }
  const ref = { url, name };
  cache.set(fn, ref);
  return ref;
}
