/**
 * `Connection`: framed messages over a socket or pipe, exactly as
 * `multiprocessing.connection.Connection` and billiard's `Connection` write
 * and read them (spec/connection.md sections 1 and 6).
 *
 * Reading is event-driven: the stream's chunks go through a FrameReader, and
 * complete frames wait in a queue for `recv*` calls (which take them in call
 * order). What a peer can make this process hold is bounded: a frame over
 * `maxMessageSize` is refused as soon as its header is in, and when unread
 * frames (counted with their bookkeeping, so that a flood of empty frames
 * counts too) pass the high-water mark the stream is paused until someone
 * reads.
 */

import { closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

import { loads, Pickler, UnpicklingError, type UnpicklerOptions } from '../pickle/index.js';
import { BufferTooShort, EOFError, OSError } from './errors.js';
import { ASSEMBLE_THRESHOLD, FrameReader, HEADER_SIZE, longHeader, MAX_SHORT_PAYLOAD, SINGLE_WRITE_LIMIT, writeHeader } from './frames.js';
import { isShared, readIntoSharedBuffer } from './shared-read.js';
import { timeoutSeconds, Timer } from './timers.js';
import { checkOptionNames, optionNames } from './options.js';

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
  /** Options for `loads` in `recv` (registry, dicts, floats, limits...). Defaults to loads' own. */
  loadOptions?: UnpicklerOptions;
  /**
   * Allow sending payloads over 2**31-1 bytes with the long header that
   * CPython 3.8+ reads. billiard cannot read it, so the default is false: such
   * a payload is refused with OSError `MESSAGE_TOO_LARGE` before any byte is written.
   */
  largeFrames?: boolean;
  /**
   * The receive limit, in bytes: a frame longer than this is refused with
   * OSError `BAD_MESSAGE_LENGTH` as soon as its header arrives, before any of
   * its payload is kept, and the connection stops reading (whatever
   * `recvBytes` is given). Defaults to {@link DEFAULT_MAX_MESSAGE_SIZE} (64 MiB)
   * for the connections a `Listener` accepts from the network, and to no
   * limit (beyond the long header's 2**53) for `Pipe()`, `Client()` and
   * descriptors, whose peers are this process's own children or a server it
   * chose.
   */
  maxMessageSize?: number;
}

const CONNECTION_OPTIONS = optionNames<ConnectionOptions>()({ readable: 1, writable: 1, protocol: 1, loadOptions: 1, largeFrames: 1, maxMessageSize: 1 });

/** The receive limit of the connections a Listener accepts, unless its `connection.maxMessageSize` says otherwise. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/**
 * Bytes of unread frames after which the stream is paused until someone
 * reads. Each queued frame counts its length plus {@link FRAME_COST}.
 */
const READ_HIGH_WATER = 16 * 1024 * 1024;
/**
 * What a queued frame costs beyond its payload: the typed-array object and
 * its queue slot (about 100 bytes in V8). Without it a peer sending empty
 * frames (4 bytes each on the wire) was never paused: 64 MiB of them took
 * 3.1 GB of heap.
 */
const FRAME_COST = 128;

/** Readiness listeners of a connection (poll, wait). @internal */
export const kOnReadable = Symbol('billiard-ts.connection.onReadable');
/** Whether a connection has something to read (poll, wait). @internal */
export const kIsReady = Symbol('billiard-ts.connection.isReady');
/** The stream of a connection if it was opened, else null. @internal */
export const kOpenedStream = Symbol('billiard-ts.connection.openedStream');
/**
 * Whether waiting on this connection keeps the process alive (default
 * true); a Listener sets it to false while the connection is its own, during
 * the handshake. @internal
 */
export const kHoldsProcess = Symbol('billiard-ts.connection.holdsProcess');
/**
 * A receive limit for the next few frames: `{ size, frames }` (the handshake
 * reads three frames of at most 256 bytes); null lifts it. @internal
 */
export const kReceiveLimit = Symbol('billiard-ts.connection.receiveLimit');
/**
 * Sends a pickle without a promise for the write, for request/reply
 * protocols (what they wait for is the reply): pickling errors throw, a
 * failed write closes the connection (the next read fails). Returns null
 * when the frame was handed to the stream and its buffer is under the
 * high-water mark; else a promise to wait for before sending more (the
 * drain, or the write itself for a frame that holds the caller's large
 * arrays, which must not change until it is written). @internal
 */
export const kSendNow = Symbol('billiard-ts.connection.sendNow');
/**
 * Queues a frame for the end of this tick, with the other frames batched on
 * the connection in the same tick: they leave together in one write(2) from
 * a buffer the connection keeps, so a small message allocates nothing when
 * the kernel takes the batch whole. `conn[kBatch](obj)` pickles `obj` into
 * it; `conn[kBatch](frame, true)` copies a frame already made (header
 * included). Pickling errors throw, and nothing is queued; a failed write
 * is not reported here (it fails the stream, and reads see it). The
 * batch leaves before any later `send` on the connection, and at once with
 * `conn[kFlushBatch]()`. For the pool's one-writer queues. @internal
 */
export const kBatch = Symbol('billiard-ts.connection.batch');
/** Writes the batched frames now (see {@link kBatch}). @internal */
export const kFlushBatch = Symbol('billiard-ts.connection.flushBatch');
/** A batch buffer kept between ticks is at most this large; a frame above BATCH_FRAME_MAX goes alone. */
const BATCH_KEEP = 64 * 1024;
const BATCH_FRAME_MAX = 16 * 1024;
const noop = (): void => undefined;
/** Resolves when the stream's buffer has drained, or the connection is over. @internal */

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
 * Waits until every open connection has handed its queued writes to the
 * kernel (or `timeoutSeconds` passed): a child calls it before exiting, so
 * that a `send` its target did not await still reaches the parent, as
 * Python's blocking send would have. @internal
 */
export async function flushConnections(seconds = 5): Promise<void> {
  const deadline = performance.now() + seconds * 1000;
  for (const c of live) {
    const s = c[kOpenedStream];
    if (s === null || s.destroyed || s.writableLength === 0) continue;
    await new Promise<void>((resolve) => {
      const timer = new Timer(Math.max(0, deadline - performance.now()) / 1000, resolve);
      s.write(new Uint8Array(0), () => {
        timer.cancel();
        resolve();
      });
    });
  }
}

interface Waiter {
  maxlength: number;
  resolve: (frame: Uint8Array) => void;
  reject: (e: Error) => void;
  /** A consumeFrames() handler: it stays first in line and takes every frame until the stream fails. */
  persistent?: boolean;
}

/** Options of the reading methods: an AbortSignal that gives up the wait (nothing is consumed). */
export interface ReadOptions {
  signal?: AbortSignal;
}

/** Options of {@link Connection.sendBytes}: the slice of the buffer to send, in bytes. */
export interface SendBytesOptions {
  /** Where the message starts in `buf`, in bytes. Defaults to 0. */
  offset?: number;
  /** How many bytes to send. Defaults to the rest of `buf` after `offset`. */
  size?: number;
}

const READ_OPTIONS = optionNames<ReadOptions>()({ signal: 1 });
const SEND_BYTES_OPTIONS = optionNames<SendBytesOptions>()({ offset: 1, size: 1 });

/** The file descriptor behind a Node stream, when it has one. */
function fdOf(stream: Duplex): number {
  const handle = (stream as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

function checkSize(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer number of bytes`);
  return v;
}

/**
 * One end of a connection. Made by `Pipe()`, `Listener.accept()`, `Client()`,
 * or from a file descriptor or stream.
 *
 * `for await (const message of conn)` receives messages until the peer
 * hangs up; `await using conn = ...` closes it.
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
  #copyingOptions: UnpicklerOptions | undefined;
  #assembledOptions: UnpicklerOptions | undefined;
  readonly #largeFrames: boolean;
  readonly #maxMessageSize: number;
  /** A lower limit for the next #limitedFrames frames (while a handshake reads). */
  #receiveLimit: number;
  #limitedFrames = 0;
  readonly #reader = new FrameReader();
  /** Complete frames nobody has taken yet. */
  readonly #frames: Uint8Array[] = [];
  /** What #frames costs: payload bytes plus FRAME_COST a frame. */
  #framesCost = 0;
  readonly #waiters: Waiter[] = [];
  #pickler: Pickler | undefined;
  /** Frames batched for the end of the tick (see kBatch), and their length. */
  #batchBuf: Uint8Array | null = null;
  #batchLen = 0;
  /** Whether the stream reads into the shared buffer, whose bytes must be copied before #onData returns. */
  #shared = false;
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
  #holdsProcess = true;
  /** @internal */
  readonly [kOnReadable]: Set<() => void> = new ListenerSet(() => this.#refresh());

  /**
   * A connection over a Node stream, or over a file descriptor (a number),
   * which is wrapped in a socket only when the connection is first used: an
   * end that is only handed to a child process keeps its blocking mode, as a
   * Python child expects (Node makes the descriptors it reads non-blocking,
   * and that flag is shared with every process holding the descriptor).
   */
  constructor(source: Duplex | number, options?: ConnectionOptions) {
    checkOptionNames(options, CONNECTION_OPTIONS, 'new Connection()');
    const readable = options?.readable ?? true;
    const writable = options?.writable ?? true;
    if (!readable && !writable) throw new RangeError('at least one of `readable` and `writable` must be true');
    if (typeof source === 'number' && (!Number.isInteger(source) || source < 0)) throw new RangeError('invalid handle');
    this.#streamOrNull = typeof source === 'number' ? null : source;
    this.#fd = typeof source === 'number' ? source : -1;
    this.#readable = readable;
    this.#writable = writable;
    this.#protocol = options?.protocol ?? 4;
    // A frozen copy: loads() resolves frozen options once, and the caller's later changes do not count.
    this.#loadOptions = options?.loadOptions === undefined ? undefined : Object.freeze({ ...options.loadOptions });
    this.#largeFrames = options?.largeFrames ?? false;
    this.#maxMessageSize = options?.maxMessageSize === undefined ? Number.MAX_SAFE_INTEGER : checkSize(options.maxMessageSize, 'options.maxMessageSize');
    this.#receiveLimit = this.#maxMessageSize;
    if (!Number.isInteger(this.#protocol) || this.#protocol < 0 || this.#protocol > 5) throw new RangeError('options.protocol must be 0 to 5');
    if (this.#streamOrNull !== null) this.#attach(this.#streamOrNull);
  }

  /** @internal the stream if it was opened, else null. */
  get [kOpenedStream](): Duplex | null {
    return this.#streamOrNull;
  }

  /** @internal */
  set [kHoldsProcess](value: boolean) {
    this.#holdsProcess = value;
    this.#refresh();
  }

  /** @internal a receive limit for the next `frames` frames; null lifts it. */
  set [kReceiveLimit](value: { size: number; frames: number } | null) {
    this.#receiveLimit = value === null ? this.#maxMessageSize : Math.min(value.size, this.#maxMessageSize);
    this.#limitedFrames = value === null ? 0 : value.frames;
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
      // A net.Socket reads into the process's shared buffer (see shared-read.ts); other streams emit chunks.
      this.#shared = readIntoSharedBuffer(stream, (bytes) => {
        // Someone tapping `conn.stream` still sees what arrives, as with a chunk-emitting stream.
        if (stream.listenerCount('data') > 0) stream.emit('data', Buffer.from(bytes));
        this.#onData(bytes);
        return true;
      });
      if (!this.#shared) stream.on('data', (chunk: Uint8Array) => this.#onData(chunk));
      stream.on('end', () => this.#finish(null));
      // A socket handed over paused (a Listener's pauseOnConnect), or without a 'data' listener, starts reading now.
      if (stream.readableFlowing !== true) stream.resume();
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

  /** The receive limit in bytes (`options.maxMessageSize`). */
  get maxMessageSize(): number {
    return this.#maxMessageSize;
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

  /**
   * Pickles `obj` (protocol 4 unless configured) and sends it as one frame.
   * Large `bytes`-like values inside `obj` (1 MiB or more) are written from
   * the caller's own arrays, not copied: do not change them until the
   * returned promise settles.
   */
  async send(obj: unknown): Promise<void> {
    this.#checkWritable();
    return this.#write(this.#frameOf(obj));
  }

  /** @internal see {@link kBatch}. */
  [kBatch](obj: unknown, isFrame = false, length = -1): void {
    this.#checkWritable();
    let frame: Uint8Array;
    if (isFrame) {
      frame = obj as Uint8Array;
      // The first `length` bytes of a scratch buffer, copied here without a view.
      if (length >= 0 && length <= 256) {
        this.#batchAppendBytes(frame, length);
        return;
      }
      if (length >= 0) frame = frame.subarray(0, length);
    } else {
      const pickler = this.#pickler?.busy === false ? this.#pickler : (this.#pickler = new Pickler({ protocol: this.#protocol }));
      frame = pickler.dump(obj, HEADER_SIZE);
      const n = frame.length - HEADER_SIZE;
      if (n > MAX_SHORT_PAYLOAD) {
        // Beyond a short header: the general path (it knows large frames), behind the batch.
        this.#flushBatch();
        void this.#write(this.#frameOf(obj)).catch(noop);
        return;
      }
      writeHeader(frame, 0, n);
    }
    if (frame.length > BATCH_FRAME_MAX) {
      this.#flushBatch();
      // The pickler's view is reused by its next dump: a frame the kernel does not take at once is copied.
      const rest = this.#writeDirect(this.#stream, frame);
      if (rest !== null) void this.#write([isFrame ? rest : rest.slice()]).catch(noop);
      return;
    }
    const buf = this.#batchRoom(frame.length);
    const len = this.#batchLen;
    buf.set(frame, len);
    this.#batchLen = len + frame.length;
    if (len === 0) process.nextTick(this.#flushLater);
  }

  #batchAppendBytes(bytes: Uint8Array, n: number): void {
    const buf = this.#batchRoom(n);
    const len = this.#batchLen;
    for (let k = 0; k < n; k++) buf[len + k] = bytes[k]!;
    this.#batchLen = len + n;
    if (len === 0) process.nextTick(this.#flushLater);
  }

  /** The batch buffer, with room for `n` more bytes. */
  #batchRoom(n: number): Uint8Array {
    const buf = this.#batchBuf;
    const len = this.#batchLen;
    if (buf !== null && buf.length - len >= n) return buf;
    const next = new Uint8Array(Math.max(4096, 2 * (len + n)));
    if (buf !== null) next.set(buf.subarray(0, len));
    return (this.#batchBuf = next);
  }

  /** @internal see {@link kFlushBatch}. */
  [kFlushBatch](): void {
    this.#flushBatch();
  }

  readonly #flushLater = (): void => this.#flushBatch();

  /** Writes the batched frames: one write(2) when the stream has nothing queued; what the kernel leaves goes through the stream, copied. */
  #flushBatch(): void {
    const len = this.#batchLen;
    if (len === 0) return;
    this.#batchLen = 0;
    const buf = this.#batchBuf!;
    if (buf.length > BATCH_KEEP) this.#batchBuf = null;
    if (this.#closed) return;
    const stream = this.#stream;
    // The usual case, the whole batch taken by one write(2), makes no view of the buffer.
    const taken = this.#writeDirectBytes(stream, buf, len);
    if (taken === len) return;
    const rest = buf.subarray(taken, len);
    // The batch buffer is reused: the stream gets a copy (it reports a failure through 'error').
    this.#pendingWrites++;
    this.#refresh();
    stream.write(this.#batchBuf === buf ? rest.slice() : rest, () => {
      this.#pendingWrites--;
      this.#refresh();
    });
  }

  /** @internal see {@link kSendNow}. */
  [kSendNow](obj: unknown): Promise<void> | null {
    this.#checkWritable();
    if (this.#batchLen > 0) this.#flushBatch();
    const parts = this.#frameOf(obj);
    if (parts.length > 1) return this.#write(parts);
    const stream = this.#stream;
    const rest = this.#writeDirect(stream, parts[0]!);
    if (rest === null || stream.write(rest)) return null;
    if (stream.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        stream.off('drain', done);
        stream.off('close', done);
        resolve();
      };
      stream.on('drain', done);
      stream.on('close', done);
    });
  }

  /** The frame of a pickle: 4 header bytes (or 12), then the pickle, written by a pickler that keeps its memory. */
  #frameOf(obj: unknown): Uint8Array[] {
    const pickler = this.#pickler?.busy === false ? this.#pickler : (this.#pickler = new Pickler({ protocol: this.#protocol }));
    const parts = pickler.dumpSegments(obj, HEADER_SIZE);
    let n = -HEADER_SIZE;
    for (const p of parts) n += p.length;
    if (n > MAX_SHORT_PAYLOAD) {
      if (!this.#largeFrames) this.#tooLarge(n);
      parts[0] = parts[0]!.subarray(HEADER_SIZE);
      parts.unshift(longHeader(n));
      return parts;
    }
    writeHeader(parts[0]!, 0, n);
    return parts;
  }

  /**
   * Sends bytes as one frame: all of `buf`, or `size` bytes from `offset`
   * (both in bytes, as billiard's `send_bytes(buf, offset, size)`). Any typed
   * array or DataView is sent as its bytes.
   */
  async sendBytes(buf: ArrayBufferView | ArrayBuffer, options?: SendBytesOptions): Promise<void> {
    checkOptionNames(options, SEND_BYTES_OPTIONS, 'Connection.sendBytes()');
    this.#checkWritable();
    const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    const offset = options?.offset ?? 0;
    if (!Number.isInteger(offset) || offset < 0) throw new RangeError('offset is negative');
    if (bytes.length < offset) throw new RangeError('buffer length < offset');
    let size = options?.size;
    if (size === undefined || size === null) size = bytes.length - offset;
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

  /**
   * Writes bytes that are already one or more whole frames (headers
   * included), as they are. For a protocol that frames its messages once
   * (the pool's jobs). @internal
   */
  sendFrame(frames: Uint8Array): Promise<void> {
    this.#checkWritable();
    return this.#write([frames]);
  }

  #writeLarge(payload: Uint8Array): Promise<void> {
    if (!this.#largeFrames) this.#tooLarge(payload.length);
    return this.#write([longHeader(payload.length), payload]);
  }

  #tooLarge(n: number): never {
    throw new OSError(`a message of ${n} bytes is over 2**31-1, which billiard cannot read (set largeFrames for a CPython 3.8+ peer)`, {
      code: 'MESSAGE_TOO_LARGE',
    });
  }

  /**
   * Writes a frame in one piece straight to the descriptor when nothing is
   * queued on the stream and it is not corked: one write(2), without the stream's machinery (a
   * third of the cost of a small send). Returns what is left to write
   * through the stream, behind nothing: null when the kernel took it all,
   * the frame itself when it took none (the socket is full, or the write
   * failed: the stream's own write then reports the error as before).
   */
  #writeDirect(stream: Duplex, frame: Uint8Array): Uint8Array | null {
    const n = this.#writeDirectBytes(stream, frame, frame.length);
    return n === frame.length ? null : n === 0 ? frame : frame.subarray(n);
  }

  /** #writeDirect of `bytes[0, length)`: how many bytes the kernel took (0 when the stream must write them). */
  #writeDirectBytes(stream: Duplex, bytes: Uint8Array, length: number): number {
    // A corked stream is gathering frames into one write on purpose: join them.
    if (this.#pendingWrites !== 0 || stream.writableLength !== 0 || stream.writableCorked !== 0 || !stream.writable) return 0;
    const fd = fdOf(stream);
    if (fd < 0) return 0;
    try {
      return writeSync(fd, bytes, 0, length);
    } catch {
      return 0;
    }
  }

  #write(parts: Uint8Array[]): Promise<void> {
    if (this.#batchLen > 0) this.#flushBatch();
    const stream = this.#stream;
    if (parts.length === 1) {
      const rest = this.#writeDirect(stream, parts[0]!);
      if (rest === null) return Promise.resolve();
      parts = [rest];
    }
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
   * The type parameter only casts: the value is whatever the peer sent.
   */
  async recv<T = unknown>(options?: ReadOptions): Promise<T> {
    checkOptionNames(options, READ_OPTIONS, 'Connection.recv()');
    const frame = await this.#nextFrame(Number.MAX_SAFE_INTEGER, options?.signal);
    try {
      return loads(frame, this.#loadOptionsFor(frame)) as T;
    } catch (e) {
      if (e instanceof EOFError) {
        throw new UnpicklingError(frame.length === 0 ? 'received an empty message where a pickle was expected' : 'pickle data was truncated', { code: 'TRUNCATED', cause: e });
      }
      throw e;
    }
  }

  /**
   * A large frame the reader assembled is a buffer nobody else holds: its
   * large `bytes` values can be views of it rather than copies (one copy of
   * the message in memory instead of two), unless `loadOptions.zeroCopy`
   * says otherwise.
   */
  #loadOptionsFor(frame: Uint8Array): UnpicklerOptions | undefined {
    // Values that are views of the frame must not be views of the shared read buffer.
    if (isShared(frame)) return this.#loadOptions?.zeroCopy === undefined ? this.#loadOptions : (this.#copyingOptions ??= Object.freeze({ ...this.#loadOptions, zeroCopy: false }));
    if (frame.length < ASSEMBLE_THRESHOLD || frame.byteOffset !== 0 || frame.byteLength !== frame.buffer.byteLength) return this.#loadOptions;
    if (this.#loadOptions?.zeroCopy !== undefined) return this.#loadOptions;
    return (this.#assembledOptions ??= Object.freeze({ ...this.#loadOptions, zeroCopy: ASSEMBLE_THRESHOLD }));
  }

  /**
   * Receives one frame's bytes. A frame longer than `maxlength` is refused
   * with OSError `BAD_MESSAGE_LENGTH`; then, as in CPython, a duplex end stops
   * reading and a read-only end is closed.
   */
  async recvBytes(maxlength?: number | null, options?: ReadOptions): Promise<Uint8Array> {
    checkOptionNames(options, READ_OPTIONS, 'Connection.recvBytes()');
    if (maxlength !== undefined && maxlength !== null && (typeof maxlength !== 'number' || maxlength < 0)) throw new RangeError('negative maxlength');
    const frame = await this.#nextFrame(maxlength ?? Number.MAX_SAFE_INTEGER, options?.signal);
    // A frame the reader assembled (or copied out of the shared read buffer) is already a buffer of its own; a view into a received chunk is copied.
    if (frame.length > 0 && !isShared(frame) && Object.getPrototypeOf(frame) === Uint8Array.prototype && frame.byteOffset === 0 && frame.byteLength === frame.buffer.byteLength) return frame;
    return new Uint8Array(frame);
  }

  /**
   * Receives one frame's bytes without copying them out of the chunk they
   * arrived in: a view to read at once (unpickle it, say), not to keep. @internal
   */
  recvFrame(): Promise<Uint8Array> {
    return this.#nextFrame(Number.MAX_SAFE_INTEGER, undefined);
  }

  /**
   * Hands every frame to `onFrame` as it arrives, synchronously inside the
   * read that completed it, until the stream fails: one call per frame
   * instead of a promise, a microtask and an async resumption per
   * `recvFrame()`. The frame is a view as recvFrame's is, to consume before
   * `onFrame` returns. The promise rejects with what the next `recvFrame()`
   * would have raised (EOFError at the end of the stream; OSError when the
   * handle is closed). If `onFrame` throws, reading stops for good and the
   * promise rejects with the error wrapped as an OSError. @internal
   */
  consumeFrames(onFrame: (frame: Uint8Array) => void): Promise<never> {
    return new Promise<never>((_resolve, reject) => {
      this.#checkReadable();
      void this.#stream; // a descriptor starts reading on first use
      if (this.#waiters.length === 0) {
        while (this.#frames.length > 0) {
          const frame = this.#frames.shift()!;
          this.#framesCost -= frame.length + FRAME_COST;
          try {
            onFrame(frame);
          } catch (e) {
            // As for a frame that arrives later: reading stops for good, and the error is the stream's.
            this.#frames.length = 0;
            this.#framesCost = 0;
            this.#finish(e as Error);
            this.#stopReading();
            return reject(this.#endError!);
          }
          if (this.#closed) return reject(new OSError('handle is closed', { code: 'HANDLE_CLOSED' }));
        }
        this.#resumeIfDrained();
        const err = this.#pendingFailure(Number.MAX_SAFE_INTEGER);
        if (err) return reject(err);
      }
      this.#waiters.push({ maxlength: Number.MAX_SAFE_INTEGER, resolve: onFrame, reject, persistent: true });
      this.#resume();
      this.#refresh();
    });
  }

  /**
   * Receives one whole frame into `buf` at byte `offset`; returns its length.
   * A frame that does not fit raises {@link BufferTooShort} holding it (the
   * frame is consumed, the connection stays in step).
   */
  async recvBytesInto(buf: ArrayBufferView, offset = 0, options?: ReadOptions): Promise<number> {
    checkOptionNames(options, READ_OPTIONS, 'Connection.recvBytesInto()');
    const target = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    if (offset < 0) throw new RangeError('negative offset');
    if (offset > target.length) throw new RangeError('offset too large');
    const frame = await this.#nextFrame(Number.MAX_SAFE_INTEGER, options?.signal);
    if (offset + frame.length > target.length) throw new BufferTooShort(new Uint8Array(frame));
    target.set(frame, offset);
    return frame.length;
  }

  /**
   * Whether there is something to read: buffered data, or the end of the
   * stream (then the next `recv` raises EOFError). `timeout` is in seconds:
   * 0 (the default) checks and returns at once, null or Infinity waits for
   * ever. An aborted `signal` rejects with its reason.
   */
  async poll(timeout: number | null = 0, options?: ReadOptions): Promise<boolean> {
    checkOptionNames(options, READ_OPTIONS, 'Connection.poll()');
    this.#checkReadable();
    const seconds = timeoutSeconds(timeout);
    const signal = options?.signal;
    signal?.throwIfAborted();
    if (this.#isReady()) return true;
    if (seconds === 0) return false;
    return new Promise<boolean>((resolve, reject) => {
      const finish = (): void => {
        timer.cancel();
        this[kOnReadable].delete(listener);
        signal?.removeEventListener('abort', onAbort);
      };
      const listener = (): void => {
        finish();
        resolve(true);
      };
      const onAbort = (): void => {
        finish();
        reject(signal!.reason);
      };
      const timer = new Timer(seconds, () => {
        finish();
        resolve(this.#isReady());
      });
      this[kOnReadable].add(listener);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** @internal readiness as `poll` and `wait` see it. */
  [kIsReady](): boolean {
    return this.#isReady();
  }

  #isReady(): boolean {
    if (this.#closed) return true;
    if (this.#readable && this.#streamOrNull === null) void this.#stream; // start reading
    return this.#frames.length > 0 || this.#reader.partial || this.#ended;
  }

  /** Receives messages until the peer hangs up (EOFError ends the loop; other errors are thrown). */
  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    for (;;) {
      let value: unknown;
      try {
        value = await this.recv();
      } catch (e) {
        if (e instanceof EOFError && e.code === 'EOF') return;
        throw e;
      }
      yield value;
    }
  }

  /**
   * The next frame. It may be a view of the shared read buffer (see
   * shared-read.ts): the caller must consume or copy it synchronously when
   * the promise resolves, before anything else awaits.
   */
  #nextFrame(maxlength: number, signal: AbortSignal | undefined): Promise<Uint8Array> {
    this.#checkReadable();
    if (signal?.aborted) return Promise.reject(signal.reason);
    void this.#stream; // a descriptor starts reading on first use
    if (this.#waiters.length === 0 && this.#frames.length > 0) {
      const frame = this.#frames[0]!;
      if (frame.length > maxlength) return Promise.reject(this.#refuse(frame.length, maxlength));
      this.#frames.shift();
      this.#framesCost -= frame.length + FRAME_COST;
      this.#resumeIfDrained();
      return Promise.resolve(frame);
    }
    if (this.#waiters.length === 0 && this.#frames.length === 0) {
      const err = this.#pendingFailure(maxlength);
      if (err) return Promise.reject(err);
    }
    return new Promise<Uint8Array>((resolve, reject) => {
      const waiter: Waiter = { maxlength, resolve, reject };
      if (signal !== undefined) {
        const onAbort = (): void => {
          const i = this.#waiters.indexOf(waiter);
          if (i < 0) return;
          this.#waiters.splice(i, 1);
          this.#refresh();
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.resolve = (f) => {
          signal.removeEventListener('abort', onAbort);
          resolve(f);
        };
        waiter.reject = (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        };
      }
      this.#waiters.push(waiter);
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
    if (this.#ended) return;
    this.#reader.push(chunk);
    try {
      this.#takeFrames();
    } catch (e) {
      // Reading stops for good: nothing more from this peer is kept.
      this.#finish(e as Error);
      this.#stopReading();
      return;
    } finally {
      if (this.#shared) this.#reader.release();
    }
    if (this.#framesCost + this.#reader.buffered > READ_HIGH_WATER && this.#waiters.length === 0) this.#pause();
    this.#notify();
  }

  /** Hands out the frames the reader has complete; throws on a protocol error. */
  #takeFrames(): void {
    for (;;) {
      const n = this.#reader.peekLength();
      if (n < 0) break;
      const limit = this.#limitedFrames > 0 ? this.#receiveLimit : this.#maxMessageSize;
      if (n > limit) {
        const which = limit === this.#maxMessageSize ? `maxMessageSize ${limit}` : `limit ${limit} while authenticating`;
        throw new OSError(`bad message length: ${n} bytes (${which})`, { code: 'BAD_MESSAGE_LENGTH' });
      }
      const w = this.#waiters[0];
      if (w !== undefined && n > w.maxlength) {
        this.#waiters.shift();
        w.reject(this.#refuse(n, w.maxlength));
        this.#failWaiters();
        return;
      }
      const frame = this.#reader.next();
      if (frame === null) break;
      if (this.#limitedFrames > 0) this.#limitedFrames--;
      this.#deliver(frame);
      // A consumeFrames() handler may have closed this end.
      if (this.#closed) return;
    }
  }

  #deliver(frame: Uint8Array): void {
    const first = this.#waiters[0];
    if (first !== undefined && first.persistent === true) {
      first.resolve(frame);
      return;
    }
    const w = this.#waiters.shift();
    if (w !== undefined) {
      if (this.#waiters.length === 0) this.#refresh();
      w.resolve(frame);
      return;
    }
    // A frame kept for later must not be a view of the shared read buffer.
    if (isShared(frame)) frame = frame.slice();
    this.#frames.push(frame);
    this.#framesCost += frame.length + FRAME_COST;
  }

  /** After a protocol error: no more bytes are read from the peer (the socket's reading side stops). */
  #stopReading(): void {
    const stream = this.#streamOrNull;
    if (stream === null || stream.destroyed) return;
    stream.pause();
    stream.removeAllListeners('data');
  }

  #notify(): void {
    if (this[kOnReadable].size === 0 || !this.#isReady()) return;
    for (const f of [...this[kOnReadable]]) f();
  }

  /**
   * A Python process ends when its main code does, whatever connections are
   * open. So a connection keeps Node's event loop alive only while something
   * waits on it (a recv, a poll, a wait) or one of its writes is under way;
   * an idle one does not hold the process open.
   */
  #refresh(): void {
    const stream = this.#streamOrNull as (Duplex & { ref?: () => void; unref?: () => void }) | null;
    if (stream === null || stream.destroyed || typeof stream.unref !== 'function') return;
    const busy = this.#holdsProcess && (this.#waiters.length > 0 || this[kOnReadable].size > 0 || this.#pendingWrites > 0);
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
    if (this.#paused && this.#framesCost + this.#reader.buffered <= READ_HIGH_WATER / 2) this.#resume();
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
    this.#frames.length = 0;
    this.#framesCost = 0;
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
