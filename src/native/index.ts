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
