/**
 * billiard's queues (spec/api.md §5): `Queue`, `JoinableQueue` and
 * `SimpleQueue`, on an OS pipe shared by every process that holds the
 * queue, with billiard's framing (4-byte big-endian length, then the
 * pickle), its read and write locks and its bounding semaphore, so Node
 * and Python processes put and get on the same queue.
 *
 * The pipe stays blocking, as Python expects (a Python process holds the
 * same open file, whose flags it would see): reads and writes that could
 * block run on billiard-ts's own threads (src/native), and those that
 * certainly cannot run at once. A `put` pickles at once (errors reach the
 * caller) and leaves the frame to the feeder, the counterpart of Python's
 * feeder thread: it writes every frame waiting, in order, under one hold of
 * the write lock, and keeps the process alive until they are written.
 */

import { Connection } from '../connection/connection.js';
import { EOFError, OSError } from '../connection/errors.js';
import { timeoutSeconds } from '../connection/timers.js';
import { NativeError, pipe, readable, readFrame, takeFrame, writeBytes, writeBytesNow } from '../native/index.js';
import { BilliardError } from '../pickle/errors.js';
import { dumps, loads } from '../pickle/index.js';
import { checkLoadLimits, type LoadLimits, type UnpicklerOptions } from '../pickle/unpickler.js';
import { AssertionError, ValueError } from '../process/errors.js';
import { addExitHook } from '../process/exit-hooks.js';
import { BoundedSemaphore, Condition, isRebuilding, Lock, SEM_VALUE_MAX, Semaphore, SPIN_MS } from '../synchronize/index.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

/** Python's `queue.Empty` (pickled as `_queue.Empty`): nothing to get in time. */
export class Empty extends BilliardError {
  static override readonly brand: string = '_queue.Empty';
  constructor(message = '') {
    super(message, { code: 'EMPTY' });
  }
}

/** Python's `queue.Full`: no free slot in time. */
export class Full extends BilliardError {
  static override readonly brand: string = 'queue.Full';
  constructor(message = '') {
    super(message, { code: 'FULL' });
  }
}

/** Options of `put`. */
export interface PutOptions {
  /** false: fail at once with Full when no slot is free. Default true. */
  block?: boolean;
  /** Seconds to wait for a slot (null: for ever); only when `block`. */
  timeout?: number | null;
  signal?: AbortSignal;
}

/** Options of `get`. */
export interface GetOptions {
  /** false: fail at once with Empty when nothing is there. Default true. */
  block?: boolean;
  /** Seconds to wait for an item (null: for ever); only when `block`. */
  timeout?: number | null;
  signal?: AbortSignal;
}

/** Options of the queue constructors. */
export interface QueueOptions {
  /**
   * Seconds a read may wait in the middle of a frame for the rest of it
   * (a writer killed mid-put) before the queue is declared broken with an
   * EOFError. Default 60.
   */
  stallTimeout?: number;
  /**
   * Limits on loading the items this process gets, over the unpickler's
   * defaults (see {@link LoadLimits}). They stay with this process's
   * queue object: a queue passed to a child process travels as billiard's
   * does (its pipe and locks), and the child loads with the defaults.
   */
  loadLimits?: LoadLimits | null;
}

const QUEUE_OPTIONS = optionNames<QueueOptions>()({ stallTimeout: 1, loadLimits: 1 });
const PUT_OPTIONS = optionNames<PutOptions>()({ block: 1, timeout: 1, signal: 1 });
const GET_OPTIONS = optionNames<GetOptions>()({ block: 1, timeout: 1, signal: 1 });

const HEADER = 4;
const BATCH_BYTES = 1 << 20;
/** A put that leaves this much waiting writes it in its own turn, when the pipe has room. */
const EARLY_BYTES = 16 * 1024;
/** Frames up to this long are copied, with their headers, into one buffer for the write. */
const PACK_BELOW = 8 * 1024;

/**
 * Where the feeder packs headers and small frames for one write (each write
 * takes what it is given before it returns: the addon writes or copies it).
 */
let pack = new Uint8Array(64 * 1024);
let packView = new DataView(pack.buffer);

function packRoom(n: number): void {
  if (n <= pack.length) return;
  const bigger = new Uint8Array(Math.max(n, pack.length * 2));
  bigger.set(pack);
  pack = bigger;
  packView = new DataView(pack.buffer);
}
/** The frame limit billiard can send (a 4-byte signed length). */
const MAX_FRAME = 0x7fffffff;
/** Writes to a pipe of this many bytes or less are atomic (Linux PIPE_BUF). */
const PIPE_BUF = 4096;

function header(n: number): Uint8Array {
  const h = new Uint8Array(HEADER);
  new DataView(h.buffer).setInt32(0, n);
  return h;
}

/**
 * Where frames readable at once are read, and unpickled in place (unpickling
 * copies what it keeps); one thread, and no await between the read and the
 * unpickling, so one scratch buffer serves every queue of the process.
 */
const scratch = new Uint8Array(64 * 1024);

/**
 * Gets taken without waiting in a row before one yields to the event loop,
 * so that draining a full queue does not hold up timers and I/O for ever.
 */
const YIELD_EVERY = 256;
let takenInARow = 0;

/** Reads one frame under the caller's read lock; null when `timeout` passed first. */
async function readOne(fd: number, timeout: number | null, stall: number): Promise<Uint8Array | null> {
  try {
    const r = readFrame(fd, timeout ?? -1, stall, MAX_FRAME);
    return r instanceof Promise ? await r : r;
  } catch (e) {
    throw frameError(e);
  }
}

/**
 * The frame readable now, without a thread: its length in `scratch`, its
 * bytes, null when none has begun, or a Promise for the rest of one begun.
 */
function takeOne(fd: number, stall: number): number | Uint8Array | null | Promise<Uint8Array | null> {
  try {
    const r = takeFrame(fd, scratch, MAX_FRAME, stall);
    return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(frameError(e))) : r;
  } catch (e) {
    throw frameError(e);
  }
}

function frameError(e: unknown): Error {
  if (!(e instanceof NativeError)) return e as Error;
  switch (e.code) {
    case 'EPIPE':
      return new EOFError('every writer of the queue is gone', { code: 'EOF' });
    case 'EBADMSG':
      return new EOFError('a writer went away in the middle of a frame', { code: 'TORN_FRAME', cause: e });
    case 'ETIMEDOUT':
      return new EOFError('a frame stopped arriving midway (a writer died while writing it?)', { code: 'TORN_FRAME', cause: e });
    case 'EPROTO':
      return new OSError('bad message length', { code: 'BAD_MESSAGE_LENGTH', cause: e });
    case 'EBADF':
      return new OSError('handle is closed', { code: 'HANDLE_CLOSED', cause: e });
    default:
      return e;
  }
}

/** The state every queue has: the pipe's ends and their locks. */
abstract class PipeQueue {
  /** @internal */ reader!: Connection;
  /** @internal */ writer!: Connection;
  /** @internal */ rlock!: Lock;
  /** @internal */ wlock!: Lock;
  /** @internal */ stall = 60;
  /** What items are loaded with (QueueOptions.loadLimits); undefined: the defaults. @internal */
  loadOptions: UnpicklerOptions | undefined = undefined;
  /** A torn frame broke the pipe's framing: every get fails with it. @internal */
  broken: Error | null = null;

  /** @internal */
  makePipe(options?: QueueOptions): void {
    checkOptionNames(options, QUEUE_OPTIONS, `new ${this.constructor.name}()`);
    this.loadOptions = checkLoadLimits(options?.loadLimits, 'options.loadLimits');
    const [r, w] = pipe();
    this.reader = Connection.fromFd(r, { readable: true, writable: false });
    this.writer = Connection.fromFd(w, { readable: false, writable: true });
    this.rlock = new Lock();
    this.wlock = new Lock();
    if (options?.stallTimeout !== undefined) this.stall = timeoutSeconds(options.stallTimeout, 'stallTimeout') ?? -1;
  }

  /** @internal */
  readerFd(): number {
    if (this.reader.closed) throw new OSError('handle is closed', { code: 'HANDLE_CLOSED' });
    return this.reader.fileno();
  }

  /** Reads a frame holding the read lock; null when nothing came in time. @internal */
  async readLocked(timeout: number | null): Promise<Uint8Array | null> {
    if (this.broken !== null) throw this.broken;
    try {
      return await readOne(this.readerFd(), timeout, this.stall);
    } catch (e) {
      throw this.#broke(e);
    }
  }

  /**
   * Holding the read lock, takes the frame readable now without a thread:
   * its length in `scratch` (unpickle it before anything else reads), its
   * bytes, null when no frame has begun to arrive (nothing was read: the
   * caller waits with readLocked), or a Promise for the rest of a frame
   * that is there only in part. @internal
   */
  takeLocked(): number | Uint8Array | null | Promise<Uint8Array | null> {
    if (this.broken !== null) throw this.broken;
    let r;
    try {
      r = takeOne(this.readerFd(), this.stall);
    } catch (e) {
      throw this.#broke(e);
    }
    return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(this.#broke(e))) : r;
  }

  /** A torn frame breaks the pipe's framing for good: later reads fail with it too. */
  #broke(e: unknown): unknown {
    if (e instanceof EOFError && e.code === 'TORN_FRAME') this.broken = e;
    return e;
  }

  /** Writes frames holding the write lock. @internal */
  async writeLocked(chunks: Uint8Array[]): Promise<void> {
    const fd = this.writer.fileno();
    try {
      const r = writeBytes(fd, chunks);
      if (r !== true) await r;
    } catch (e) {
      throw e instanceof NativeError && e.code === 'EPIPE' ? new OSError('broken pipe', { code: 'BROKEN_PIPE', cause: e }) : e;
    }
  }

  /** True when nothing is readable on the pipe now (racy, as in Python). */
  empty(): boolean {
    return readable(this.readerFd()) === 0;
  }
}

/**
 * A multi-producer, multi-consumer FIFO shared by processes: billiard's
 * `Queue(maxsize)`. `maxsize <= 0` means SEM_VALUE_MAX slots.
 */
export class Queue extends PipeQueue {
  /** @internal */ maxsize!: number;
  /** @internal */ sem!: BoundedSemaphore;
  /** @internal */ opid!: number;
  /** @internal */ ignoreEpipe = false;
  /** Frames put and not yet written: from #head on. */
  #buffer: (Uint8Array | undefined)[] = [];
  #head = 0;
  /** Their bytes, headers included. */
  #waiting = 0;
  /** #waiting at which a put next tries to write early. */
  #earlyAt = EARLY_BYTES;
  #feeding: Promise<void> | null = null;
  #closed = false;
  #joinCancelled = false;
  #feedError: unknown = null;

  constructor(maxsize = 0, options?: QueueOptions) {
    super();
    if (isRebuilding()) return;
    if (typeof maxsize !== 'number' || Number.isNaN(maxsize)) throw new TypeError('maxsize must be a number');
    this.maxsize = maxsize <= 0 ? SEM_VALUE_MAX : Math.floor(maxsize);
    this.makePipe(options);
    this.sem = new BoundedSemaphore(this.maxsize);
    this.opid = process.pid;
  }

  /**
   * Puts `obj` on the queue: waits for a free slot (Full when none came in
   * time, or at once with `block: false`), pickles it, and leaves the
   * writing to the feeder. After close(): AssertionError, as billiard.
   */
  async put(obj: unknown, options?: PutOptions): Promise<void> {
    checkOptionNames(options, PUT_OPTIONS, 'Queue.put()');
    if (this.#closed) throw new AssertionError('the queue is closed');
    const frame = dumps(obj);
    if (!(await this.sem.acquire({ block: options?.block, timeout: options?.timeout, signal: options?.signal }))) throw new Full();
    this.enqueue(frame);
  }

  /** `put(obj, { block: false })`, answered at once: Full when no slot is free. */
  putNowait(obj: unknown): void {
    if (this.#closed) throw new AssertionError('the queue is closed');
    const frame = dumps(obj);
    if (!this.sem.acquireSync({ block: false })) throw new Full();
    this.enqueue(frame);
  }

  /** @internal */
  enqueue(frame: Uint8Array): void {
    if (frame.length > MAX_FRAME) throw new ValueError('the item pickles to more than 2 GiB, more than billiard can read');
    this.#buffer.push(frame);
    this.#waiting += HEADER + frame.length;
    if (this.#feeding === null) {
      this.#feeding = this.#feed();
      feeding.add(this);
    } else if (this.#waiting >= this.#earlyAt) {
      this.#writeEarly();
    }
  }

  /**
   * Writes what waits now, in the put's turn, when the write lock is free
   * and it fits in the pipe: a consumer starts on a long burst of puts
   * before the burst ends. Otherwise the feeder will.
   */
  #writeEarly(): void {
    // Not again before another EARLY_BYTES wait, whether this one writes or not.
    this.#earlyAt = this.#waiting + EARLY_BYTES;
    if (this.writer.closed || !this.wlock.acquireSync({ block: false })) return;
    try {
      const batch = this.#batch(2 * EARLY_BYTES);
      if (writeBytesNow(this.writer.fileno(), batch.chunks)) {
        this.#advance(batch.count, batch.bytes);
        this.#earlyAt = this.#waiting + EARLY_BYTES;
      }
    } catch {
      // The feeder meets the same error and reports it.
    } finally {
      this.wlock.release();
    }
  }

  /**
   * The frames waiting from #head on, up to `max` bytes (at least one), as
   * chunks for one write: headers and small frames packed together, large
   * frames as they are.
   */
  #batch(max: number): { chunks: Uint8Array[]; count: number; bytes: number } {
    const buffer = this.#buffer;
    const chunks: Uint8Array[] = [];
    let at = 0;
    let from = 0;
    let bytes = 0;
    let i = this.#head;
    while (i < buffer.length && (bytes === 0 || bytes < max)) {
      const f = buffer[i++]!;
      packRoom(at + HEADER + (f.length < PACK_BELOW ? f.length : 0));
      packView.setInt32(at, f.length);
      at += HEADER;
      if (f.length < PACK_BELOW) {
        pack.set(f, at);
        at += f.length;
      } else {
        chunks.push(pack.subarray(from, at), f);
        from = at;
      }
      bytes += HEADER + f.length;
    }
    if (at > from) chunks.push(pack.subarray(from, at));
    return { chunks, count: i - this.#head, bytes };
  }

  /** Forgets `count` frames written (or handed to a thread that writes them). */
  #advance(count: number, bytes: number): void {
    const buffer = this.#buffer;
    for (let i = this.#head; i < this.#head + count; i++) buffer[i] = undefined;
    this.#head += count;
    this.#waiting -= bytes;
    if (this.#head === buffer.length) {
      buffer.length = 0;
      this.#head = 0;
      this.#earlyAt = EARLY_BYTES;
    } else if (this.#head >= 4096 && this.#head * 2 >= buffer.length) {
      this.#buffer = buffer.slice(this.#head);
      this.#head = 0;
    }
  }

  /** What the feeder still has to write, awaited (unless cancelJoinThread()). @internal */
  flushed(): Promise<void> {
    return this.#joinCancelled || this.#feeding === null ? Promise.resolve() : this.#feeding;
  }

  /** The feeder: writes what is buffered, in order, a batch per hold of the write lock. */
  async #feed(): Promise<void> {
    // Let the current turn's puts join the first batch.
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      while (this.#head < this.#buffer.length) {
        await this.wlock.acquire();
        try {
          const batch = this.#batch(BATCH_BYTES);
          // Written, or copied for a thread that writes it, before this returns.
          const written = this.writeLocked(batch.chunks);
          this.#advance(batch.count, batch.bytes);
          await written;
        } finally {
          this.wlock.release();
        }
      }
    } catch (e) {
      this.#feedError = e;
      if (!(this.ignoreEpipe && e instanceof OSError && e.code === 'BROKEN_PIPE')) {
        process.emitWarning(`error in queue feeder: ${(e as Error)?.message ?? String(e)}`, { code: 'BILLIARD_TS_QUEUE_FEEDER' });
      }
      this.#buffer = [];
      this.#head = 0;
      this.#waiting = 0;
    } finally {
      this.#feeding = null;
      feeding.delete(this);
      if (this.#closed && !this.writer.closed) this.writer.close();
    }
  }

  /**
   * Takes the next item: waits for one (Empty when none came in time, or at
   * once with `block: false`). The read runs off the event loop.
   */
  async get(options?: GetOptions): Promise<unknown> {
    checkOptionNames(options, GET_OPTIONS, 'Queue.get()');
    const block = options?.block !== false;
    const timeout = block ? timeoutSeconds(options?.timeout) : 0;
    const deadline = timeout === null ? null : performance.now() + timeout * 1000;
    this.readerFd();
    options?.signal?.throwIfAborted();
    if (++takenInARow > YIELD_EVERY) {
      takenInARow = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // Free and a whole frame there: no wait, no thread, no allocation.
    if (!this.rlock.acquireSync({ block: false }) && !(await this.rlock.acquire({ block, timeout, signal: options?.signal }))) throw new Empty();
    let bytes: Uint8Array | null;
    try {
      let now = this.takeLocked();
      // A producer on another CPU is usually a few microseconds away: watch
      // the pipe that long before parking the read on a thread (which costs
      // a thread hand-off and an event-loop wake-up).
      if (now === null && block && timeout !== 0 && SPIN_MS > 0) {
        const end = performance.now() + SPIN_MS;
        do now = this.takeLocked();
        while (now === null && performance.now() < end);
      }
      if (typeof now === 'number') {
        bytes = scratch.subarray(0, now);
      } else if (now === null) {
        takenInARow = 0;
        const left = deadline === null ? null : Math.max(0, (deadline - performance.now()) / 1000);
        bytes = await this.readLocked(left);
        if (bytes === null) throw new Empty();
      } else if (now instanceof Promise) {
        takenInARow = 0;
        bytes = (await now)!;
      } else {
        bytes = now;
      }
      this.sem.release();
    } finally {
      this.rlock.release();
    }
    // No await since the read: `scratch` still holds this frame.
    return loads(bytes, this.loadOptions);
  }

  /** `get({ block: false })`. */
  getNowait(): Promise<unknown> {
    return this.get({ block: false });
  }

  /** Items put and not yet got, counting those the feeder still holds. */
  qsize(): number {
    return this.maxsize - this.sem.getValue();
  }

  /** True when no slot is free. */
  full(): boolean {
    return this.sem.isZero();
  }

  /**
   * No more puts from this process: the read end closes now, the write end
   * once the feeder has written what it holds.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.reader.close();
    if (this.#feeding === null && !this.writer.closed) this.writer.close();
  }

  /** Resolves once the feeder has written everything (after close(); AssertionError before). */
  async joinThread(): Promise<void> {
    if (!this.#closed) throw new AssertionError('join_thread() before close()');
    if (this.#feeding !== null) await this.#feeding;
  }

  /**
   * Do not wait for the feeder when this child's target returns (Python:
   * may lose data). A main process whose event loop runs dry still waits
   * for a write in progress, and `process.exit()` never waits.
   */
  cancelJoinThread(): void {
    this.#joinCancelled = true;
  }

  /** True after cancelJoinThread(). */
  get joinCancelled(): boolean {
    return this.#joinCancelled;
  }

  /** The last error of the feeder, if one stopped it. */
  get feederError(): unknown {
    return this.#feedError;
  }

  /** Closes the queue's descriptors here (other processes keep theirs). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Queues whose feeder is writing: a child waits for them before it exits. */
const feeding = new Set<Queue>();
addExitHook(async () => {
  for (;;) {
    const pending = [...feeding].filter((q) => !q.joinCancelled);
    if (pending.length === 0) return;
    await Promise.all(pending.map((q) => q.flushed()));
  }
});

/** A Queue whose consumers mark items done (`taskDone`) and whose producers can wait for that (`join`). */
export class JoinableQueue extends Queue {
  /** @internal */ cond!: Condition;
  /** @internal */ unfinishedTasks!: Semaphore;

  constructor(maxsize = 0, options?: QueueOptions) {
    super(maxsize, options);
    if (isRebuilding()) return;
    this.unfinishedTasks = new Semaphore(0);
    this.cond = new Condition();
  }

  override async put(obj: unknown, options?: PutOptions): Promise<void> {
    await super.put(obj, options);
  }

  override enqueue(frame: Uint8Array): void {
    super.enqueue(frame);
    this.unfinishedTasks.release();
  }

  /** Marks one item got from the queue as done (ValueError when more than were put). */
  async taskDone(): Promise<void> {
    await this.cond.withLock(async () => {
      if (!this.unfinishedTasks.acquireSync({ block: false })) throw new ValueError('task_done() called too many times');
      if (this.unfinishedTasks.isZero()) await this.cond.notifyAll();
    });
  }

  /** Resolves once every item put was marked done. */
  async join(): Promise<void> {
    await this.cond.withLock(async () => {
      if (!this.unfinishedTasks.isZero()) await this.cond.wait();
    });
  }
}

/** A locked pipe without feeder or bound: billiard's `SimpleQueue`. Its `empty()` works (billiard's raises). */
export class SimpleQueue extends PipeQueue {
  constructor(options?: QueueOptions) {
    super();
    if (isRebuilding()) return;
    this.makePipe(options);
  }

  /** Pickles `obj` and writes it as one frame, under the write lock. */
  async put(obj: unknown): Promise<void> {
    await this.sendPayload(dumps(obj));
  }

  /** Writes already-pickled bytes as one frame (billiard's `send_payload`). */
  async sendPayload(value: Uint8Array): Promise<void> {
    if (value.length > MAX_FRAME) throw new ValueError('the payload is more than 2 GiB, more than billiard can read');
    await this.wlock.acquire();
    try {
      await this.writeLocked([header(value.length), value]);
    } finally {
      this.wlock.release();
    }
  }

  /**
   * Writes already-pickled bytes as one frame like `sendPayload`, but a frame
   * of PIPE_BUF (4096) bytes or less without the write lock: it leaves in one
   * write(2), which a pipe keeps whole between writers (spec/pool.md §9.1.10).
   * A process killed right after such a write holds no lock that would wedge
   * the other writers. Larger frames take the lock. @internal
   */
  async sendPayloadAtomic(value: Uint8Array): Promise<void> {
    if (value.length + 4 > PIPE_BUF) return this.sendPayload(value);
    await this.writeLocked([header(value.length), value]);
  }

  /** Reads one frame's bytes, under the read lock (billiard's `get_payload`). */
  async getPayload(): Promise<Uint8Array> {
    this.readerFd();
    await this.rlock.acquire();
    try {
      return (await this.readLocked(null))!;
    } finally {
      this.rlock.release();
    }
  }

  /** Reads and unpickles the next item. */
  async get(): Promise<unknown> {
    return loads(await this.getPayload(), this.loadOptions);
  }

  /** Closes both ends here. */
  close(): void {
    this.reader.close();
    this.writer.close();
  }
}
