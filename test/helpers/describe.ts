/**
 * Builds the JavaScript value a fixture descriptor describes (the grammar is
 * in fixtures/make_pickle_fixtures.py). Independent of the codec: it only
 * constructs values, following the value mapping of src/pickle/README.md.
 */
import {
  PyByteArray,
  PyComplex,
  PyCounter,
  PyDate,
  PyDatetime,
  PyDecimal,
  PyDefaultDict,
  PyDeque,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyOrderedDict,
  PyRange,
  PySlice,
  PyTime,
  PyTimedelta,
  PyTimezone,
  PyUUID,
  PythonException,
  tuple,
} from '../../src/pickle/index.js';

export type Desc = [string, ...unknown[]];

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

function repeatBytes(unit: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(unit.length * n);
  for (let i = 0; i < n; i++) out.set(unit, i * unit.length);
  return out;
}

function float(bits: string): number | PyFloat {
  const v = Buffer.from(bits, 'hex').readDoubleBE(0);
  return Number.isInteger(v) ? new PyFloat(v) : v;
}

function int(text: string): number | bigint {
  const b = BigInt(text);
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function isIndexKey(k: string): boolean {
  return /^(0|[1-9]\d*)$/.test(k) && Number(k) < 4294967295;
}

const PENDING = Symbol('pending');

/** A NaN dict key or set element as its own PyFloat: Python tells NaNs apart by identity (src/pickle/README.md). */
function nanApart(v: unknown): unknown {
  return typeof v === 'number' && v !== v ? new PyFloat(NaN) : v;
}

/**
 * Builds values; `def`/`ref` make shared and recursive structure. A ref to
 * an object still being built (a tuple reached through a list inside it) is
 * patched once the object exists.
 */
export class Builder {
  #env = new Map<number, unknown>();
  #fixups: Array<{ id: number; apply: (v: unknown) => void }> = [];

  build(d: Desc): unknown {
    const v = this.#build(d);
    if (this.#fixups.length) throw new Error('unresolved refs in descriptor');
    return v;
  }

  #define(id: number, v: unknown): void {
    this.#env.set(id, v);
    const rest = [];
    for (const f of this.#fixups) {
      if (f.id === id) f.apply(v);
      else rest.push(f);
    }
    this.#fixups = rest;
  }

  #build(d: Desc, defId?: number): unknown {
    const [kind, a, b, c] = d as [string, unknown, unknown, unknown];
    switch (kind) {
      case 'def':
        return this.#build(b as Desc, a as number);
      case 'ref':
        if (!this.#env.has(a as number)) throw new Error(`ref ${String(a)} used before its def outside a list or dict`);
        return this.#env.get(a as number);
      case 'None':
        return null;
      case 'bool':
        return a as boolean;
      case 'int':
        return int(a as string);
      case 'float':
        return float(a as string);
      case 'str': {
        const v = typeof b === 'number' ? (a as string).repeat(b) : (a as string);
        return this.#done(v, defId);
      }
      case 'bytes': {
        const unit = hexBytes(a as string);
        return this.#done(typeof b === 'number' ? repeatBytes(unit, b) : unit, defId);
      }
      case 'bytearray': {
        const unit = hexBytes(a as string);
        return this.#done(PyByteArray.fromBytes(typeof b === 'number' ? repeatBytes(unit, b) : unit), defId);
      }
      case 'list': {
        const out: unknown[] = [];
        if (defId !== undefined) this.#define(defId, out);
        (a as Desc[]).forEach((item, i) => out.push(this.#child(item, (v) => void (out[i] = v))));
        return out;
      }
      case 'dict': {
        const pairs = a as Array<[Desc, Desc]>;
        const keys = pairs.map(([k]) => k);
        const objectForm = keys.every((k) => k[0] === 'str' && !isIndexKey(typeof k[2] === 'number' ? (k[1] as string).repeat(k[2]) : (k[1] as string)));
        if (objectForm) {
          const out: Record<string, unknown> = Object.create(null);
          if (defId !== undefined) this.#define(defId, out);
          for (const [kd, vd] of pairs) {
            const k = this.#build(kd) as string;
            const v = this.#child(vd, (x) => Object.defineProperty(out, k, { value: x, writable: true, enumerable: true, configurable: true }));
            Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
          }
          return out;
        }
        const out = new PyDict();
        if (defId !== undefined) this.#define(defId, out);
        for (const [kd, vd] of pairs) {
          const k = nanApart(this.#build(kd));
          out.set(k, this.#child(vd, (x) => out.set(k, x)));
        }
        return out;
      }
      case 'set': {
        const out = new Set<unknown>();
        if (defId !== undefined) this.#define(defId, out);
        for (const item of a as Desc[]) out.add(nanApart(this.#build(item)));
        return out;
      }
      case 'tuple': {
        // A tuple cannot hold itself directly (only through a list or dict, patched there).
        const items = (a as Desc[]).map((item) => this.#build(item));
        return this.#done(tuple(...items), defId);
      }
      case 'frozenset':
        return this.#done(new PyFrozenSet((a as Desc[]).map((x) => nanApart(this.#build(x)))), defId);
      case 'datetime': {
        const f = a as number[];
        return this.#done(new PyDatetime(f[0]!, f[1]!, f[2]!, f[3]!, f[4]!, f[5]!, f[6]!, this.#build(b as Desc), c as 0 | 1), defId);
      }
      case 'date': {
        const f = a as number[];
        return this.#done(new PyDate(f[0]!, f[1]!, f[2]!), defId);
      }
      case 'time': {
        const f = a as number[];
        return this.#done(new PyTime(f[0]!, f[1]!, f[2]!, f[3]!, this.#build(b as Desc), c as 0 | 1), defId);
      }
      case 'timedelta': {
        const f = a as number[];
        return this.#done(new PyTimedelta(f[0]!, f[1]!, f[2]!), defId);
      }
      case 'timezone': {
        const off = this.#build(a as Desc) as PyTimedelta;
        if (b === null && off.days === 0 && off.seconds === 0 && off.microseconds === 0) return this.#done(PyTimezone.utc, defId);
        return this.#done(new PyTimezone(off, b === null ? undefined : (b as string)), defId);
      }
      case 'decimal':
        return this.#done(new PyDecimal(a as string), defId);
      case 'complex': {
        const re = float(a as string);
        const im = float(b as string);
        return this.#done(new PyComplex(+re, +im), defId);
      }
      case 'range': {
        const f = (a as number[]).map((x) => int(String(x)));
        return this.#done(new PyRange(f[0]!, f[1]!, f[2]!), defId);
      }
      case 'slice': {
        const f = (a as Desc[]).map((x) => this.#build(x));
        return this.#done(new PySlice(f[0], f[1], f[2]), defId);
      }
      case 'uuid':
        return this.#done(new PyUUID(BigInt(`0x${a as string}`), b as number | null), defId);
      case 'global':
        return this.#done(new PyGlobal(a as string, b as string), defId);
      case 'OrderedDict':
        return this.#done(new PyOrderedDict((a as Array<[Desc, Desc]>).map(([k, v]) => [this.#build(k), this.#build(v)])), defId);
      case 'defaultdict':
        return this.#done(new PyDefaultDict(this.#build(a as Desc), (b as Array<[Desc, Desc]>).map(([k, v]) => [this.#build(k), this.#build(v)])), defId);
      case 'deque':
        return this.#done(PyDeque.create((a as Desc[]).map((x) => this.#build(x)), b as number | null), defId);
      case 'Counter': {
        const out = new PyCounter();
        for (const [k, v] of a as Array<[Desc, Desc]>) out.set(this.#build(k), this.#build(v) as number);
        return this.#done(out, defId);
      }
      case 'exception': {
        const args = (b as Desc[]).map((x) => this.#build(x));
        return this.#done(new PythonException(a as string, args, { state: c === null ? undefined : this.#build(c as Desc) }), defId);
      }
      default:
        throw new Error(`unknown descriptor kind ${kind}`);
    }
  }

  #child(d: Desc, patch: (v: unknown) => void): unknown {
    if (d[0] === 'ref') {
      const id = d[1] as number;
      if (this.#env.has(id)) return this.#env.get(id);
      this.#fixups.push({ id, apply: patch });
      return PENDING;
    }
    return this.#build(d);
  }

  #done<T>(v: T, defId: number | undefined): T {
    if (defId !== undefined) this.#define(defId, v);
    return v;
  }
}

export function buildValue(d: Desc): unknown {
  return new Builder().build(d);
}
