/**
 * The managers module's `Namespace` and `Value` classes: what `_getvalue()`
 * of a Namespace or Value proxy returns (the referent, pickled by value as
 * `multiprocessing.managers.Namespace`/`Value` with NEWOBJ and a dict
 * state, spec/manager.md §9.2.9), loadable from either module name and
 * pickled back under `multiprocessing.managers`.
 */

import { defaultRegistry, PyGlobal, reduceEx, setState, type ReduceValue } from '../pickle/index.js';
import { pyRepr } from './pyvalues.js';
import { BILLIARD_MODULE, MP_MODULE } from './token.js';

function stateEntries(state: unknown): Array<[string, unknown]> {
  if (state === null || typeof state !== 'object' || Array.isArray(state)) throw new TypeError('the state of a Namespace or Value is a dict');
  const entries = state instanceof Map ? [...(state as Map<unknown, unknown>)] : Object.entries(state as Record<string, unknown>);
  return entries.filter((e): e is [string, unknown] => typeof e[0] === 'string');
}

function dictOf(entries: Iterable<[string, unknown]>): Record<string, unknown> {
  const d = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of entries) Object.defineProperty(d, k, { value: v, enumerable: true, writable: true, configurable: true });
  return d;
}

/** Python's `managers.Namespace`: an object of attributes (a Namespace proxy's `_getvalue()`). */
export class Namespace {
  [attr: string]: unknown;

  constructor(attrs?: Record<string, unknown>) {
    if (attrs) for (const [k, v] of Object.entries(attrs)) Object.defineProperty(this, k, { value: v, enumerable: true, writable: true, configurable: true });
  }

  [reduceEx](): ReduceValue {
    return { kind: 'newobj', callable: new PyGlobal(MP_MODULE, 'Namespace'), args: [], state: dictOf(Object.entries(this)) };
  }

  [setState](state: unknown): void {
    // defineProperty, not assignment: a key such as '__proto__' is an attribute, never the prototype.
    for (const [k, v] of stateEntries(state)) Object.defineProperty(this, k, { value: v, enumerable: true, writable: true, configurable: true });
  }

  toString(): string {
    const items = Object.entries(this).filter(([k]) => !k.startsWith('_')).sort(([a], [b]) => (a < b ? -1 : 1));
    return `Namespace(${items.map(([k, v]) => `${k}=${pyRepr(v)}`).join(', ')})`;
  }
}

/** Python's `managers.Value(typecode, value)`: a plain holder (a Value proxy's `_getvalue()`). */
export class ManagerValue<T = unknown> {
  typecode: unknown;
  value: T;

  constructor(typecode: unknown, value: T) {
    this.typecode = typecode;
    this.value = value;
  }

  [reduceEx](): ReduceValue {
    return { kind: 'newobj', callable: new PyGlobal(MP_MODULE, 'Value'), args: [], state: dictOf([['_typecode', this.typecode], ['_value', this.value]]) };
  }

  [setState](state: unknown): void {
    const d = new Map(stateEntries(state));
    this.typecode = d.get('_typecode') ?? null;
    this.value = d.get('_value') as T;
  }

  toString(): string {
    return `Value(${pyRepr(this.typecode)}, ${pyRepr(this.value)})`;
  }
}

for (const module of [MP_MODULE, BILLIARD_MODULE]) {
  defaultRegistry.register(module, 'Namespace', { newobj: () => new Namespace() });
  defaultRegistry.register(module, 'Value', { newobj: () => new ManagerValue(null, undefined) });
}
