/**
 * The native layer: POSIX calls Node has no API for, from the addon built
 * out of native/ by node-gyp (`npm run build:native`). This file alone loads
 * the `.node` file; it checks arguments and turns errno values into
 * {@link NativeError}s whose `code` is the errno name.
 */

import { createRequire } from 'node:module';

import { BilliardError } from '../pickle/errors.js';
import { packagePath } from './package.js';

export { FROM_SOURCE, packagePath, packageRoot } from './package.js';

/** Carries Python's OSError identity for NativeError (its own brand stays distinct). */
class PythonOSErrorBrand extends BilliardError {
  static override readonly brand: string = 'builtins.OSError';
}

/**
 * A failed system call: `code` is the errno name (`'EAGAIN'`), `errno` its
 * number. Python reports these as `OSError`, and so does `instanceof OSError`
 * (the connection layer's class) for a NativeError.
 */
export class NativeError extends PythonOSErrorBrand {
  static override readonly brand: string = 'billiard-ts.NativeError';
  readonly errno: number;
  readonly syscall: string;
  constructor(message: string, code: string, errno: number, syscall: string) {
    super(message, { code });
    this.errno = errno;
    this.syscall = syscall;
  }
}

interface Binding {
  socketpair(): [number, number];
  pipe(): [number, number];
  unixListen(path: Uint8Array, backlog: number): number;
  unixConnect(path: Uint8Array): { fd: number; inProgress: boolean };
  setParentDeathSignal(signal: number): void;
  parentPid(): number;
  setBlocking(fd: number, blocking: boolean): void;
  dup(fd: number): number;
  fdLimit(): number;
  Semaphore: NativeSemaphoreClass;
  SEM_VALUE_MAX: number;
  cancelJob(id: number): boolean;
  readFrame(fd: number, timeout: number, stall: number, maxSize: number, jobId?: number): Uint8Array | Promise<Uint8Array | null>;
  takeFrame(fd: number, scratch: Uint8Array, maxSize: number, stall: number): number | Uint8Array | null | Promise<Uint8Array | null>;
  readNoWait(use?: boolean): boolean;
  writeBytes(fd: number, chunks: Uint8Array[], jobId?: number | false): boolean | Promise<void>;
  pollReadable(fd: number, timeout: number, jobId?: number): Promise<boolean>;
  handshake(target: number | [string, number], client: boolean, authkey: Uint8Array, challenge: Uint8Array, jobId: number, hold: boolean): Promise<number | NativeHandshakeResult>;
  cancelHandshake(jobId: number): number;
  handshakeAvailable(): boolean;
  readable(fd: number): number;
  createArena(dir: string, size: number): { fd: number; buffer: ArrayBuffer };
  mapFd(fd: number, size: number): ArrayBuffer;
  unmap(buffer: ArrayBuffer): void;
  sendFds(sock: number, fds: number[]): void;
  recvFds(sock: number, max: number): number[];
}

interface NativeSemaphoreClass {
  create(name: string, value: number, unlinkNow: boolean): NativeSemaphore;
  open(name: string): NativeSemaphore;
  unlink(name: string): void;
}

let binding: Binding | undefined;

function load(): Binding {
  if (binding !== undefined) return binding;
  const require = createRequire(import.meta.url);
  try {
    binding = require(packagePath('build', 'Release', 'billiard_native.node')) as Binding;
  } catch (e) {
    throw new Error(`the billiard-ts native addon is not built: run \`npm run build:native\` in the package directory (needs make, g++ and Python 3): ${(e as Error).message}`, {
      cause: e,
    });
  }
  return binding;
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const err = e as { message?: string; code?: string; errno?: number; syscall?: string };
    if (typeof err?.code === 'string' && typeof err.errno === 'number') {
      throw new NativeError(err.message ?? 'system call failed', err.code, err.errno, err.syscall ?? '');
    }
    throw e;
  }
}

/** An AF_UNIX stream socket pair, both ends close-on-exec: `[fd, fd]`. */
export function socketpair(): [number, number] {
  return call(() => load().socketpair());
}

/** A one-way pipe, close-on-exec: `[readFd, writeFd]`. */
export function pipe(): [number, number] {
  return call(() => load().pipe());
}

/**
 * A listening, non-blocking AF_UNIX socket bound to `path` with its exact
 * length (a Linux abstract name begins with a NUL byte).
 */
export function unixListen(path: Uint8Array, backlog: number): number {
  if (!Number.isInteger(backlog) || backlog < 0) throw new RangeError('backlog must be a non-negative integer');
  return call(() => load().unixListen(path, backlog));
}

/**
 * Starts a non-blocking connect of an AF_UNIX socket to `path` with its
 * exact length. Throws NativeError `EAGAIN` when the listener's accept queue
 * is full and `ECONNREFUSED`/`ENOENT` when nobody listens.
 */
export function unixConnect(path: Uint8Array): { fd: number; inProgress: boolean } {
  return call(() => load().unixConnect(path));
}

/**
 * Asks Linux to send `signal` (a number, e.g. 9) to this process when its
 * parent dies (`prctl(PR_SET_PDEATHSIG)`). NativeError `ENOSYS` elsewhere.
 */
export function setParentDeathSignal(signal: number): void {
  if (!Number.isInteger(signal) || signal < 0) throw new RangeError('signal must be a signal number');
  call(() => load().setParentDeathSignal(signal));
}

/** This process's parent pid, as the kernel knows it now (1 or a subreaper once the parent died). */
export function parentPid(): number {
  return load().parentPid();
}

/** Sets (true) or clears (false) blocking mode of a file descriptor, as Python's `os.set_blocking`. */
export function setBlocking(fd: number, blocking: boolean): void {
  call(() => load().setBlocking(fd, blocking));
}

/** A close-on-exec duplicate of a file descriptor, as Python's `os.dup`. */
export function dup(fd: number): number {
  if (!Number.isInteger(fd) || fd < 0) throw new RangeError('fd must be a non-negative integer');
  return call(() => load().dup(fd));
}

/** The soft limit on this process's open descriptors (`RLIMIT_NOFILE`); `Infinity` when unlimited. */
export function fdLimit(): number {
  const n = call(() => load().fdLimit());
  return n >= Number.MAX_SAFE_INTEGER ? Infinity : n;
}

/**
 * A POSIX named semaphore, made as CPython's `SemLock` makes one. Waits that
 * block run on billiard-ts's own threads (never libuv's pool): a pending
 * `wait()` keeps the event loop alive, as a pending timer does.
 */
export interface NativeSemaphore {
  /** `sem_trywait`: true if taken. */
  tryWait(): boolean;
  /** `sem_post`. */
  post(): void;
  /** `sem_getvalue`. */
  getValue(): number;
  /**
   * Takes the semaphore off the event loop: true when taken, false when
   * `timeout` seconds (`Infinity`: never) passed or the job was cancelled
   * with {@link cancelJob}.
   */
  wait(timeout: number, jobId?: number): Promise<boolean>;
  /** Takes the semaphore, blocking this thread up to `timeout` seconds. */
  waitSync(timeout: number): boolean;
  /** `sem_close` once no wait uses it any more. */
  close(): void;
  /** The `sem_t` address, which CPython pickles as the handle. */
  readonly handle: number;
  /**
   * glibc's sem_t state word (8 bytes: the value, then the count of
   * sleeping waiters) in the shared mapping, for Atomics; undefined where
   * the layout is not known to be glibc's on x86-64.
   */
  word(): ArrayBuffer | undefined;
  /** Wakes one sleeping waiter (FUTEX_WAKE on the value word). */
  wake(): void;
}

/** Named POSIX semaphores (see {@link NativeSemaphore}). */
export const Semaphore = {
  /** `sem_open(name, O_CREAT | O_EXCL, 0600, value)`; NativeError `EEXIST` when the name is taken. */
  create(name: string, value: number, unlinkNow = false): NativeSemaphore {
    return call(() => load().Semaphore.create(name, value, unlinkNow));
  },
  /** `sem_open(name, 0)`. */
  open(name: string): NativeSemaphore {
    return call(() => load().Semaphore.open(name));
  },
  /** `sem_unlink(name)`. */
  unlink(name: string): void {
    call(() => load().Semaphore.unlink(name));
  },
};

/** The largest value a semaphore holds (2147483647 on Linux). */
export function semValueMax(): number {
  return load().SEM_VALUE_MAX;
}

let nextJob = 1;
/** A fresh id for a cancellable job ({@link cancelJob}). */
export function jobId(): number {
  return nextJob++;
}

/** Cancels a pending wait or read: it resolves as if its timeout passed. */
export function cancelJob(id: number): boolean {
  return load().cancelJob(id);
}

function asNative<T>(p: Promise<T>): Promise<T> {
  return p.catch((e: unknown) => call(() => {
    throw e;
  }));
}

/**
 * Reads one frame (billiard's 4-byte big-endian length, or -1 and an 8-byte
 * one, then the payload) from a blocking pipe shared with other processes,
 * without changing its flags. A frame wholly readable now comes back at
 * once; otherwise a pool thread waits for it. `timeout` (seconds) bounds
 * the wait for the frame to begin (null then); `stall` (seconds) bounds a
 * pause in the middle of one (a writer that died mid-frame), after which
 * NativeError `ETIMEDOUT`. End of file before a frame: `EPIPE`; inside
 * one: `EBADMSG`; a bad header: `EPROTO`; over `maxSize`: `EMSGSIZE`.
 */
export function readFrame(fd: number, timeout: number, stall: number, maxSize: number, id?: number): Uint8Array | Promise<Uint8Array | null> {
  const r = call(() => load().readFrame(fd, timeout, stall, maxSize, id));
  return r instanceof Promise ? asNative(r) : r;
}

/**
 * The frame readable on fd now, taken without a thread: its length when it
 * was read into `scratch`, a Uint8Array when it did not fit there, null when
 * no frame has begun to arrive (nothing was read), or a Promise of its bytes
 * when only part of it is there yet (a pool thread reads the rest, giving up
 * after `stall` seconds without progress). Errors as {@link readFrame}'s.
 */
export function takeFrame(fd: number, scratch: Uint8Array, maxSize: number, stall: number): number | Uint8Array | null | Promise<Uint8Array | null> {
  const r = call(() => load().takeFrame(fd, scratch, maxSize, stall));
  return r instanceof Promise ? asNative(r) : r;
}

/**
 * Whether frames are read with preadv2(RWF_NOWAIT) (true once it worked).
 * `use` false reads with FIONREAD then read() instead, as where the kernel
 * lacks the flag; for tests of that path.
 * @internal
 */
export function readNoWait(use?: boolean): boolean {
  return load().readNoWait(use);
}

/**
 * Writes the chunks to a blocking pipe: at once (returns true) when they
 * certainly fit without blocking, else on a pool thread (a Promise).
 */
export function writeBytes(fd: number, chunks: Uint8Array[], id?: number): true | Promise<void> {
  const r = call(() => load().writeBytes(fd, chunks, id));
  return r === true ? r : asNative(r as Promise<void>);
}

/**
 * Writes the chunks to a blocking pipe only if they certainly fit now:
 * true when written, false when not (nothing was written).
 */
export function writeBytesNow(fd: number, chunks: Uint8Array[]): boolean {
  return call(() => load().writeBytes(fd, chunks, false)) === true;
}

/** Resolves true once fd is readable (or at end of file), false after `timeout` seconds. */
export function pollReadable(fd: number, timeout: number, id?: number): Promise<boolean> {
  return asNative(call(() => load().pollReadable(fd, timeout, id)));
}

/** How a native handshake failed (`outcome`: native/handshake.h's HandshakeOutcome). */
export interface NativeHandshakeResult {
  outcome: number;
  n: number;
  got: number;
  errno: number;
  code: string;
  syscall: string;
  name: string;
  bytes: Uint8Array;
}

let handshakeOk: boolean | undefined;
/** Whether the addon can run the authkey handshake (it found OpenSSL's HMAC in this process). */
export function nativeHandshakeAvailable(): boolean {
  if (handshakeOk === undefined) {
    try {
      handshakeOk = load().handshakeAvailable();
    } catch {
      handshakeOk = false;
    }
  }
  return handshakeOk;
}

/**
 * The whole authkey handshake on a connected socket, or on a new TCP
 * connection to `[dotted IPv4 address, port]` made first, run by the addon
 * on the event loop's readiness events with no JavaScript per frame
 * (native/handshake.h; src/connection/handshake.ts `handshakeNative`):
 * the socket's descriptor, or what went wrong (a socket it made is then
 * closed). `id` names it for {@link cancelNativeHandshake}; `hold` false: the wait
 * does not keep the event loop alive.
 */
export function nativeHandshake(target: number | [string, number], client: boolean, authkey: Uint8Array, challenge: Uint8Array, id: number, hold: boolean): Promise<number | NativeHandshakeResult> {
  return load().handshake(target, client, authkey, challenge, id, hold);
}

/** Stops a native handshake at once (its promise resolves with outcome 8; it no longer uses its socket): 1 if it was connecting, 2 if in the handshake, 0 if none ran under `id`. */
export function cancelNativeHandshake(id: number): number {
  return load().cancelHandshake(id);
}

/** Bytes readable on fd now (`FIONREAD`). */
export function readable(fd: number): number {
  return call(() => load().readable(fd));
}

/**
 * billiard's arena: a file of `size` zero bytes in `dir` named
 * `pym-<pid>-<random>`, unlinked at once, mapped `MAP_SHARED`. The buffer's
 * data is at offset 0; it is unmapped when collected or {@link unmap}ped.
 */
export function createArena(dir: string, size: number): { fd: number; buffer: ArrayBuffer } {
  return call(() => load().createArena(dir, size));
}

/** Maps `size` bytes of a descriptor `MAP_SHARED` (an arena received from another process). */
export function mapFd(fd: number, size: number): ArrayBuffer {
  return call(() => load().mapFd(fd, size));
}

/** Detaches a mapped buffer (its views become empty) and unmaps it. */
export function unmap(buffer: ArrayBuffer): void {
  call(() => load().unmap(buffer));
}

/** Sends descriptors over an AF_UNIX socket as billiard's `reduction.sendfds` does. */
export function sendFds(sock: number, fds: number[]): void {
  call(() => load().sendFds(sock, fds));
}

/** Receives up to `max` descriptors without blocking (NativeError `EAGAIN` when none wait). */
export function recvFds(sock: number, max: number): number[] {
  return call(() => load().recvFds(sock, max));
}
