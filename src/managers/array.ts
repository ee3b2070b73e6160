/**
 * Python's `array.array`, as a manager's `Array` typeid holds it and as
 * `#GETVALUE` sends it: multiprocessing's pickler writes
 * `array.array(typecode, machine_bytes)` (little-endian here, as on every
 * x86 and ARM peer); the standard pickler's
 * `array._array_reconstructor(array.array, typecode, mformat, bytes)` loads
 * too.
 */

import { defaultRegistry, PyGlobal, reduceEx, type ReduceValue } from '../pickle/index.js';

interface Kind {
  size: number;
  read(v: DataView, at: number): number | bigint;
  write(v: DataView, at: number, x: number | bigint): void;
  min?: bigint;
  max?: bigint;
  float?: boolean;
}

function int(size: number, signed: boolean): Kind {
  const bits = BigInt(size * 8);
  const min = signed ? -(1n << (bits - 1n)) : 0n;
  const max = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  const read = (v: DataView, at: number): number | bigint => {
    switch (size) {
      case 1: return signed ? v.getInt8(at) : v.getUint8(at);
      case 2: return signed ? v.getInt16(at, true) : v.getUint16(at, true);
      case 4: return signed ? v.getInt32(at, true) : v.getUint32(at, true);
      default: {
        const b = signed ? v.getBigInt64(at, true) : v.getBigUint64(at, true);
        return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
      }
    }
  };
  const write = (v: DataView, at: number, x: number | bigint): void => {
    switch (size) {
      case 1: return signed ? v.setInt8(at, Number(x)) : v.setUint8(at, Number(x));
      case 2: return signed ? v.setInt16(at, Number(x), true) : v.setUint16(at, Number(x), true);
      case 4: return signed ? v.setInt32(at, Number(x), true) : v.setUint32(at, Number(x), true);
      default: return signed ? v.setBigInt64(at, BigInt(x), true) : v.setBigUint64(at, BigInt(x), true);
    }
  };
  return { size, read, write, min, max };
}

const KINDS: Record<string, Kind> = {
  b: int(1, true), B: int(1, false), h: int(2, true), H: int(2, false), i: int(4, true), I: int(4, false),
  l: int(8, true), L: int(8, false), q: int(8, true), Q: int(8, false),
  f: { size: 4, read: (v, at) => v.getFloat32(at, true), write: (v, at, x) => v.setFloat32(at, Number(x), true), float: true },
  d: { size: 8, read: (v, at) => v.getFloat64(at, true), write: (v, at, x) => v.setFloat64(at, Number(x), true), float: true },
};

/** The typecodes PyArray knows (Python's, but `'u'` and `'w'`). */
export const ARRAY_TYPECODES = Object.freeze(Object.keys(KINDS));

/** Python's `array.array`: a typecode and its items. */
export class PyArray {
  readonly typecode: string;
  readonly items: Array<number | bigint>;

  constructor(typecode: string, items: Iterable<number | bigint> = []) {
    if (!(typecode in KINDS)) throw new TypeError(`bad typecode (must be one of ${ARRAY_TYPECODES.join(', ')}): ${JSON.stringify(typecode)}`);
    this.typecode = typecode;
    this.items = [];
    for (const x of items) this.items.push(PyArray.check(typecode, x));
  }

  /** An item made fit for this typecode, or a TypeError/OverflowError-like RangeError. */
  static check(typecode: string, x: unknown): number | bigint {
    const k = KINDS[typecode]!;
    if (k.float) {
      if (typeof x === 'number') return x;
      if (typeof x === 'bigint') return Number(x);
      if (x !== null && typeof x === 'object' && typeof (x as { valueOf(): unknown }).valueOf() === 'number') return (x as { valueOf(): number }).valueOf();
      throw new TypeError(`must be real number, not ${typeof x}`);
    }
    if (typeof x === 'number' && !Number.isInteger(x)) throw new TypeError("'float' object cannot be interpreted as an integer");
    if (typeof x !== 'number' && typeof x !== 'bigint') throw new TypeError(`an integer is required (got type ${x === null ? 'NoneType' : typeof x})`);
    const b = BigInt(x);
    if (b < k.min! || b > k.max!) throw new RangeError(`array item ${String(x)} out of range for typecode '${typecode}'`);
    return x;
  }

  /** The machine bytes (little-endian). */
  toBytes(): Uint8Array {
    const k = KINDS[this.typecode]!;
    const out = new Uint8Array(this.items.length * k.size);
    const v = new DataView(out.buffer);
    this.items.forEach((x, i) => k.write(v, i * k.size, x));
    return out;
  }

  static fromBytes(typecode: string, bytes: Uint8Array): PyArray {
    const k = KINDS[typecode];
    if (!k) throw new TypeError(`bad typecode: ${JSON.stringify(typecode)}`);
    if (bytes.length % k.size !== 0) throw new TypeError('bytes length not a multiple of item size');
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const items: Array<number | bigint> = [];
    for (let at = 0; at < bytes.length; at += k.size) items.push(k.read(v, at));
    const a = new PyArray(typecode);
    for (const x of items) a.items.push(x);
    return a;
  }

  get length(): number {
    return this.items.length;
  }

  [Symbol.iterator](): Iterator<number | bigint> {
    return this.items[Symbol.iterator]();
  }

  [reduceEx](): ReduceValue {
    return { callable: ARRAY, args: [this.typecode, this.toBytes()] };
  }

  toString(): string {
    return `array('${this.typecode}', [${this.items.join(', ')}])`;
  }
}

const ARRAY = new PyGlobal('array', 'array');

/** Machine-format codes of `array._array_reconstructor` for little-endian items: code → item size. */
const LE_MFORMATS: Record<number, true> = { 0: true, 1: true, 2: true, 4: true, 6: true, 8: true, 10: true, 12: true, 14: true, 16: true };

const arrayGlobal = defaultRegistry.register('array', 'array', {
  call: (args) => {
    const [typecode, init] = args as unknown as [unknown, unknown];
    if (typeof typecode !== 'string') throw new TypeError('array() argument 1 must be a unicode character');
    if (init === undefined) return new PyArray(typecode);
    if (init instanceof Uint8Array) return PyArray.fromBytes(typecode, init);
    if (Array.isArray(init)) return new PyArray(typecode, init as Array<number | bigint>);
    throw new TypeError('array() argument 2 must be bytes or a list');
  },
});

defaultRegistry.register('array', '_array_reconstructor', {
  call: (args) => {
    const [cls, typecode, mformat, bytes] = args as unknown as [unknown, unknown, unknown, unknown];
    if (cls !== arrayGlobal || typeof typecode !== 'string' || typeof mformat !== 'number' || !(bytes instanceof Uint8Array)) throw new TypeError('bad array._array_reconstructor arguments');
    if (!LE_MFORMATS[mformat]) throw new TypeError(`array machine format ${mformat} is not supported (big-endian or unicode)`);
    return PyArray.fromBytes(typecode, bytes);
  },
});
