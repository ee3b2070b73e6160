/**
 * `Connection`: framed messages over a socket or pipe, exactly as
 * `multiprocessing.connection.Connection` and billiard's `Connection` write
 * and read them (spec/connection.md sections 1 and 6).
 *
 * Reading is event-driven: the stream's chunks go through a FrameReader, and
 * complete frames wait in a queue for `recv*` calls (which take them in call
 * order). When frames pile up with nobody reading, the stream is paused, so
 * a fast sender cannot fill this process's memory.
 */

import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import { dumps, loads, Pickler, UnpicklingError, type UnpicklerOptions } from '../pickle/index.js';
import { BufferTooShort, EOFError, OSError, TimeoutError } from './errors.js';
import { FrameReader, HEADER_SIZE, longHeader, MAX_SHORT_PAYLOAD, SINGLE_WRITE_LIMIT, writeHeader } from './frames.js';

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  /** Whether this end reads. Defaults to true. */
  readable?: boolean;
  /** Whether this end writes. Defaults to true. */
  writable?: boolean;
  /**
   * Pickle protocol of `send`: 4 by default, what billiard and CPython 3.8-3.13
   * write (3.14 writes 5; every peer reads both).
   */
  protocol?: number;
  /** Options for `loads` in `recv` (registry, dicts, floats...). Defaults to loads' own. */
  loadOptions?: UnpicklerOptions;
  /**
   * Allow sending payloads over 2**31-1 bytes with the long header that
   * CPython 3.8+ reads. billiard cannot read it, so the default is false: such
   * a payload is refused with OSError `MESSAGE_TOO_LARGE` before any byte is written.
   */
  largeFrames?: boolean;
  /**
   * Frames longer than this many bytes are refused (OSError `BAD_MESSAGE_LENGTH`)
   * as soon as their header arrives, whatever `recvBytes` is given. Defaults
   * to no limit beyond the long header's 2**53.
   */
  maxMessageSize?: number;
}

/** Bytes of unread frames after which the stream is paused until someone reads. */
const READ_HIGH_WATER = 16 * 1024 * 1024;

const kOnReadable = Symbol('billiard-ts.connection.onReadable');

/** The readiness listeners of a connection (poll, wait): a Set that reports when it changes. */
class ListenerSet extends Set<() => void> {
  readonly #changed: () => void;
  constructor(changed: () => void) {
    super();
    this.#changed = changed;
  }
  override add(f: () => void): this {
    super.add(f);
    this.#changed();
    return this;
  }
  override delete(f: () => void): boolean {
    const had = super.delete(f);
    this.#changed();
    return had;
  }
}

/** Connections with an open stream, so that a finishing child can flush their writes (see flushConnections). */
const live = new Set<Connection>();

/**
 * @internal Waits until every open connection has handed its queued writes
 * to the kernel (or `timeoutMs` passed): a child calls it before exiting, so
 * that a `send` its target did not await still reaches the parent, as
 * Python's blocking send would have.
 */
export async function flushConnections(timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const c of live) {
    const s = c.openedStream;
    if (s === null || s.destroyed || s.writableLength === 0) continue;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      s.write(new Uint8Array(0), () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

interface Waiter {
  maxlength: number;
  resolve: (frame: Uint8Array) => void;
  reject: (e: Error) => void;
}

/** The file descriptor behind a Node stream, when it has one. */
function fdOf(stream: Duplex): number {
  const handle = (stream as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

function toSeconds(timeout: number | null | undefined, name: string): number | null {
  if (timeout === null || timeout === undefined) return null;
  if (typeof timeout !== 'number' || Number.isNaN(timeout)) throw new TypeError(`${name} must be a number of seconds or null`);
  return Math.max(0, timeout);
}

/**
 * One end of a connection. Made by `Pipe()`, `Listener.accept()`, `Client()`,
 * or from a file descriptor or stream.
 */
export class Connection {
  /** The stream; null until first use for a connection made from a file descriptor. */
  #streamOrNull: Duplex | null;
  /** The file descriptor a lazily opened connection wraps, else -1. */
  readonly #fd: number;
  readonly #readable: boolean;
  readonly #writable: boolean;
  readonly #protocol: number;
  readonly #loadOptions: UnpicklerOptions | undefined;
  readonly #largeFrames: boolean;
  readonly #maxMessageSize: number;
  readonly #reader = new FrameReader();
  /** Complete frames nobody has taken yet. */
  readonly #frames: Uint8Array[] = [];
  #framesBytes = 0;
  readonly #waiters: Waiter[] = [];
  #pickler: Pickler | undefined;
  #closed = false;
  /** Reading is over for good: the peer's end of stream, a stream error or a protocol error. */
  #ended = false;
  #endError: Error | null = null;
  /** Set by a refused maxlength: a duplex end stops reading, as in CPython. */
  #readDisabled = false;
  #paused = false;
  /** Writes handed to the stream and not yet done. */
  #pendingWrites = 0;
  /** Whether the stream currently keeps the event loop alive (see #refresh). */
  #refd = true;
  readonly [kOnReadable]: Set<() => void> = new ListenerSet(() => this.#refresh());

  /**
   * A connection over a Node stream, or over a file descriptor (a number),
   * which is wrapped in a socket only when the connection is first used: an
   * end that is only handed to a child process keeps its blocking mode, as a
   * Python child expects (Node makes the descriptors it reads non-blocking,
   * and that flag is shared with every process holding the descriptor).
   */
  constructor(source: Duplex | number, options?: ConnectionOptions) {
    const readable = options?.readable ?? true;
    const writable = options?.writable ?? true;
    if (!readable && !writable) throw new RangeError('at least one of `readable` and `writable` must be true');
    if (typeof source === 'number' && (!Number.isInteger(source) || source < 0)) throw new RangeError('invalid handle');
    this.#streamOrNull = typeof source === 'number' ? null : source;
    this.#fd = typeof source === 'number' ? source : -1;
    this.#readable = readable;
    this.#writable = writable;
    this.#protocol = options?.protocol ?? 4;
    this.#loadOptions = options?.loadOptions;
    this.#largeFrames = options?.largeFrames ?? false;
    this.#maxMessageSize = options?.maxMessageSize ?? Number.MAX_SAFE_INTEGER;
    if (!Number.isInteger(this.#protocol) || this.#protocol < 0 || this.#protocol > 5) throw new RangeError('options.protocol must be 0 to 5');
    if (this.#streamOrNull !== null) this.#attach(this.#streamOrNull);
  }

  /** @internal the stream if it was opened, else null. */
  get openedStream(): Duplex | null {
    return this.#streamOrNull;
  }

  /**
   * Wraps an open file descriptor (a socket or a pipe end), e.g. one inherited
   * from a parent process. The Connection owns it and closes it. The
   * descriptor is opened as a Node socket on first use.
   */
  static fromFd(fd: number, options?: ConnectionOptions): Connection {
    return new Connection(fd, options);
  }

  /** The stream, opening a file descriptor on first use. */
  get #stream(): Duplex {
    if (this.#streamOrNull === null) {
      const socket = new Socket({ fd: this.#fd, readable: this.#readable, writable: this.#writable, allowHalfOpen: true });
      this.#streamOrNull = socket;
      this.#attach(socket);
    }
    return this.#streamOrNull;
  }

  #attach(stream: Duplex): void {
    live.add(this);
    this.#refresh();
    stream.on('error', (e: Error) => this.#finish(e));
    if (this.#readable) {
      stream.on('data', (chunk: Uint8Array) => this.#onData(chunk));
      stream.on('end', () => this.#finish(null));
    } else {
      // A write-only end still learns when the peer goes away.
      stream.on('end', () => undefined);
    }
    stream.on('close', () => {
      live.delete(this);
      this.#finish(null);
    });
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True if this end reads. */
  get readable(): boolean {
    return this.#readable && !this.#readDisabled;
  }

  /** True if this end writes. */
  get writable(): boolean {
    return this.#writable;
  }

  /** The file descriptor, or -1 when the stream has none. Throws once closed. */
  fileno(): number {
    this.#checkOpen();
    return this.#streamOrNull === null ? this.#fd : fdOf(this.#streamOrNull);
  }

  /** The underlying Node stream. */
  get stream(): Duplex {
    return this.#stream;
  }

  // ------------------------------------------------------------ writing

  /** Pickles `obj` (protocol 4 unless configured) and sends it as one frame. */
  async send(obj: unknown): Promise<void> {
    this.#checkWritable();
    // One buffer: 4 header bytes, then the pickle, written by a pickler that keeps its memory.
    const pickler = (this.#pickler ??= new Pickler({ protocol: this.#protocol }));
    let frame: Uint8Array;
    if (pickler.busy) {
      const body = dumps(obj, { protocol: this.#protocol });
      frame = new Uint8Array(HEADER_SIZE + body.length);
      frame.set(body, HEADER_SIZE);
    } else {
      frame = pickler.dump(obj, HEADER_SIZE).slice();
    }
    const n = frame.length - HEADER_SIZE;
    if (n > MAX_SHORT_PAYLOAD) return this.#writeLarge(frame.subarray(HEADER_SIZE));
    writeHeader(frame, 0, n);
    return this.#write([frame]);
  }

  /**
   * Sends `size` bytes of `buf` from `offset` (both in bytes) as one frame.
   * Any typed array or DataView is sent as its bytes.
   */
  async sendBytes(buf: ArrayBufferView | ArrayBuffer, offset = 0, size?: number): Promise<void> {
    this.#checkWritable();
    const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (!Number.isInteger(offset) || offset < 0) throw new RangeError('offset is negative');
    if (bytes.length < offset) throw new RangeError('buffer length < offset');
    if (size === undefined) size = bytes.length - offset;
    else if (!Number.isInteger(size) || size < 0) throw new RangeError('size is negative');
    else if (bytes.length < offset + size) throw new RangeError('buffer length < offset + size');
    const payload = bytes.subarray(offset, offset + size);
    if (size > MAX_SHORT_PAYLOAD) return this.#writeLarge(payload);
    if (size <= SINGLE_WRITE_LIMIT) {
      const frame = new Uint8Array(HEADER_SIZE + size);
      writeHeader(frame, 0, size);
      frame.set(payload, HEADER_SIZE);
      return this.#write([frame]);
    }
    const header = new Uint8Array(HEADER_SIZE);
    writeHeader(header, 0, size);
    return this.#write([header, payload]);
  }

  #writeLarge(payload: Uint8Array): Promise<void> {
    if (!this.#largeFrames) {
      throw new OSError(`a message of ${payload.length} bytes is over 2**31-1, which billiard cannot read (set largeFrames for a CPython 3.8+ peer)`, {
        code: 'MESSAGE_TOO_LARGE',
      });
    }
    return this.#write([longHeader(payload.length), payload]);
  }

  #write(parts: Uint8Array[]): Promise<void> {
    const stream = this.#stream;
    this.#pendingWrites++;
    this.#refresh();
    return new Promise<void>((resolve, reject) => {
      const done = (e?: Error | null): void => {
        this.#pendingWrites--;
        this.#refresh();
        if (e) reject(this.#wrapWriteError(e));
        else resolve();
      };
      if (parts.length === 1) {
        stream.write(parts[0], done);
        return;
      }
      // Header and payload leave together (writev).
      stream.cork();
      for (let i = 0; i < parts.length - 1; i++) stream.write(parts[i]);
      stream.write(parts[parts.length - 1], done);
      process.nextTick(() => stream.uncork());
    });
  }

  #wrapWriteError(e: Error): Error {
    if (e instanceof OSError) return e;
    const code = (e as { code?: string }).code;
    if (code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ECONNRESET' || code === 'ERR_STREAM_WRITE_AFTER_END') {
      return new OSError(this.#closed ? 'handle is closed' : 'the peer has closed the connection', { code: this.#closed ? 'HANDLE_CLOSED' : 'BROKEN_PIPE', cause: e });
    }
    return new OSError(e.message, { code: code ?? 'OSERROR', cause: e });
  }

  // ------------------------------------------------------------ reading

  /**
   * Receives one frame and unpickles it (any protocol 0-5). A frame that is
   * not a pickle raises UnpicklingError and is consumed: the next frame can
   * still be read. (CPython raises EOFError for an empty frame, which looks
   * like a closed peer; here it is an UnpicklingError, code TRUNCATED.)
   */
  async recv(): Promise<unknown> {
    const frame = await this.#nextFrame(Number.MAX_SAFE_INTEGER);
    try {
      return loads(frame, this.#loadOptions);
    } catch (e) {
      if (e instanceof EOFError) {
        throw new UnpicklingError(frame.length === 0 ? 'received an empty message where a pickle was expected' : 'pickle data was truncated', { code: 'TRUNCATED', cause: e });
      }
      throw e;
    }
  }

  /**
   * Receives one frame's bytes. A frame longer than `maxlength` is refused
   * with OSError `BAD_MESSAGE_LENGTH`; then, as in CPython, a duplex end stops
   * reading and a read-only end is closed.
   */
  async recvBytes(maxlength?: number | null): Promise<Uint8Array> {
    if (maxlength !== undefined && maxlength !== null && (typeof maxlength !== 'number' || maxlength < 0)) throw new RangeError('negative maxlength');
    const frame = await this.#nextFrame(maxlength ?? Number.MAX_SAFE_INTEGER);
    // A frame the reader assembled is already a buffer of its own; a view into a received chunk is copied.
    if (Object.getPrototypeOf(frame) === Uint8Array.prototype && frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength) return frame;
    return new Uint8Array(frame);
  }

  /**
   * Receives one whole frame into `buf` at byte `offset`; returns its length.
   * A frame that does not fit raises {@link BufferTooShort} holding it (the
   * frame is consumed, the connection stays in step).
   */
  async recvBytesInto(buf: ArrayBufferView, offset = 0): Promise<number> {
    const target = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (offset < 0) throw new RangeError('negative offset');
    if (offset > target.length) throw new RangeError('offset too large');
    const frame = await this.#nextFrame(Number.MAX_SAFE_INTEGER);
    if (offset + frame.length > target.length) throw new BufferTooShort(new Uint8Array(frame));
    target.set(frame, offset);
    return frame.length;
  }

  /**
   * Whether there is something to read: buffered data, or the end of the
   * stream (then the next `recv` raises EOFError). `timeout` is in seconds:
   * 0 (the default) checks and returns at once, null waits for ever.
   */
  async poll(timeout: number | null = 0): Promise<boolean> {
    this.#checkReadable();
    const seconds = toSeconds(timeout, 'timeout');
    if (this.#isReady()) return true;
    if (seconds === 0) return false;
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const listener = (): void => {
        if (timer) clearTimeout(timer);
        this[kOnReadable].delete(listener);
        resolve(true);
      };
      this[kOnReadable].add(listener);
      if (seconds !== null) {
        timer = setTimeout(() => {
          this[kOnReadable].delete(listener);
          resolve(this.#isReady());
        }, seconds * 1000);
      }
    });
  }

  /** @internal readiness as `poll` and `wait` see it. */
  isReady(): boolean {
    return this.#isReady();
  }

  #isReady(): boolean {
    if (this.#closed) return true;
    if (this.#readable && this.#streamOrNull === null) void this.#stream; // start reading
    return this.#frames.length > 0 || this.#reader.partial || this.#ended;
  }

  #nextFrame(maxlength: number): Promise<Uint8Array> {
    this.#checkReadable();
    void this.#stream; // a descriptor starts reading on first use
    if (this.#waiters.length === 0 && this.#frames.length > 0) {
      const frame = this.#frames[0]!;
      if (frame.length > maxlength) return Promise.reject(this.#refuse(frame.length, maxlength));
      this.#frames.shift();
      this.#framesBytes -= frame.length;
      this.#resumeIfDrained();
      return Promise.resolve(frame);
    }
    if (this.#waiters.length === 0 && this.#frames.length === 0) {
      const err = this.#pendingFailure(maxlength);
      if (err) return Promise.reject(err);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#waiters.push({ maxlength, resolve, reject });
      this.#resume();
      this.#refresh();
    });
  }

  /** An error the next read must raise now, if the stream cannot deliver another frame. */
  #pendingFailure(maxlength: number): Error | null {
    if (this.#endError) return this.#endError;
    try {
      const n = this.#reader.peekLength();
      if (n > maxlength) return this.#refuse(n, maxlength);
    } catch (e) {
      // A protocol error in the stream (a bad header): reading is over.
      this.#endError = e as Error;
      this.#ended = true;
      return this.#endError;
    }
    if (!this.#ended) return null;
    if (this.#reader.partial) return new EOFError('got end of file during message', { code: 'TRUNCATED_FRAME' });
    return new EOFError();
  }

  #refuse(length: number, maxlength: number): OSError {
    // As CPython: a duplex end stops reading, a read-only end is closed.
    if (this.#writable) this.#readDisabled = true;
    else this.close();
    return new OSError(`bad message length: ${length} bytes (maxlength ${maxlength})`, { code: 'BAD_MESSAGE_LENGTH' });
  }

  #onData(chunk: Uint8Array): void {
    this.#reader.push(chunk);
    try {
      for (;;) {
        const n = this.#reader.peekLength();
        if (n < 0) break;
        if (n > this.#maxMessageSize) throw new OSError(`bad message length: ${n} bytes (maxMessageSize ${this.#maxMessageSize})`, { code: 'BAD_MESSAGE_LENGTH' });
        const w = this.#waiters[0];
        if (w !== undefined && n > w.maxlength) {
          this.#waiters.shift();
          w.reject(this.#refuse(n, w.maxlength));
          this.#failWaiters();
          return;
        }
        const frame = this.#reader.next();
        if (frame === null) break;
        this.#deliver(frame);
      }
    } catch (e) {
      this.#finish(e as Error);
      return;
    }
    if (this.#framesBytes + this.#reader.buffered > READ_HIGH_WATER && this.#waiters.length === 0) this.#pause();
    this.#notify();
  }

  #deliver(frame: Uint8Array): void {
    const w = this.#waiters.shift();
    if (w !== undefined) {
      if (this.#waiters.length === 0) this.#refresh();
      w.resolve(frame);
      return;
    }
    this.#frames.push(frame);
    this.#framesBytes += frame.length;
  }

  #notify(): void {
    if (this[kOnReadable].size === 0 || !this.#isReady()) return;
    for (const f of [...this[kOnReadable]]) f();
  }

  /**
   * A Python process ends when its main code does, whatever connections are
   * open. So a connection keeps Node's event loop alive only while something
   * waits on it (a recv, a poll, a wait) or a write is under way; an idle
   * one does not hold the process open.
   */
  #refresh(): void {
    const stream = this.#streamOrNull as (Duplex & { ref?: () => void; unref?: () => void }) | null;
    if (stream === null || stream.destroyed || typeof stream.unref !== 'function') return;
    const busy = this.#waiters.length > 0 || this[kOnReadable].size > 0 || this.#pendingWrites > 0;
    if (busy === this.#refd) return;
    this.#refd = busy;
    if (busy) stream.ref!();
    else stream.unref();
  }

  #pause(): void {
    if (!this.#paused) {
      this.#paused = true;
      this.#stream.pause();
    }
  }

  #resume(): void {
    if (this.#paused) {
      this.#paused = false;
      this.#stream.resume();
    }
  }

  #resumeIfDrained(): void {
    if (this.#paused && this.#framesBytes + this.#reader.buffered <= READ_HIGH_WATER / 2) this.#resume();
  }

  /** The stream ended (error null) or failed: waiters that cannot get a frame fail. */
  #finish(error: Error | null): void {
    if (error !== null && this.#endError === null) {
      this.#endError = error instanceof OSError || error instanceof EOFError ? error : new OSError(error.message, { code: (error as { code?: string }).code ?? 'OSERROR', cause: error });
    }
    this.#ended = true;
    this.#failWaiters();
    this.#notify();
  }

  #failWaiters(): void {
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0]!;
      const err = this.#closed
        ? new OSError('handle is closed', { code: 'HANDLE_CLOSED' })
        : this.#readDisabled
          ? new OSError('connection is write-only', { code: 'WRITE_ONLY' })
          : this.#pendingFailure(w.maxlength);
      if (err === null) break;
      this.#waiters.shift();
      w.reject(err);
    }
    this.#refresh();
  }

  // ------------------------------------------------------------ state

  #checkOpen(): void {
    if (this.#closed) throw new OSError('handle is closed', { code: 'HANDLE_CLOSED' });
  }

  #checkReadable(): void {
    this.#checkOpen();
    if (!this.#readable || this.#readDisabled) throw new OSError('connection is write-only', { code: 'WRITE_ONLY' });
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (!this.#writable) throw new OSError('connection is read-only', { code: 'READ_ONLY' });
  }

  /**
   * Closes this end (idempotent). Writes already queued are flushed first;
   * pending reads fail with OSError `HANDLE_CLOSED`.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    live.delete(this);
    if (this.#streamOrNull === null) {
      // Never used: close the descriptor without making it a socket.
      try {
        closeSync(this.#fd);
      } catch {
        // already closed elsewhere
      }
      this.#ended = true;
      this.#failWaiters();
      return;
    }
    const stream = this.#streamOrNull;
    if (stream.writableLength > 0 && !stream.destroyed) stream.end(() => stream.destroy());
    else stream.destroy();
    this.#failWaiters();
    this.#notify();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** @internal the readiness listeners `wait` registers. */
export { kOnReadable };

/** @internal for `wait`: seconds to milliseconds with Python's rules. */
export function timeoutMs(timeout: number | null | undefined): number | null {
  const s = toSeconds(timeout, 'timeout');
  return s === null ? null : s * 1000;
}

/** @internal */
export function timeoutError(what: string): TimeoutError {
  return new TimeoutError(`${what} timed out`);
}
