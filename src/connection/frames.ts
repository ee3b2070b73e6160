/**
 * The frame format of `multiprocessing.connection` (spec/connection.md
 * section 1): a 4-byte big-endian signed length, then the payload. A length
 * of -1 announces an 8-byte big-endian unsigned length (CPython 3.8+, for
 * payloads over 2**31-1 bytes; billiard neither writes nor reads it).
 *
 * FrameReader is the receiving state machine. It never allocates for a
 * length header: it keeps the chunks that arrived and joins them once a frame
 * is complete, so a hostile header claiming gigabytes costs nothing until
 * the bytes are really sent (and the caller's `maxlength` can refuse it as
 * soon as the header is in).
 */

import { OSError } from './errors.js';

/** Size of the ordinary length header. */
export const HEADER_SIZE = 4;
/** The largest payload with an ordinary header (`!i`). */
export const MAX_SHORT_PAYLOAD = 0x7fffffff;
/** The -1 header's extra 8 bytes. */
const LONG_HEADER_EXTRA = 8;
/**
 * CPython writes header and payload in one write up to this payload size
 * (to avoid Nagle stalls on TCP); larger payloads go as two writes.
 */
export const SINGLE_WRITE_LIMIT = 16384;

/** Writes the 4-byte header of a payload of `n` bytes at `out[at]`. */
export function writeHeader(out: Uint8Array, at: number, n: number): void {
  out[at] = (n >>> 24) & 0xff;
  out[at + 1] = (n >>> 16) & 0xff;
  out[at + 2] = (n >>> 8) & 0xff;
  out[at + 3] = n & 0xff;
}

/** The 12-byte header (-1, then a u64) CPython 3.8+ writes for payloads over 2**31-1 bytes. */
export function longHeader(n: number): Uint8Array {
  const h = new Uint8Array(HEADER_SIZE + LONG_HEADER_EXTRA);
  const v = new DataView(h.buffer);
  v.setInt32(0, -1, false);
  v.setUint32(4, Math.floor(n / 0x100000000), false);
  v.setUint32(8, n >>> 0, false);
  return h;
}

/**
 * Frames of at least this many bytes are assembled as their bytes arrive,
 * into one buffer of the frame's size, instead of being kept as chunks and
 * joined at the end: a 256 MiB message then costs one copy of itself, not
 * two. The buffer is allocated only once this many bytes of the frame have
 * arrived, so a header alone never allocates (and the caller's size limit
 * has already refused an oversized header by then).
 */
export const ASSEMBLE_THRESHOLD = 1024 * 1024;

const EMPTY = new Uint8Array(0);

/** Reassembles frames from chunks of a byte stream. */
export class FrameReader {
  #chunks: Uint8Array[] = [];
  /** Offset of the first unread byte in #chunks[0]. */
  #offset = 0;
  /** Unread bytes in #chunks. */
  #available = 0;
  /** Payload length of the frame in progress once its header is read, else -1. */
  #length = -1;
  /** A large frame being filled in place (see ASSEMBLE_THRESHOLD), and how much of it is filled. */
  #assembly: Uint8Array | null = null;
  #filled = 0;

  /** Bytes received and not yet returned as frames (headers included). */
  get buffered(): number {
    return this.#available + this.#filled;
  }

  /** True when part of a frame (a header byte at least) has arrived but not all of it. */
  get partial(): boolean {
    return this.#available > 0 || this.#length >= 0;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const a = this.#assembly;
    if (a !== null) {
      const take = Math.min(chunk.length, a.length - this.#filled);
      a.set(take === chunk.length ? chunk : chunk.subarray(0, take), this.#filled);
      this.#filled += take;
      if (take === chunk.length) return;
      chunk = chunk.subarray(take);
    }
    this.#chunks.push(chunk);
    this.#available += chunk.length;
  }

  /**
   * The payload length of the next frame once its header has arrived, else
   * -1. Throws OSError `BAD_HEADER` for a negative length other than -1, or a
   * long length over 2**53.
   */
  peekLength(): number {
    if (this.#length >= 0) return this.#length;
    if (this.#available < HEADER_SIZE) return -1;
    const n = this.#int32();
    if (n >= 0) {
      this.#skip(HEADER_SIZE);
      this.#length = n;
      return n;
    }
    if (n !== -1) throw new OSError(`negative message length ${n} in a frame header`, { code: 'BAD_HEADER' });
    if (this.#available < HEADER_SIZE + LONG_HEADER_EXTRA) return -1;
    this.#skip(HEADER_SIZE);
    const hi = this.#int32() >>> 0;
    const lo = this.#int32At(4) >>> 0;
    if (hi >= 0x200000) throw new OSError('message length of 2**53 bytes or more in a frame header', { code: 'BAD_HEADER' });
    this.#skip(LONG_HEADER_EXTRA);
    this.#length = hi * 0x100000000 + lo;
    return this.#length;
  }

  /**
   * The next complete payload, or null. The result may be a view into a
   * received chunk: copy it before keeping it. Call it only once the
   * caller accepts the length `peekLength()` gave: a large frame starts
   * being assembled here.
   */
  next(): Uint8Array | null {
    const n = this.peekLength();
    if (n < 0) return null;
    if (n === 0) {
      this.#length = -1;
      return EMPTY;
    }
    let a = this.#assembly;
    if (a === null) {
      if (this.#available < n) {
        if (n < ASSEMBLE_THRESHOLD || this.#available < ASSEMBLE_THRESHOLD) return null;
        // A large frame with a megabyte of it in: fill one buffer from here on.
        a = this.#assembly = new Uint8Array(n);
        this.#filled = this.#drain(a, 0, this.#available);
        return null;
      }
    } else if (this.#filled < n) {
      return null;
    }
    this.#length = -1;
    if (a !== null) {
      this.#assembly = null;
      this.#filled = 0;
      return a;
    }
    const first = this.#chunks[0]!;
    if (first.length - this.#offset >= n) {
      const out = first.subarray(this.#offset, this.#offset + n);
      this.#skip(n);
      return out;
    }
    const out = new Uint8Array(n);
    this.#drain(out, 0, n);
    return out;
  }

  /**
   * Stops holding views of the last chunk pushed, whose memory the caller
   * is about to reuse (a shared read buffer): its unread bytes are copied.
   * When at least half of a frame whose header is in has arrived, the
   * frame's own buffer is allocated now and filled (one copy of the
   * message, not two); a peer makes this process allocate at most twice
   * what it sent.
   */
  release(): void {
    const last = this.#chunks.length - 1;
    if (last < 0) return;
    if (this.#assembly === null && this.#available < this.#length && this.#available * 2 >= this.#length) {
      const a = (this.#assembly = new Uint8Array(this.#length));
      this.#filled = this.#drain(a, 0, this.#available);
      return;
    }
    const c = this.#chunks[last]!;
    const from = last === 0 ? this.#offset : 0;
    this.#chunks[last] = c.slice(from);
    if (last === 0) this.#offset = 0;
  }

  /** Moves `n` unread bytes into `out` at `at`; returns `at + n`. */
  #drain(out: Uint8Array, at: number, n: number): number {
    let filled = at;
    const end = at + n;
    while (filled < end) {
      const c = this.#chunks[0]!;
      const take = Math.min(c.length - this.#offset, end - filled);
      out.set(c.subarray(this.#offset, this.#offset + take), filled);
      filled += take;
      this.#skip(take);
    }
    return filled;
  }

  #skip(n: number): void {
    this.#available -= n;
    while (n > 0) {
      const c = this.#chunks[0]!;
      const left = c.length - this.#offset;
      if (n < left) {
        this.#offset += n;
        return;
      }
      n -= left;
      this.#chunks.shift();
      this.#offset = 0;
    }
  }

  #int32(): number {
    return this.#int32At(0);
  }

  /** The big-endian int32 at `at` bytes past the read position (4 bytes must be available). */
  #int32At(at: number): number {
    const c = this.#chunks[0]!;
    const p = this.#offset + at;
    if (c.length - p >= 4) return (c[p]! << 24) | (c[p + 1]! << 16) | (c[p + 2]! << 8) | c[p + 3]!;
    let v = 0;
    let chunk = 0;
    let off = p;
    for (let i = 0; i < 4; i++) {
      while (off >= this.#chunks[chunk]!.length) {
        off -= this.#chunks[chunk]!.length;
        chunk++;
      }
      v = (v << 8) | this.#chunks[chunk]![off++]!;
    }
    return v;
  }
}
