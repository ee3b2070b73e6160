/**
 * UTF-8 with Python's `surrogatepass` error handler: lone surrogates are
 * written as their 3-byte encodings and read back, which `TextEncoder` and
 * `TextDecoder` cannot do (they replace them with U+FFFD). Everything else is
 * strict UTF-8.
 */

/** `String.prototype.isWellFormed` (ES2024, in Node 20) is missing from the ES2023 lib. */
type WellFormed = string & { isWellFormed(): boolean };

const fatalDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/**
 * Strings at least this long are encoded with `TextEncoder.encodeInto` when
 * they are well formed; shorter ones with the loop below (measured with
 * bench/micro-utf8.ts: the native call costs more than the loop below ~24
 * characters).
 */
const ENCODE_NATIVE_MIN = 24;
/** Byte runs at least this long are decoded by `TextDecoder` (bench/micro-utf8.ts). */
const DECODE_NATIVE_MIN = 32;

/**
 * Writes `s` as UTF-8 (surrogatepass) into `out` at `pos`; `out` must have
 * room for `3 * s.length` bytes. Returns the new position.
 */
export function encodeUtf8Into(s: string, out: Uint8Array, pos: number): number {
  const n = s.length;
  if (n >= ENCODE_NATIVE_MIN && (s as WellFormed).isWellFormed()) {
    return pos + encoder.encodeInto(s, out.subarray(pos)).written;
  }
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[pos++] = c;
    } else if (c < 0x800) {
      out[pos++] = 0xc0 | (c >> 6);
      out[pos++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        out[pos++] = 0xf0 | (c >> 18);
        out[pos++] = 0x80 | ((c >> 12) & 0x3f);
        out[pos++] = 0x80 | ((c >> 6) & 0x3f);
        out[pos++] = 0x80 | (c & 0x3f);
      } else {
        out[pos++] = 0xe0 | (c >> 12);
        out[pos++] = 0x80 | ((c >> 6) & 0x3f);
        out[pos++] = 0x80 | (c & 0x3f);
      }
    } else {
      // BMP characters and lone surrogates (surrogatepass) alike.
      out[pos++] = 0xe0 | (c >> 12);
      out[pos++] = 0x80 | ((c >> 6) & 0x3f);
      out[pos++] = 0x80 | (c & 0x3f);
    }
  }
  return pos;
}

/** The UTF-8 (surrogatepass) length of `s`, in bytes. */
export function utf8Length(s: string): number {
  const n = s.length;
  let len = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      if (c < 0x800) len += 1;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          i++;
          len += 2; // 4 bytes for 2 UTF-16 units
        } else len += 2;
      } else len += 2;
    }
  }
  return len;
}

/** ASCII bytes to a string: short ones without an intermediate array or concatenations. */
function asciiString(d: Uint8Array, p: number, n: number): string {
  const f = String.fromCharCode;
  switch (n) {
    case 0:
      return '';
    case 1:
      return f(d[p]!);
    case 2:
      return f(d[p]!, d[p + 1]!);
    case 3:
      return f(d[p]!, d[p + 1]!, d[p + 2]!);
    case 4:
      return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!);
    case 5:
      return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!, d[p + 4]!);
    case 6:
      return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!, d[p + 4]!, d[p + 5]!);
    case 7:
      return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!, d[p + 4]!, d[p + 5]!, d[p + 6]!);
    case 8:
      return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!, d[p + 4]!, d[p + 5]!, d[p + 6]!, d[p + 7]!);
    default:
      // Up to 24 characters in pieces of 8: three times faster than apply() over a subarray.
      if (n <= 24) return f(d[p]!, d[p + 1]!, d[p + 2]!, d[p + 3]!, d[p + 4]!, d[p + 5]!, d[p + 6]!, d[p + 7]!) + asciiString(d, p + 8, n - 8);
      return f.apply(null, d.subarray(p, p + n) as unknown as number[]);
  }
}

/** Thrown by {@link decodeUtf8} on bytes that are not UTF-8 (surrogatepass). */
export class Utf8Error extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(message);
    this.offset = offset;
  }
}

/**
 * Decodes `data[start, end)` as UTF-8 with surrogatepass. Throws
 * {@link Utf8Error} on anything else that is not valid UTF-8.
 */
export function decodeUtf8(data: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n < DECODE_NATIVE_MIN) {
    // Short runs: ASCII is by far the most common case.
    let i = start;
    while (i < end && data[i]! < 0x80) i++;
    if (i === end) return asciiString(data, start, n);
    return decodeSlow(data, start, end);
  }
  try {
    return fatalDecoder.decode(data.subarray(start, end));
  } catch {
    return decodeSlow(data, start, end);
  }
}

/** A code-unit-by-code-unit decoder that accepts encoded surrogates. */
function decodeSlow(data: Uint8Array, start: number, end: number): string {
  const units: number[] = [];
  let out = '';
  let i = start;
  while (i < end) {
    const b0 = data[i]!;
    if (b0 < 0x80) {
      units.push(b0);
      i++;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      if (i + 1 >= end) throw unexpectedEnd(i);
      const b1 = data[i + 1]!;
      if ((b1 & 0xc0) !== 0x80) throw invalidContinuation(i + 1, b1);
      units.push(((b0 & 0x1f) << 6) | (b1 & 0x3f));
      i += 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      if (i + 2 >= end) {
        checkPrefix(data, i, end);
        throw unexpectedEnd(i);
      }
      const b1 = data[i + 1]!;
      const b2 = data[i + 2]!;
      // E0 needs A0..BF (no overlong forms); ED A0..BF are surrogates, accepted (surrogatepass).
      if ((b1 & 0xc0) !== 0x80 || (b0 === 0xe0 && b1 < 0xa0)) throw invalidContinuation(i + 1, b1);
      if ((b2 & 0xc0) !== 0x80) throw invalidContinuation(i + 2, b2);
      units.push(((b0 & 0x0f) << 12) | ((b1 & 0x3f) << 6) | (b2 & 0x3f));
      i += 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      if (i + 3 >= end) {
        checkPrefix(data, i, end);
        throw unexpectedEnd(i);
      }
      const b1 = data[i + 1]!;
      const b2 = data[i + 2]!;
      const b3 = data[i + 3]!;
      if ((b1 & 0xc0) !== 0x80 || (b0 === 0xf0 && b1 < 0x90) || (b0 === 0xf4 && b1 > 0x8f)) {
        throw invalidContinuation(i + 1, b1);
      }
      if ((b2 & 0xc0) !== 0x80) throw invalidContinuation(i + 2, b2);
      if ((b3 & 0xc0) !== 0x80) throw invalidContinuation(i + 3, b3);
      const cp = ((b0 & 0x07) << 18) | ((b1 & 0x3f) << 12) | ((b2 & 0x3f) << 6) | (b3 & 0x3f);
      units.push(0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
      i += 4;
    } else {
      throw new Utf8Error(`invalid start byte 0x${b0.toString(16).padStart(2, '0')} at offset ${i - start}`, i);
    }
    if (units.length >= 8192) {
      out += String.fromCharCode.apply(null, units);
      units.length = 0;
    }
  }
  return out + String.fromCharCode.apply(null, units);
}

/** A sequence cut short by the end: report a bad continuation byte first, as CPython does. */
function checkPrefix(data: Uint8Array, i: number, end: number): void {
  const b0 = data[i]!;
  for (let j = i + 1; j < end; j++) {
    const b = data[j]!;
    if ((b & 0xc0) !== 0x80) throw invalidContinuation(j, b);
    if (j === i + 1 && ((b0 === 0xe0 && b < 0xa0) || (b0 === 0xf0 && b < 0x90) || (b0 === 0xf4 && b > 0x8f))) {
      throw invalidContinuation(j, b);
    }
  }
}

function unexpectedEnd(i: number): Utf8Error {
  return new Utf8Error('unexpected end of data', i);
}

function invalidContinuation(i: number, b: number): Utf8Error {
  return new Utf8Error(`invalid continuation byte 0x${b.toString(16).padStart(2, '0')}`, i);
}

/** Decodes `data[start, end)` as latin-1 (every byte one character). */
export function decodeLatin1(data: Uint8Array, start: number, end: number): string {
  let out = '';
  for (let i = start; i < end; i += 8192) {
    out += String.fromCharCode.apply(null, data.subarray(i, Math.min(end, i + 8192)) as unknown as number[]);
  }
  return out;
}
