/**
 * `Listener` and `Client` (spec/connection.md section 3): AF_INET (TCP) and
 * AF_UNIX (paths, and Linux abstract names through the native layer, since
 * Node 20's libuv pads those to 108 bytes and misses Python's sockets), with
 * the authkey handshake when a key is given.
 */

import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { createServer, isIPv4, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { fdLimit, NativeError, unixConnect, unixListen } from '../native/index.js';
import { PyTuple, tuple } from '../pickle/index.js';
import { Connection, DEFAULT_MAX_MESSAGE_SIZE, kHoldsProcess, kReceiveLimit, type ConnectionOptions } from './connection.js';
import { OSError, TimeoutError } from './errors.js';
import { answerChallenge, deliverChallenge, HANDSHAKE_MAX_LENGTH, handshakeNative, nativeHandshakeUsable, NativeConnectError, type DigestName } from './handshake.js';
import { race, sleep, timeoutSeconds } from './timers.js';
import { checkOptionNames, optionNames } from './options.js';

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

/** A duration option in seconds: null, undefined and Infinity mean none; a negative number is a RangeError. */
function seconds(v: number | null | undefined, name: string): number | null {
  if (typeof v === 'number' && v < 0) throw new RangeError(`${name} must be a non-negative number of seconds`);
  return timeoutSeconds(v, name);
}

/** Options of {@link Listener} (Python's keyword arguments, and what a server needs). */
export interface ListenerOptions {
  /**
   * Where to listen: `[host, port]` for AF_INET (port 0: any free port), a
   * path or a Linux abstract name (`'\0name'`) for AF_UNIX. Defaults to a
   * fresh address of `family` (Python's `arbitrary_address`).
   */
  address?: Address | null;
  /** `'AF_INET'` or `'AF_UNIX'`; inferred from the address. */
  family?: Family;
  /**
   * The kernel's listen backlog. Defaults to 128, where Python's Listener
   * has 1: Python accepts one connection per `accept()` call, while this
   * listener takes every connection as it arrives, and under a burst of
   * connections (a flood of hostile peers) a backlog of 1 made the kernel
   * drop legitimate clients' SYNs, which TCP retries only after 1, 3, 7...
   * seconds (bench/soak-hostile.ts: 300 peers took 44 s with 1, 5 s with 128).
   */
  backlog?: number;
  /**
   * The key of the handshake run on each accepted connection. Defaults to
   * null: no handshake (as Python; not the process's authkey). An empty key
   * is a real key, as in CPython 3.13+.
   */
  authkey?: Uint8Array | null;
  /**
   * Seconds a connection's handshake may take before it is dropped. Defaults
   * to 60; null or Infinity: no limit (CPython has none).
   */
  handshakeTimeout?: number | null;
  /** The challenge form this side sends: `'sha256'` (CPython 3.12+, the default) or `'legacy'`. */
  digest?: DigestName | 'legacy';
  /**
   * Connections held for `accept()`, counting those still in their
   * handshake. When a new connection finds the queue full, the oldest one
   * still in its handshake is dropped to make room (so peers that connect
   * and say nothing cannot keep a real client out); when none is in its
   * handshake, the newcomer is dropped. Defaults to an eighth of the
   * process's descriptor limit, between 8 and 128.
   */
  maxPending?: number;
  /**
   * Options of the accepted connections. Their `maxMessageSize` defaults to
   * {@link DEFAULT_MAX_MESSAGE_SIZE} (64 MiB), since they come from the network.
   */
  connection?: ConnectionOptions;
}

const LISTENER_OPTIONS = optionNames<ListenerOptions>()({ address: 1, family: 1, backlog: 1, authkey: 1, handshakeTimeout: 1, digest: 1, maxPending: 1, connection: 1 });

const DEFAULT_HANDSHAKE_TIMEOUT = 60;
const DEFAULT_BACKLOG = 128;
const MAX_DEFAULT_PENDING = 128;
const MIN_DEFAULT_PENDING = 8;
/** Frames a handshake reads on each side (response; then challenge and verdict), each of at most 256 bytes. */
const HANDSHAKE_LIMIT = { size: HANDSHAKE_MAX_LENGTH, frames: 3 } as const;

function defaultMaxPending(): number {
  let limit = Infinity;
  try {
    limit = fdLimit();
  } catch {
    // No native layer: assume a generous limit.
  }
  return Math.max(MIN_DEFAULT_PENDING, Math.min(MAX_DEFAULT_PENDING, Math.floor(limit / 8)));
}

/** A connection the listener holds until accept() takes it. */
interface Pending {
  socket: Socket;
  /** The authenticated connection; null for a listener without a key (made at accept()). */
  conn: Connection | null;
  peer: Address;
  /** Stops its native handshake (handshakeNative) while it runs. */
  stop?: (reason: Error) => void;
}

/** Why a native handshake was stopped: its peer was dropped or refused (nobody sees it: the drop is reported on its own). */
const dropped = (): OSError => new OSError('dropped', { code: 'DROPPED' });

/** A native handshake begun before Node made the peer's net.Socket (Listener #hookConnections). */
interface EarlyHandshake {
  done: Promise<number>;
  /** Stops it at once (set as it starts). */
  stop: ((reason: Error) => void) | null;
  /** #onConnection took it over. */
  claimed: boolean;
}

/** Is `v` an options object rather than an address (the `Listener(address, options)` alias)? */
function isOptionsObject(v: unknown): v is ListenerOptions {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Uint8Array);
}

/** Events of a {@link Listener}. */
export interface ListenerEvents {
  /** A peer failed its handshake (wrong key, bad frames, timeout, hang-up); it was dropped and accept() never sees it. */
  handshakeError: [error: Error, peer: Address];
}

/**
 * Accepts connections on an address, as `multiprocessing.connection.Listener`:
 * `await Listener.create({ address, authkey })`, then `await listener.accept()`.
 *
 * Unlike Python's, it survives any peer: handshakes run as connections
 * arrive, concurrently, each with its own deadline; `accept()` hands out
 * only connections that passed theirs (a failed one is dropped and reported
 * as a `'handshakeError'` event); connections waiting for `accept()` are
 * bounded by `maxPending`. Binding starts in the constructor; `ready`
 * settles when the listener is bound (or failed to bind).
 */
export class Listener extends EventEmitter<ListenerEvents> {
  readonly #server: Server;
  readonly #family: Family;
  readonly #authkey: Uint8Array | null;
  readonly #handshakeTimeout: number | null;
  readonly #digest: DigestName | 'legacy';
  readonly #connectionOptions: ConnectionOptions;
  readonly #maxPending: number;
  /** Native handshakes begun in the server handle's onconnection, before Node made the peer's net.Socket: by client handle. */
  readonly #early = new WeakMap<object, EarlyHandshake>();
  #address: Address;
  /** The socket file this listener made (its path and inode), removed by close(); null otherwise. */
  #ownPath: { path: string; ino: number } | null = null;
  #lastAccepted: Address | null = null;
  #closed = false;
  /** Connections in their handshake, oldest first. */
  readonly #handshaking = new Set<Pending>();
  /** Connections ready for accept(), in arrival order. */
  readonly #ready: Pending[] = [];
  readonly #waiters: Array<{ resolve: (p: Pending) => void; reject: (e: Error) => void }> = [];
  /** Settles once the listener is bound. */
  readonly ready: Promise<void>;

  /**
   * `new Listener({ address, family, backlog, authkey, ... })`; the form
   * `new Listener(address, options)` is an alias. Prefer `Listener.create`,
   * which waits until the listener is bound.
   */
  constructor(options?: ListenerOptions);
  constructor(address: Address | null | undefined, options?: ListenerOptions);
  constructor(first?: Address | ListenerOptions | null, second?: ListenerOptions) {
    super();
    checkOptionNames(isOptionsObject(first) ? first : second, LISTENER_OPTIONS, 'new Listener()');
    const options: ListenerOptions = isOptionsObject(first) ? first : { ...second, address: first ?? second?.address ?? null };
    const address = options.address ?? null;
    const family = options.family ?? (address === null ? defaultFamily : addressType(address));
    const addr = address ?? arbitraryAddress(family);
    this.#family = checkFamily(addr, family);
    this.#authkey = checkAuthkey(options.authkey);
    this.#handshakeTimeout = options.handshakeTimeout === undefined ? DEFAULT_HANDSHAKE_TIMEOUT : seconds(options.handshakeTimeout, 'options.handshakeTimeout');
    this.#digest = options.digest ?? 'sha256';
    this.#connectionOptions = { ...options.connection, maxMessageSize: options.connection?.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE };
    const maxPending = options.maxPending ?? defaultMaxPending();
    if (!Number.isInteger(maxPending) || maxPending < 1) throw new RangeError('options.maxPending must be a positive integer');
    this.#maxPending = maxPending;
    const backlog = options.backlog ?? DEFAULT_BACKLOG;
    if (!Number.isInteger(backlog) || backlog < 0) throw new RangeError('options.backlog must be a non-negative integer');
    this.#address = addr;
    // Sockets arrive paused: a connection without a handshake reads nothing until accept() takes it.
    this.#server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    this.#server.on('connection', (socket: Socket) => this.#onConnection(socket));
    this.ready = new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new OSError(`cannot listen on ${String(addr)}: ${e.message}`, { code: (e as { code?: string }).code ?? 'OSERROR', cause: e }));
      this.#server.once('error', onError);
      const onListening = (): void => {
        this.#server.off('error', onError);
        this.#server.on('error', (e: Error) => this.#onServerError(e));
        this.#hookConnections();
        if (this.#family === 'AF_INET') {
          const a = this.#server.address();
          if (a !== null && typeof a === 'object') this.#address = tuple(a.address, a.port);
        } else if (typeof addr === 'string' && !isAbstract(addr)) {
          try {
            this.#ownPath = { path: addr, ino: statSync(addr).ino };
          } catch {
            // Removed already.
          }
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

  /**
   * A bound listener: `await Listener.create({ address, authkey })` (spec/api.md
   * §18.3). `Listener.create(address, options)` is an alias.
   */
  static async create(options?: ListenerOptions): Promise<Listener>;
  static async create(address: Address | null | undefined, options?: ListenerOptions): Promise<Listener>;
  static async create(first?: Address | ListenerOptions | null, second?: ListenerOptions): Promise<Listener> {
    const l = new Listener(first as Address, second);
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

  /** Connections held for accept() now, those in their handshake included. */
  get pending(): number {
    return this.#handshaking.size + this.#ready.length;
  }

  /**
   * With a key and the native handshake, a peer's handshake begins in the
   * server handle's `onconnection` (Node's internal callback, which makes
   * the net.Socket and emits 'connection'): the challenge is on its way
   * before Node builds the socket (tens of microseconds), and #onConnection
   * takes the running handshake over. Where Node has no such callback,
   * handshakes begin in #onConnection.
   */
  #hookConnections(): void {
    if (this.#authkey === null) return;
    const handle = (this.#server as unknown as { _handle?: { onconnection?: unknown } | null })._handle;
    const original = handle?.onconnection;
    if (handle === null || handle === undefined || typeof original !== 'function') return;
    const early = this.#early;
    const begin = (client: { fd?: number }): void => {
      if (this.#closed || !nativeHandshakeUsable() || typeof client.fd !== 'number' || client.fd < 0) return;
      const record: EarlyHandshake = { done: null as unknown as Promise<number>, stop: null, claimed: false };
      record.done = this.#serverHandshake(client.fd, (stop) => (record.stop = stop));
      record.done.catch(() => undefined);
      early.set(client, record);
    };
    handle.onconnection = function (this: unknown, err: unknown, client: { fd?: number } | undefined, ...rest: unknown[]): unknown {
      if (!err && client !== undefined && client !== null) begin(client);
      try {
        return (original as (...a: unknown[]) => unknown).call(this, err, client, ...rest);
      } finally {
        // Node closed the peer without a 'connection' (a handle it refused): the handshake lets go of it.
        const record = client === undefined || client === null ? undefined : early.get(client);
        if (record !== undefined && !record.claimed) {
          early.delete(client!);
          record.stop?.(dropped());
        }
      }
    };
  }

  #onConnection(socket: Socket): void {
    // Whatever this peer does from now on (reset, garbage, silence) is handled here: never an uncaught error.
    socket.on('error', () => undefined);
    const handle = (socket as unknown as { _handle?: object | null })._handle;
    const early = handle === undefined || handle === null ? undefined : this.#early.get(handle);
    if (early !== undefined) {
      this.#early.delete(handle!);
      early.claimed = true;
    }
    if (this.#closed) {
      early?.stop?.(dropped());
      socket.destroy();
      return;
    }
    socket.unref(); // a connection nobody accepted does not hold the process open
    if (this.#family === 'AF_INET') socket.setNoDelay(true);
    if (this.pending >= this.#maxPending) {
      const oldest = this.#handshaking.values().next().value;
      if (oldest === undefined) {
        // Everything held has passed its handshake: the application is not accepting. Refuse the newcomer.
        early?.stop?.(dropped());
        socket.destroy();
        return;
      }
      this.#drop(oldest, new OSError('dropped: the pending queue was full and a newer peer arrived', { code: 'PENDING_QUEUE_FULL' }));
    }
    const peer: Address = this.#family === 'AF_INET' ? tuple(socket.remoteAddress ?? '', socket.remotePort ?? 0) : '';
    const entry: Pending = { socket, conn: null, peer };
    if (this.#authkey === null) {
      this.#enqueue(entry);
      return;
    }
    if (early !== undefined) {
      entry.stop = early.stop ?? undefined;
      this.#handshaking.add(entry);
      void this.#handshakeNative(entry, early.done);
      return;
    }
    const fd = unreadFd(socket);
    if (fd >= 0 && nativeHandshakeUsable()) {
      this.#handshaking.add(entry);
      void this.#handshakeNative(entry, this.#serverHandshake(fd, (stop) => (entry.stop = stop)));
      return;
    }
    const conn = new Connection(socket, this.#connectionOptions);
    conn[kHoldsProcess] = false;
    conn[kReceiveLimit] = HANDSHAKE_LIMIT;
    entry.conn = conn;
    this.#handshaking.add(entry);
    void this.#handshake(entry, conn);
  }

  async #handshake(entry: Pending, conn: Connection): Promise<void> {
    const key = this.#authkey!;
    try {
      const body = (async () => {
        await deliverChallenge(conn, key, { digest: this.#digest });
        await answerChallenge(conn, key);
      })();
      await race(body, {
        seconds: this.#handshakeTimeout,
        onTimeout: () => new TimeoutError(`authentication timed out after ${this.#handshakeTimeout} s`),
        cleanup: () => conn.close(),
        ref: false,
      });
    } catch (e) {
      if (this.#handshaking.has(entry)) this.#drop(entry, e as Error);
      return;
    }
    if (!this.#handshaking.delete(entry)) return; // dropped meanwhile
    conn[kReceiveLimit] = null;
    this.#enqueue(entry);
  }

  /** The listener's side of a native handshake on `fd`; `onStart` receives what stops it. */
  #serverHandshake(fd: number, onStart: (stop: (reason: Error) => void) => void): Promise<number> {
    return handshakeNative(fd, this.#authkey!, { role: 'server', timeout: this.#handshakeTimeout, digest: this.#digest, ref: false, onStart });
  }

  /** The end of `entry`'s handshake run by the addon (handshakeNative): one call into JavaScript, not one per frame. */
  async #handshakeNative(entry: Pending, done: Promise<number>): Promise<void> {
    try {
      await done;
    } catch (e) {
      entry.stop = undefined;
      if (this.#handshaking.has(entry)) this.#drop(entry, e as Error);
      return;
    }
    entry.stop = undefined;
    if (!this.#handshaking.delete(entry)) return; // dropped meanwhile
    const conn = new Connection(entry.socket, this.#connectionOptions);
    conn[kHoldsProcess] = false;
    entry.conn = conn;
    this.#enqueue(entry);
  }

  /** Closes what `entry` holds (a native handshake on its socket is stopped first). */
  #release(entry: Pending): void {
    entry.stop?.(dropped());
    entry.stop = undefined;
    if (entry.conn !== null) entry.conn.close();
    else entry.socket.destroy();
  }

  /** Drops a connection held for accept() (closing it) and reports why. */
  #drop(entry: Pending, error: Error): void {
    this.#handshaking.delete(entry);
    const i = this.#ready.indexOf(entry);
    if (i >= 0) this.#ready.splice(i, 1);
    this.#release(entry);
    if (!this.#closed) this.emit('handshakeError', error, entry.peer);
  }

  #enqueue(entry: Pending): void {
    const w = this.#waiters.shift();
    this.#refresh();
    if (w !== undefined) w.resolve(entry);
    else this.#ready.push(entry);
  }

  /** Out of descriptors: give up the oldest handshake so that the next connection can be taken. */
  #onServerError(e: Error): void {
    const code = (e as { code?: string }).code;
    if (code !== 'EMFILE' && code !== 'ENFILE') return;
    const oldest = this.#handshaking.values().next().value;
    if (oldest !== undefined) this.#drop(oldest, new OSError(`dropped: out of file descriptors (${code})`, { code }));
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
   * The next connection, after its handshake when the listener has a key.
   * Peers that fail their handshake never reach it (see `'handshakeError'`).
   * Rejects with OSError `LISTENER_CLOSED` once the listener is closed, and
   * with the signal's reason when `signal` aborts.
   */
  async accept(options?: { signal?: AbortSignal }): Promise<Connection> {
    await this.ready;
    if (this.#closed) throw new OSError('listener is closed', { code: 'LISTENER_CLOSED' });
    const entry = this.#ready.shift() ?? (await this.#nextReady(options?.signal));
    this.#lastAccepted = entry.peer;
    const conn = entry.conn ?? new Connection(entry.socket, this.#connectionOptions);
    conn[kHoldsProcess] = true;
    return conn;
  }

  #nextReady(signal: AbortSignal | undefined): Promise<Pending> {
    signal?.throwIfAborted();
    return new Promise<Pending>((resolve, reject) => {
      const waiter = {
        resolve: (p: Pending) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(p);
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

  /**
   * Stops listening (idempotent). Connections not yet accepted are closed,
   * pending accepts fail, and the socket file this listener made is removed
   * (only that one: not a file of the same name another listener made).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const e of [...this.#handshaking, ...this.#ready.splice(0)]) this.#release(e);
    this.#handshaking.clear();
    for (const w of this.#waiters.splice(0)) w.reject(new OSError('listener is closed', { code: 'LISTENER_CLOSED' }));
    const own = this.#ownPath;
    if (own !== null) {
      this.#ownPath = null;
      try {
        if (statSync(own.path).ino === own.ino) unlinkSync(own.path);
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

const CLIENT_OPTIONS = optionNames<ClientOptions>()({ family: 1, authkey: 1, timeout: 1, signal: 1, digest: 1, connection: 1 });

/** Backoff while an AF_UNIX listener's accept queue is full (Python's default backlog is 1), in seconds. */
const EAGAIN_FIRST_DELAY = 0.001;
const EAGAIN_MAX_DELAY = 0.05;

/**
 * A connected socket that has read nothing: it is paused before it
 * connects, so that Node does not start reading it (a native handshake
 * reads it first; Connection resumes it).
 */
function connectSocket(options: { host?: string; port?: number; path?: string }): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = new Socket({ allowHalfOpen: true });
    socket.pause();
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

/**
 * The descriptor of a socket Node has not started reading (paused before
 * it connected, or a server's pauseOnConnect), or -1: only then may a
 * native handshake read it.
 */
function unreadFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number; reading?: boolean } })._handle;
  if (handle === undefined || handle === null || typeof handle.fd !== 'number' || handle.fd < 0) return -1;
  if (handle.reading === true || socket.readableFlowing !== false || socket.readableLength > 0) return -1;
  return handle.fd;
}

function deadlineError(address: Address): TimeoutError {
  return new TimeoutError(`connecting to ${String(address)} timed out`);
}

async function connectTo(address: Address, family: Family, deadline: number | null, signal: AbortSignal | undefined): Promise<Socket> {
  if (family === 'AF_INET') {
    const [host, port] = address as readonly [string, number];
    let socket: Socket;
    try {
      socket = await connectSocket({ host, port });
    } catch (e) {
      // As Python's ConnectionRefusedError/ConnectionResetError/gaierror: OSErrors with the errno's code.
      const code = (e as { code?: string }).code;
      throw new OSError(`cannot connect to ${host}:${port}: ${(e as Error).message}`, { code: code ?? 'OSERROR', cause: e });
    }
    socket.setNoDelay(true);
    return socket;
  }
  let delay = EAGAIN_FIRST_DELAY;
  for (;;) {
    signal?.throwIfAborted();
    try {
      if (isAbstract(address)) {
        const { fd, inProgress } = unixConnect(abstractBytes(address));
        // pauseOnCreate (Node's own option for a server's pauseOnConnect): not read before a native handshake.
        if (!inProgress) return new Socket({ fd, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0]);
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
      if (deadline !== null && performance.now() + delay * 1000 > deadline) throw deadlineError(address);
      await sleep(delay, { signal });
      delay = Math.min(delay * 2, EAGAIN_MAX_DELAY);
    }
  }
}

/**
 * Connects to a Listener (Python's `Client`): answers then delivers the
 * handshake when a key is given, and returns the connection. `timeout`
 * (seconds) covers connecting and the handshake together; `signal` aborts
 * either.
 */
export async function Client(address: Address, options?: ClientOptions): Promise<Connection> {
  checkOptionNames(options, CLIENT_OPTIONS, 'Client()');
  const family = checkFamily(address, options?.family);
  const authkey = checkAuthkey(options?.authkey);
  const timeout = seconds(options?.timeout, 'options.timeout');
  const deadline = timeout === null ? null : performance.now() + timeout * 1000;
  const signal = options?.signal;
  if (authkey !== null && family === 'AF_INET' && nativeHandshakeUsable()) {
    const [host, port] = address as readonly [string, number];
    // A dotted IPv4 address (as a Listener reports its own): the addon connects and handshakes.
    if (typeof host === 'string' && isIPv4(host) && Number.isInteger(port) && port > 0 && port < 65536) {
      let fd: number;
      try {
        fd = await handshakeNative([host, port], authkey, { role: 'client', timeout, signal, digest: options?.digest ?? 'sha256' });
      } catch (e) {
        if (!(e instanceof NativeConnectError)) throw e;
        if (e.code === 'TIMEOUT') throw deadlineError(address);
        // As Node reports a refused connect, and connectTo() wraps it.
        throw new OSError(`cannot connect to ${host}:${port}: connect ${e.code} ${host}:${port}`, { code: e.code, cause: e });
      }
      const socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0]);
      return new Connection(socket, options?.connection);
    }
  }
  const connecting = connectTo(address, family, deadline, signal);
  const socket = await race(connecting, {
    seconds: timeout,
    signal,
    onTimeout: () => deadlineError(address),
    // Should it connect after all, the socket is not kept.
    cleanup: () => void connecting.then((s) => s.destroy(), () => undefined),
  });
  const fd = authkey === null ? -1 : unreadFd(socket);
  if (authkey !== null && fd >= 0 && nativeHandshakeUsable()) {
    const left = deadline === null ? null : Math.max(0, (deadline - performance.now()) / 1000);
    try {
      await handshakeNative(fd, authkey, { role: 'client', timeout: left, signal, digest: options?.digest ?? 'sha256' });
    } catch (e) {
      socket.destroy();
      throw e;
    }
    return new Connection(socket, options?.connection);
  }
  const conn = new Connection(socket, options?.connection);
  if (authkey !== null) {
    const left = deadline === null ? null : Math.max(0, (deadline - performance.now()) / 1000);
    const hs = { timeout: left, signal };
    conn[kReceiveLimit] = HANDSHAKE_LIMIT;
    try {
      await answerChallenge(conn, authkey, hs);
      await deliverChallenge(conn, authkey, { ...hs, digest: options?.digest ?? 'sha256' });
    } catch (e) {
      conn.close();
      throw e;
    }
    conn[kReceiveLimit] = null;
  }
  return conn;
}
