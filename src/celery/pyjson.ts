/**
 * JSON as Python's `json.dumps` writes it with its defaults (what kombu
 * uses for envelopes, bodies, results and control messages): separators
 * `", "` and `": "`, every character outside printable ASCII escaped as
 * `\uXXXX`, `NaN`/`Infinity` for non-finite floats. And the reading side:
 * `JSON.parse` plus kombu 5.3+'s tagged values (`{"__type__", "__value__"}`,
 * spec/celery.md 1.7) and Python's non-standard `NaN`/`Infinity`.
 */
import { floatRepr } from '../pickle/float-repr.js';
import { PyFloat, PyTuple } from '../pickle/types.js';
import { LONG_KEY_CHARS } from '../pickle/v8-hash.js';

/** A value JSON cannot carry (Python's `TypeError: Object of type X is not JSON serializable`). */
export class JSONEncodeError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'EncodeError';
  }
}

const HEX = '0123456789abcdef';
function u4(code: number): string {
  return `\\u${HEX[(code >> 12) & 15]}${HEX[(code >> 8) & 15]}${HEX[(code >> 4) & 15]}${HEX[code & 15]}`;
}

// JSON.stringify escapes quotes, backslashes, controls and lone surrogates
// (lowercase hex, as Python); Python's ensure_ascii also escapes DEL and
// everything above it, surrogate pairs as two escapes.
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[\u007f-\uffff]/g;

/** A string as Python's `json.dumps(s)` writes it. */
export function pyJsonString(s: string): string {
  const out = JSON.stringify(s);
  return out.replace(NON_ASCII, (c) => u4(c.charCodeAt(0)));
}

function pyNumber(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  // JavaScript cannot tell 3 from 3.0: integral numbers are written as ints.
  // A safe integer's String() is its digits, without a BigInt made for it; past 2**53 String() rounds (2**60 is 1152921504606847000).
  if (Number.isSafeInteger(n)) return Object.is(n, -0) ? '-0.0' : String(n);
  if (Number.isInteger(n) && Math.abs(n) < 2 ** 63) return BigInt(n).toString();
  return floatRepr(n);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/** A Date as Python's `datetime.isoformat()` of an aware UTC datetime: `2026-12-05T08:13:10.319000+00:00`. */
export function isoUtc(date: Date | number, offset = '+00:00'): string {
  const d = typeof date === 'number' ? new Date(date) : date;
  const ms = d.getUTCMilliseconds();
  const base =
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}` +
    `T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`;
  return `${base}${ms === 0 ? '' : `.${pad(ms * 1000, 6)}`}${offset}`;
}

/**
 * `json.dumps(value)` with Python's defaults. Arrays and tuples are lists,
 * plain objects and Maps are dicts (Map keys as Python writes them: strings,
 * numbers, booleans, null), `undefined` is `null`, bigints are ints, Dates
 * are ISO strings (kombu 5.2's encoder, `Z` for UTC). Anything else throws
 * {@link JSONEncodeError}.
 */
export function pyJsonDumps(value: unknown): string {
  return write(value, 0);
}

const MAX_DEPTH = 1000;

// Strings are concatenated, not pushed to an array and joined: V8 joins two
// strings in constant time (a rope, flattened once at the end), and an array
// of a part per number made a result of 12,000,000 numbers take 3.9 s.
function write(v: unknown, depth: number): string {
  if (depth > MAX_DEPTH) throw new JSONEncodeError('maximum recursion depth exceeded while encoding a JSON object');
  switch (typeof v) {
    case 'string':
      return pyJsonString(v);
    case 'number':
      return pyNumber(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return v.toString();
    case 'undefined':
      return 'null';
    case 'object':
      break;
    default:
      throw new JSONEncodeError(`Object of type ${typeof v} is not JSON serializable`);
  }
  if (v === null) return 'null';
  if (v instanceof PyFloat) {
    const n = v.value;
    return Number.isFinite(n) ? floatRepr(n) : pyNumber(n);
  }
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    let out = `[${write(v[0], depth + 1)}`;
    for (let i = 1; i < v.length; i++) out += `, ${write(v[i], depth + 1)}`;
    return `${out}]`;
  }
  if (v instanceof Map) {
    let out = '{';
    let first = true;
    for (const [k, item] of v) {
      if (!first) out += ', ';
      first = false;
      out += `${pyJsonString(keyText(k))}: ${write(item, depth + 1)}`;
    }
    return `${out}}`;
  }
  if (v instanceof Date) return pyJsonString(isoUtc(v, 'Z'));
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    const name = (v as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    throw new JSONEncodeError(`Object of type ${name} is not JSON serializable`);
  }
  let out = '{';
  let first = true;
  for (const k of Object.keys(v)) {
    const item = (v as Record<string, unknown>)[k];
    if (!first) out += ', ';
    first = false;
    out += `${pyJsonString(k)}: ${write(item, depth + 1)}`;
  }
  return `${out}}`;
}

function keyText(k: unknown): string {
  if (typeof k === 'string') return k;
  if (typeof k === 'number') return pyNumber(k);
  if (typeof k === 'bigint') return k.toString();
  if (typeof k === 'boolean') return k ? 'true' : 'false';
  if (k === null || k === undefined) return 'null';
  if (k instanceof PyTuple) throw new JSONEncodeError('keys must be str, int, float, bool or None, not tuple');
  throw new JSONEncodeError(`keys must be str, int, float, bool or None, not ${typeof k}`);
}

/** kombu 5.3+'s tagged values, decoded to what billiard-ts's pickle codec gives for the same Python objects. */
function untag(type: unknown, value: unknown): unknown {
  switch (type) {
    case 'datetime':
    case 'date':
    case 'time':
    case 'decimal':
      if (typeof value !== 'string') break;
      return value;
    case 'uuid':
      if (value !== null && typeof value === 'object' && typeof (value as { hex?: unknown }).hex === 'string') return (value as { hex: string }).hex;
      break;
    case 'bytes':
      if (typeof value === 'string') return new TextEncoder().encode(value);
      break;
    case 'base64':
      if (typeof value === 'string') return new Uint8Array(Buffer.from(value, 'base64'));
      break;
    default:
      throw new SyntaxError(`unknown tagged JSON type ${JSON.stringify(type)}`);
  }
  throw new SyntaxError(`bad tagged JSON value for type ${JSON.stringify(type)}`);
}

function reviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const keys = Object.keys(value);
    if (keys.length === 2 && '__type__' in value && '__value__' in value) {
      const tagged = value as { __type__: unknown; __value__: unknown };
      return untag(tagged.__type__, tagged.__value__);
    }
  }
  return value;
}

// Python's json writes NaN, Infinity and -Infinity bare; JSON.parse does not
// read them. Outside strings they become sentinels the reviver turns back.
const NON_FINITE = /"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)/g;
const SENTINEL = '\u0000billiard-ts-nonfinite:';
const SENTINEL_JSON = '\\u0000billiard-ts-nonfinite:';

/**
 * Object keys longer than this many characters JSON text may hold (see
 * checkLongKeys). V8 hashes a string longer than 16,383 characters by its
 * length alone, so the engine's table of property names compares each such
 * key in full with every other of its length: `JSON.parse` of a 40 MB object
 * with 2,000 such keys took 2.2 s, and the cost grows with their square.
 */
export const MAX_LONG_KEYS = 64;

/**
 * Throws a SyntaxError when `text` holds more than MAX_LONG_KEYS object keys
 * longer than 16,383 characters (counted by their length in the text, which
 * is at least their decoded length). Shorter text cannot hold that many and
 * is not scanned.
 */
function checkLongKeys(text: string): void {
  if (text.length <= (MAX_LONG_KEYS + 1) * (LONG_KEY_CHARS + 3)) return;
  let count = 0;
  let i = text.indexOf('"');
  while (i >= 0) {
    // i is the opening quote of a string: find its closing quote, skipping escapes.
    let j = i + 1;
    for (;;) {
      const q = text.indexOf('"', j);
      if (q < 0) return; // unterminated: JSON.parse reports it
      let backslashes = 0;
      for (let k = q - 1; k > i && text.charCodeAt(k) === 0x5c; k--) backslashes++;
      j = q + 1;
      if ((backslashes & 1) === 0) break;
    }
    if (j - i - 2 > LONG_KEY_CHARS) {
      let k = j;
      while (k < text.length && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x0a || text.charCodeAt(k) === 0x0d || text.charCodeAt(k) === 0x09)) k++;
      if (text.charCodeAt(k) === 0x3a && ++count > MAX_LONG_KEYS) {
        throw new SyntaxError(`the JSON text has more than ${MAX_LONG_KEYS} object keys longer than ${LONG_KEY_CHARS} characters`);
      }
    }
    i = text.indexOf('"', j);
  }
}

/**
 * `json.loads` as kombu does it: JSON.parse, Python's `NaN`/`Infinity`,
 * and kombu 5.3+'s `{"__type__": T, "__value__": V}` tags (datetimes, dates,
 * times and decimals as their ISO/decimal strings, uuids as hex, bytes as
 * Uint8Array). Throws SyntaxError on malformed text, and on text with more
 * than {@link MAX_LONG_KEYS} keys longer than 16,383 characters.
 */
export function pyJsonLoads(text: string): unknown {
  checkLongKeys(text);
  try {
    // A reviver makes JSON.parse several times slower: only text that can
    // hold a tagged value gets one.
    return text.includes('"__type__"') ? JSON.parse(text, reviver) : JSON.parse(text);
  } catch (e) {
    if (!/NaN|Infinity/.test(text)) throw e;
  }
  const replaced = text.replace(NON_FINITE, (m, word: string | undefined) => (word === undefined ? m : `"${SENTINEL_JSON}${word}"`));
  const tagged = text.includes('"__type__"');
  return JSON.parse(replaced, (key, value: unknown) => {
    if (typeof value === 'string' && value.startsWith(SENTINEL)) {
      const word = value.slice(SENTINEL.length);
      return word === 'NaN' ? NaN : word === 'Infinity' ? Infinity : -Infinity;
    }
    return tagged ? reviver(key, value) : value;
  });
}
