/**
 * `Listener` and `Client` (spec/connection.md section 3): AF_INET (TCP) and
 * AF_UNIX (paths, and Linux abstract names through the native layer, since
 * Node 20's libuv pads those to 108 bytes and misses Python's sockets), with
 * the authkey handshake when a key is given.
 */

import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { NativeError, unixConnect, unixListen } from '../native/index.js';
import { PyTuple, tuple } from '../pickle/index.js';
import { Connection, type ConnectionOptions } from './connection.js';
import { OSError, TimeoutError } from './errors.js';
import { answerChallenge, deliverChallenge, type DigestName } from './handshake.js';

/** An address: `[host, port]` (a tuple or array) for AF_INET; a path, or a Linux abstract name starting with NUL, for AF_UNIX. */
export type Address = PyTuple<string | number> | readonly [string, number] | string | Uint8Array;

/** Address families of POSIX (`'AF_PIPE'` is Windows-only and not supported). */
export type Family = 'AF_INET' | 'AF_UNIX';

/** The families this platform has, as `multiprocessing.connection.families`. */
export const families: readonly Family[] = ['AF_INET', 'AF_UNIX'];

/** The default family: AF_UNIX, as on Linux and macOS. */
export const defaultFamily: Family = 'AF_UNIX';

/** The family an address belongs to (Python's `address_type`). */
export function addressType(address: Address): Family {
  if (Array.isArray(address)) return 'AF_INET';
  if (typeof address === 'string') {
    if (address.startsWith('\\\\')) throw new RangeError('Family AF_PIPE is not recognized.');
    return 'AF_UNIX';
  }
  if (address instanceof Uint8Array && address[0] === 0) return 'AF_UNIX';
  throw new TypeError(`address type of ${String(address)} unrecognized`);
}

let tempDir: string | undefined;

/** A fresh address for `family` (Python's `arbitrary_address`). */
export function arbitraryAddress(family: Family): Address {
  if (family === 'AF_INET') return tuple('localhost', 0);
  if (family === 'AF_UNIX') {
    if (tempDir === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'pymp-'));
      tempDir = dir;
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    }
    return join(tempDir, `listener-${Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(4))).toString('hex')}`);
  }
  throw new RangeError(`Family ${String(family)} is not recognized.`);
}

/** True for a Linux abstract AF_UNIX name (a leading NUL byte). */
function isAbstract(address: Address): address is string | Uint8Array {
  return (typeof address === 'string' && address.startsWith('\0')) || (address instanceof Uint8Array && address[0] === 0);
}

function abstractBytes(address: string | Uint8Array): Uint8Array {
  return typeof address === 'string' ? new TextEncoder().encode(address) : address;
}

function checkFamily(address: Address, family: Family | undefined): Family {
  const inferred = addressType(address);
  if (family !== undefined && family !== inferred) throw new TypeError(`address ${String(address)} does not belong to family ${family}`);
  return inferred;
}

function checkAuthkey(authkey: Uint8Array | null | undefined): Uint8Array | null {
  if (authkey === undefined || authkey === null) return null;
  if (!(authkey instanceof Uint8Array)) throw new TypeError('authkey should be a byte string (Uint8Array)');
  return authkey;
}

function seconds(v: number | null | undefined, name: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new RangeError(`${name} must be a non-negative number of seconds`);
  return v;
}

/** Options of {@link Listener}. */
export interface ListenerOptions {
  /** `'AF_INET'` or `'AF_UNIX'`; inferred from the address. */
  family?: Family;
  /** The listen backlog. Defaults to 1, as Python's Listener. */
  backlog?: number;
  /**
   * The key of the handshake run on each accepted connection. Defaults to
   * null: no handshake (as Python; not the process's authkey). An empty key
   * is a real key, as in CPython 3.13+.
   */
  authkey?: Uint8Array | null;
  /** Seconds a handshake may take before the connection is dropped. Defaults to 60. */
  handshakeTimeout?: number | null;
  /** The challenge form this side sends: `'sha256'` (CPython 3.12+, the default) or `'legacy'`. */
  digest?: DigestName | 'legacy';
  /** Options of the accepted connections. */
  connection?: ConnectionOptions;
}

const DEFAULT_HANDSHAKE_TIMEOUT = 60;

/**
 * Accepts connections on an address, as `multiprocessing.connection.Listener`.
 * Binding starts in the constructor; `ready` settles when the listener is
 * bound (or failed to bind); `Listener.create` waits for it.
 */
export class Listener {
  readonly #server: Server;
  readonly #family: Family;
  readonly #authkey: Uint8Array | null;
  readonly #handshakeTimeout: number | null;
  readonly #digest: DigestName | 'legacy';
  readonly #connectionOptions: ConnectionOptions | undefined;
  #address: Address;
  #lastAccepted: Address | null = null;
  #closed = false;
  readonly #pending: Socket[] = [];
  readonly #waiters: Array<{ resolve: (s: Socket) => void; reject: (e: Error) => void }> = [];
  /** Settles once the listener is bound. */
  readonly ready: Promise<void>;

  constructor(address?: Address | null, options?: ListenerOptions) {
    const family = options?.family ?? (address === undefined || address === null ? defaultFamily : addressType(address));
    const addr = address ?? arbitraryAddress(family);
    this.#family = checkFamily(addr, family);
    this.#authkey = checkAuthkey(options?.authkey);
    this.#handshakeTimeout = options?.handshakeTimeout === undefined ? DEFAULT_HANDSHAKE_TIMEOUT : seconds(options.handshakeTimeout, 'options.handshakeTimeout');
    this.#digest = options?.digest ?? 'sha256';
    this.#connectionOptions = options?.connection;
    const backlog = options?.backlog ?? 1;
    if (!Number.isInteger(backlog) || backlog < 0) throw new RangeError('options.backlog must be a non-negative integer');
    this.#address = addr;
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: false });
    this.#server.on('connection', (socket: Socket) => this.#onConnection(socket));
    this.ready = new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new OSError(`cannot listen on ${String(addr)}: ${e.message}`, { code: (e as { code?: string }).code ?? 'OSERROR', cause: e }));
      this.#server.once('error', onError);
      const onListening = (): void => {
        this.#server.off('error', onError);
        this.#server.on('error', () => undefined);
        if (this.#family === 'AF_INET') {
          const a = this.#server.address();
          if (a !== null && typeof a === 'object') this.#address = tuple(a.address, a.port);
        }
        this.#refresh();
        resolve();
      };
      if (this.#family === 'AF_INET') {
        const [host, port] = addr as readonly [string, number];
        this.#server.listen({ host: host === '' ? '0.0.0.0' : host, port, backlog, ipv6Only: false }, onListening);
      } else if (isAbstract(addr)) {
        let fd: number;
        try {
          fd = unixListen(abstractBytes(addr), backlog);
        } catch (e) {
          onError(e as Error);
          return;
        }
        this.#address = typeof addr === 'string' ? addr : new Uint8Array(addr);
        this.#server.listen({ fd, backlog }, onListening);
      } else {
        this.#server.listen({ path: addr as unknown as string, backlog }, onListening);
      }
    });
    this.ready.catch(() => undefined);
  }

  /** A bound listener (the constructor, then `ready`). */
  static async create(address?: Address | null, options?: ListenerOptions): Promise<Listener> {
    const l = new Listener(address, options);
    await l.ready;
    return l;
  }

  /** The bound address: `[host, port]` with the real port for AF_INET. */
  get address(): Address {
    return this.#address;
  }

  /** The peer address of the last accepted connection: `[host, port]`, or `''` for AF_UNIX; null before. */
  get lastAccepted(): Address | null {
    return this.#lastAccepted;
  }

  get closed(): boolean {
    return this.#closed;
  }

  #onConnection(socket: Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    if (this.#family === 'AF_INET') socket.setNoDelay(true);
    const w = this.#waiters.shift();
    this.#refresh();
    if (w) w.resolve(socket);
    else {
      socket.unref(); // a connection nobody accepted does not hold the process open
      this.#pending.push(socket);
    }
  }

  /**
   * As a Python process ends when its main code does, an open listener keeps
   * Node's event loop alive only while an accept() waits on it.
   */
  #refresh(): void {
    if (this.#waiters.length > 0) this.#server.ref();
    else this.#server.unref();
  }

  /**
   * The next connection, after the handshake when the listener has a key. A
   * failed handshake rejects this call; the listener stays usable.
   */
  async accept(options?: { signal?: AbortSignal }): Promise<Connection> {
    await this.ready;
    if (this.#closed) throw new OSError('listener is closed', { code: 'LISTENER_CLOSED' });
    const socket = this.#pending.shift() ?? (await this.#nextSocket(options?.signal));
    this.#lastAccepted = this.#family === 'AF_INET' ? tuple(socket.remoteAddress ?? '', socket.remotePort ?? 0) : '';
    const conn = new Connection(socket, this.#connectionOptions);
    if (this.#authkey !== null) {
      const hs = { timeout: this.#handshakeTimeout, signal: options?.signal };
      try {
        await deliverChallenge(conn, this.#authkey, { ...hs, digest: this.#digest });
        await answerChallenge(conn, this.#authkey, hs);
      } catch (e) {
        conn.close();
        throw e;
      }
    }
    return conn;
  }

  #nextSocket(signal: AbortSignal | undefined): Promise<Socket> {
    signal?.throwIfAborted();
    return new Promise<Socket>((resolve, reject) => {
      const waiter = {
        resolve: (s: Socket) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject: (e: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        this.#refresh();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#refresh();
    });
  }

  /** Stops listening (idempotent); a path socket file is removed. Pending accepts fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const s of this.#pending.splice(0)) s.destroy();
    for (const w of this.#waiters.splice(0)) w.reject(new OSError('listener is closed', { code: 'LISTENER_CLOSED' }));
    if (this.#family === 'AF_UNIX' && typeof this.#address === 'string' && !isAbstract(this.#address)) {
      try {
        unlinkSync(this.#address);
      } catch {
        // already gone
      }
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

/** Options of {@link Client}. */
export interface ClientOptions {
  /** `'AF_INET'` or `'AF_UNIX'`; inferred from the address. */
  family?: Family;
  /** The handshake key; null (the default) runs no handshake. */
  authkey?: Uint8Array | null;
  /** Seconds for connecting and the handshake together. Defaults to none. */
  timeout?: number | null;
  signal?: AbortSignal;
  /** The challenge form this side sends: `'sha256'` (the default) or `'legacy'`. */
  digest?: DigestName | 'legacy';
  /** Options of the connection. */
  connection?: ConnectionOptions;
}

/** Backoff while an AF_UNIX listener's accept queue is full (Python's default backlog is 1). */
const EAGAIN_FIRST_DELAY_MS = 1;
const EAGAIN_MAX_DELAY_MS = 50;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function connectSocket(options: { host?: string; port?: number; path?: string }): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = new Socket({ allowHalfOpen: true });
    const onError = (e: Error): void => {
      socket.destroy();
      reject(e);
    };
    socket.once('error', onError);
    socket.connect(options as never, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

function deadlineError(address: Address): TimeoutError {
  return new TimeoutError(`connecting to ${String(address)} timed out`);
}

/**
 * `connecting` if it settles before `deadline`, else a TimeoutError (and the
 * socket, should it connect later, is destroyed). The timer is cleared as soon
 * as the race is decided: it must not outlive a connection that won.
 */
async function beforeDeadline(connecting: Promise<Socket>, deadline: number, address: Address): Promise<Socket> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      connecting.then((s) => s.destroy(), () => undefined);
      reject(deadlineError(address));
    }, Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([connecting, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function connectTo(address: Address, family: Family, deadline: number | null, signal: AbortSignal | undefined): Promise<Socket> {
  if (family === 'AF_INET') {
    const [host, port] = address as readonly [string, number];
    const socket = await connectSocket({ host, port });
    socket.setNoDelay(true);
    return socket;
  }
  let delay = EAGAIN_FIRST_DELAY_MS;
  for (;;) {
    signal?.throwIfAborted();
    try {
      if (isAbstract(address)) {
        const { fd, inProgress } = unixConnect(abstractBytes(address));
        if (!inProgress) return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
        // Linux completes AF_UNIX connects at once; treat anything else like a full queue.
        new Socket({ fd }).destroy();
        throw Object.assign(new Error('connect in progress'), { code: 'EAGAIN' });
      }
      return await connectSocket({ path: address as unknown as string });
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code !== 'EAGAIN') {
        if (e instanceof NativeError) throw new OSError(`cannot connect to ${JSON.stringify(address)}: ${e.message}`, { code: e.code, cause: e });
        throw new OSError(`cannot connect to ${String(address)}: ${(e as Error).message}`, { code: code ?? 'OSERROR', cause: e });
      }
      // The listener's accept queue is full: a blocking Python client would wait, so wait.
      if (deadline !== null && Date.now() + delay > deadline) throw deadlineError(address);
      await sleep(delay);
      delay = Math.min(delay * 2, EAGAIN_MAX_DELAY_MS);
    }
  }
}

/**
 * Connects to a Listener (Python's `Client`): answers then delivers the
 * handshake when a key is given, and returns the connection.
 */
export async function Client(address: Address, options?: ClientOptions): Promise<Connection> {
  const family = checkFamily(address, options?.family);
  const authkey = checkAuthkey(options?.authkey);
  const timeout = seconds(options?.timeout, 'options.timeout');
  const deadline = timeout === null ? null : Date.now() + timeout * 1000;
  const signal = options?.signal;
  const connecting = connectTo(address, family, deadline, signal);
  const socket = deadline === null ? await connecting : await beforeDeadline(connecting, deadline, address);
  const conn = new Connection(socket, options?.connection);
  if (authkey !== null) {
    const left = deadline === null ? null : Math.max(0, (deadline - Date.now()) / 1000);
    const hs = { timeout: left, signal };
    try {
      await answerChallenge(conn, authkey, hs);
      await deliverChallenge(conn, authkey, { ...hs, digest: options?.digest ?? 'sha256' });
    } catch (e) {
      conn.close();
      throw e;
    }
  }
  return conn;
}
