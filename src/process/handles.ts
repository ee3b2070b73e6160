/**
 * Passing file descriptors between processes over an AF_UNIX socket
 * (`SCM_RIGHTS`), as `billiard.reduction`'s `sendfds`/`recvfds` and
 * `send_handle`/`recv_handle` do, which Node core cannot: one byte holding
 * `count % 256` carries the descriptors. Linux peers (billiard, CPython
 * 3.11–3.13) send no acknowledgement; CPython 3.14 and macOS peers answer
 * every message with `b'A'` and wait for it: pass `acknowledge: true` when
 * the other end is one of those.
 */

import { Connection, kOpenedStream } from '../connection/connection.js';
import { EOFError, OSError, TimeoutError } from '../connection/errors.js';
import { cancelJob, jobId, NativeError, pollReadable, recvFds as nativeRecvFds, sendFds as nativeSendFds } from '../native/index.js';
import { timeoutSeconds } from '../connection/timers.js';
import { RuntimeError, ValueError } from './errors.js';

/** Options of the receiving side. */
export interface RecvFdsOptions {
  /** Seconds to wait for the message (default: for ever); TimeoutError after. */
  timeout?: number | null;
  /** Gives up the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
  /** Answer with `b'A'` (CPython 3.14 and macOS senders wait for it). Default false. */
  acknowledge?: boolean;
}

/** Options of the sending side. */
export interface SendFdsOptions {
  /** Wait for the receiver's `b'A'` (CPython 3.14 and macOS receivers send it). Default false. */
  acknowledge?: boolean;
  /** Seconds to wait for that acknowledgement (default: for ever). */
  timeout?: number | null;
}

const ACK = Uint8Array.of(0x41);

function asOSError(e: unknown, what: string): unknown {
  if (e instanceof NativeError) {
    if (e.code === 'EPIPE' || e.code === 'ECONNRESET') return new EOFError(`${what}: the peer closed the socket`);
    if (e.code === 'EBADMSG') return new RuntimeError('received a message whose byte does not match its descriptor count');
    if (e.code === 'EMSGSIZE') return new RuntimeError('received more descriptors than asked for (the extra ones were closed)');
    if (e.code === 'EINVAL') return new ValueError('between 1 and 253 descriptors travel in one message');
    return new OSError(`${what}: ${e.message}`, { code: e.code as OSError['code'], cause: e });
  }
  return e;
}

async function waitReadable(sock: number, options: { timeout?: number | null; signal?: AbortSignal } | undefined, what: string): Promise<void> {
  const timeout = timeoutSeconds(options?.timeout);
  const signal = options?.signal;
  signal?.throwIfAborted();
  const id = jobId();
  const onAbort = (): void => {
    cancelJob(id);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const ready = await pollReadable(sock, timeout ?? -1, id);
    signal?.throwIfAborted();
    if (!ready) throw new TimeoutError(`${what}: timed out`);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Sends `fds` (1 to 253 descriptors of this process; they stay open here)
 * over the AF_UNIX socket `sock`: `reduction.sendfds`.
 */
export async function sendFds(sock: number, fds: readonly number[], options?: SendFdsOptions): Promise<void> {
  if (!Array.isArray(fds) || !fds.every((fd) => Number.isInteger(fd) && fd >= 0)) throw new TypeError('fds must be an array of descriptors');
  try {
    nativeSendFds(sock, [...fds]);
  } catch (e) {
    throw asOSError(e, 'sendmsg');
  }
  if (options?.acknowledge) {
    await waitReadable(sock, options, 'waiting for the acknowledgement');
    const { readSync } = process.getBuiltinModule('node:fs');
    const byte = new Uint8Array(1);
    if (readSync(sock, byte) !== 1 || byte[0] !== ACK[0]) throw new RuntimeError('did not receive the acknowledgement');
  }
}

/**
 * Receives one message of descriptors (at most `size`) from the AF_UNIX
 * socket `sock`: `reduction.recvfds`. The wait runs off the event loop.
 * The descriptors are this process's to close.
 */
export async function recvFds(sock: number, size: number, options?: RecvFdsOptions): Promise<number[]> {
  if (!Number.isInteger(size) || size < 1 || size > 253) throw new ValueError('between 1 and 253 descriptors travel in one message');
  for (;;) {
    await waitReadable(sock, options, 'recvmsg');
    let fds: number[];
    try {
      fds = nativeRecvFds(sock, size);
    } catch (e) {
      if (e instanceof NativeError && (e.code === 'EAGAIN' || e.code === 'EWOULDBLOCK')) continue; // another reader took it
      throw asOSError(e, 'recvmsg');
    }
    if (options?.acknowledge) {
      const { writeSync } = process.getBuiltinModule('node:fs');
      writeSync(sock, ACK);
    }
    return fds;
  }
}

function connectionFd(conn: Connection, reading: boolean): number {
  if (!(conn instanceof Connection)) throw new TypeError('conn must be a Connection');
  const stream = conn[kOpenedStream] as (import('node:stream').Duplex & { writableLength?: number }) | null;
  if (reading && stream !== null) {
    // Node's socket reads with read(2), which would drop descriptors that arrive while it does.
    throw new ValueError('recvHandle() needs a Connection that has not started reading (Node reads its socket ahead and would lose the descriptors)');
  }
  if (!reading && stream !== null && (stream.writableLength ?? 0) > 0) {
    throw new ValueError('sendHandle() on a Connection with a send still being written: await it first');
  }
  const fd = conn.fileno();
  if (fd < 0) throw new ValueError('the Connection has no descriptor');
  return fd;
}

/**
 * Sends the descriptor `handle` over `conn` (an AF_UNIX Connection, such as
 * a duplex `Pipe()` end): `reduction.send_handle`. `destinationPid` is
 * accepted for billiard's signature and unused on POSIX.
 */
export async function sendHandle(conn: Connection, handle: number, destinationPid?: number, options?: SendFdsOptions): Promise<void> {
  void destinationPid;
  await sendFds(connectionFd(conn, false), [handle], options);
}

/**
 * Receives one descriptor sent by `sendHandle` or Python's `send_handle` on
 * `conn`: `reduction.recv_handle`. The Connection must not have started
 * reading (no `recv()` on it yet): Node reads a socket ahead of its callers
 * and would drop the descriptor.
 */
export async function recvHandle(conn: Connection, options?: RecvFdsOptions): Promise<number> {
  const fds = await recvFds(connectionFd(conn, true), 1, options);
  return fds[0]!;
}
