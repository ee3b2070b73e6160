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
/** Byte runs up to this long are checked and decoded as ASCII in one step (shortAscii). */
const SHORT_ASCII_MAX = 16;

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

/**
 * `d[p, p + n)` as a string when every byte is ASCII, else null, for n up to
 * 16: each byte is read once, into the check and into one
 * `String.fromCharCode` call, with no scan ahead of it (the scan was the
 * hottest line of decoding the benchmark's short strings).
 */
function shortAscii(d: Uint8Array, p: number, n: number): string | null {
  const f = String.fromCharCode;
  switch (n) {
    case 0:
      return '';
    case 1: {
      const b0 = d[p]!;
      return b0 < 0x80 ? f(b0) : null;
    }
    case 2: {
      const b0 = d[p]!, b1 = d[p + 1]!;
      return (b0 | b1) < 0x80 ? f(b0, b1) : null;
    }
    case 3: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!;
      return (b0 | b1 | b2) < 0x80 ? f(b0, b1, b2) : null;
    }
    case 4: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!;
      return (b0 | b1 | b2 | b3) < 0x80 ? f(b0, b1, b2, b3) : null;
    }
    case 5: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!;
      return (b0 | b1 | b2 | b3 | b4) < 0x80 ? f(b0, b1, b2, b3, b4) : null;
    }
    case 6: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!;
      return (b0 | b1 | b2 | b3 | b4 | b5) < 0x80 ? f(b0, b1, b2, b3, b4, b5) : null;
    }
    case 7: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6) : null;
    }
    case 8: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7) : null;
    }
    case 9: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8) : null;
    }
    case 10: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9) : null;
    }
    case 11: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10) : null;
    }
    case 12: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!, b11 = d[p + 11]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10 | b11) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11) : null;
    }
    case 13: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!, b11 = d[p + 11]!, b12 = d[p + 12]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10 | b11 | b12) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12) : null;
    }
    case 14: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!, b11 = d[p + 11]!, b12 = d[p + 12]!, b13 = d[p + 13]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10 | b11 | b12 | b13) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13) : null;
    }
    case 15: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!, b11 = d[p + 11]!, b12 = d[p + 12]!, b13 = d[p + 13]!, b14 = d[p + 14]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10 | b11 | b12 | b13 | b14) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14) : null;
    }
    case 16: {
      const b0 = d[p]!, b1 = d[p + 1]!, b2 = d[p + 2]!, b3 = d[p + 3]!, b4 = d[p + 4]!, b5 = d[p + 5]!, b6 = d[p + 6]!, b7 = d[p + 7]!, b8 = d[p + 8]!, b9 = d[p + 9]!, b10 = d[p + 10]!, b11 = d[p + 11]!, b12 = d[p + 12]!, b13 = d[p + 13]!, b14 = d[p + 14]!, b15 = d[p + 15]!;
      return (b0 | b1 | b2 | b3 | b4 | b5 | b6 | b7 | b8 | b9 | b10 | b11 | b12 | b13 | b14 | b15) < 0x80 ? f(b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15) : null;
    }
    default:
      return null;
  }
}

function joinAscii(head: string | null, tail: string | null): string | null {
  return head === null || tail === null ? null : head + tail;
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
    const ascii = n <= SHORT_ASCII_MAX ? shortAscii(data, start, n) : joinAscii(shortAscii(data, start, SHORT_ASCII_MAX), shortAscii(data, start + SHORT_ASCII_MAX, n - SHORT_ASCII_MAX));
    return ascii !== null ? ascii : decodeSlow(data, start, end);
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
