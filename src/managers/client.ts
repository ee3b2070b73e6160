/**
 * The client side of the manager protocol's connections (spec/manager.md
 * §1.5): one-shot control connections, and the serving connections proxies
 * call methods on.
 *
 * Python keeps one serving connection per (process, thread, manager
 * address). Node has no threads, so a {@link ServingPool} keeps a set per
 * (manager address, authkey): a call borrows an idle connection or opens a
 * new one (handshake, then `accept_connection`), and gives it back when the
 * reply is in. Sequential calls therefore reuse one connection, and
 * concurrent calls get one each, so a blocking `get()` never stalls another
 * caller's call, as with Python's threads. A {@link Channel} is one
 * connection held by one owner (the proxies of RLock and Condition, whose
 * server-side owner is the serving connection).
 */

import { Client, EOFError, OSError, type Address, type Connection, type DigestName } from '../connection/index.js';
import { kSendNow } from '../connection/connection.js';
import { PicklingError, UnpicklingError } from '../pickle/index.js';
import { loadLimitsKey, type LoadLimits } from '../pickle/unpickler.js';
import { currentProcess } from '../process/index.js';
import { convertToError, dispatch, request, RETURN, splitReply, type Kwds } from './protocol.js';
import { addressKey } from './token.js';

/** How to reach a manager: its address and key, and how to connect. */
export interface Endpoint {
  address: Address;
  authkey: Uint8Array;
  /** The challenge form this side sends (default `'sha256'`; billiard and 3.11 servers answer it with MD5, which is accepted). */
  digest?: DigestName | 'legacy';
  /** Seconds for connecting plus the handshake; default 60. */
  connectTimeout?: number | null;
  /** Limits on loading the server's replies (checked), over the unpickler's defaults. */
  loadLimits?: Readonly<LoadLimits>;
}

const DEFAULT_CONNECT_TIMEOUT = 60;
/** Idle serving connections kept per pool beyond this many are closed. */
const MAX_IDLE = 16;

function connectOptions(ep: Endpoint): Parameters<typeof Client>[1] {
  return {
    authkey: ep.authkey,
    digest: ep.digest,
    timeout: ep.connectTimeout === undefined ? DEFAULT_CONNECT_TIMEOUT : ep.connectTimeout,
    connection: ep.loadLimits === undefined ? undefined : { loadOptions: ep.loadLimits },
  };
}

/**
 * One control call (`dummy`, `create`, `incref`, `decref`, `get_methods`,
 * `debug_info`, `number_of_objects`, `shutdown`): connects, authenticates,
 * sends one request, reads one reply, closes.
 */
export async function controlCall(ep: Endpoint, methodname: string, args: readonly unknown[] = [], kwds?: Kwds | null): Promise<unknown> {
  const conn = await Client(ep.address, connectOptions(ep));
  try {
    return await dispatch(conn, null, methodname, args, kwds);
  } catch (e) {
    throw brokenConnection(e);
  } finally {
    conn.close();
  }
}

/** What a proxy call may carry besides its arguments. */
export interface CallOptions {
  /**
   * Gives up waiting for the reply: the connection is closed (the server
   * sees the caller leave; a billiard-ts server cancels the call, a Python
   * server finishes it and drops its result) and the call rejects.
   */
  signal?: AbortSignal;
}

/** A serving connection's reply: `[kind, payload]`, already checked to be a pair. */
export type Reply = [kind: unknown, payload: unknown];

let callerNames = 0;

async function openServing(ep: Endpoint): Promise<Connection> {
  const conn = await Client(ep.address, connectOptions(ep));
  const n = ++callerNames;
  const name = n === 1 ? currentProcess().name : `${currentProcess().name}|Caller-${n}`;
  try {
    await dispatch(conn, null, 'accept_connection', [name]);
  } catch (e) {
    conn.close();
    throw e;
  }
  return conn;
}

/** Sends one request on a serving connection and reads its reply. A decode error leaves the connection usable (its frame was read). */
async function exchange(conn: Connection, ident: string, methodname: string, args: readonly unknown[], kwds: Kwds | null | undefined, options: CallOptions | undefined): Promise<Reply> {
  // The request is not waited for as a write: the reply is what is waited for (a full socket buffer still is).
  const pending = conn[kSendNow](request(ident, methodname, args, kwds));
  if (pending !== null) await pending;
  return splitReply(await conn.recv(options?.signal === undefined ? undefined : { signal: options.signal }));
}

/**
 * Is the connection still in step after `e`: a request that would not
 * pickle (nothing was written), or a reply that arrived but would not decode?
 */
function inStep(e: unknown): boolean {
  return e instanceof PicklingError || e instanceof UnpicklingError || (e instanceof Error && e.name === 'ValueError' && String(e.message).startsWith('malformed reply'));
}

function brokenConnection(e: unknown): Error {
  if (e instanceof EOFError) return new EOFError('the manager closed the connection during a call (did the server die?)', { code: 'EOF', cause: e });
  // A server that died with our request unread resets the connection instead (Python: ConnectionResetError).
  if (e instanceof OSError && (e.code === 'ECONNRESET' || e.code === 'EPIPE' || e.code === 'BROKEN_PIPE')) {
    return new OSError('the manager reset the connection during a call (did the server die?)', { code: e.code, cause: e });
  }
  return e as Error;
}

/** The serving connections of one manager (address and key). */
export class ServingPool {
  readonly endpoint: Endpoint;
  readonly #idle: Connection[] = [];
  /** Proxies that use this pool; when the last goes, idle connections close (as Python closes the thread's connection after the last decref). */
  #users = 0;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  /** Calls `methodname` on object `ident` on an idle (or new) serving connection. */
  async call(ident: string, methodname: string, args: readonly unknown[], kwds?: Kwds | null, options?: CallOptions): Promise<Reply> {
    options?.signal?.throwIfAborted();
    let conn = this.#idle.pop();
    while (conn !== undefined && conn.closed) conn = this.#idle.pop();
    conn ??= await openServing(this.endpoint);
    let reply: Reply;
    try {
      reply = await exchange(conn, ident, methodname, args, kwds, options);
    } catch (e) {
      if (inStep(e) && !conn.closed) this.#giveBack(conn);
      else conn.close();
      throw brokenConnection(e);
    }
    this.#giveBack(conn);
    return reply;
  }

  #giveBack(conn: Connection): void {
    if (this.#users > 0 && this.#idle.length < MAX_IDLE) this.#idle.push(conn);
    else conn.close();
  }

  /** A connection of its own for one owner. */
  channel(): Channel {
    return new Channel(this.endpoint);
  }

  addUser(): void {
    this.#users++;
  }

  removeUser(): void {
    if (--this.#users <= 0) {
      this.#users = 0;
      this.closeIdle();
    }
  }

  /** Closes the idle connections. */
  closeIdle(): void {
    for (const c of this.#idle.splice(0)) c.close();
  }
}

/** One serving connection with one owner; its calls run one after another, as a Python thread's do. */
export class Channel {
  readonly #endpoint: Endpoint;
  #conn: Promise<Connection> | null = null;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(endpoint: Endpoint) {
    this.#endpoint = endpoint;
  }

  call(ident: string, methodname: string, args: readonly unknown[], kwds?: Kwds | null, options?: CallOptions): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      options?.signal?.throwIfAborted();
      this.#conn ??= openServing(this.#endpoint);
      const pending = this.#conn;
      let conn: Connection;
      try {
        conn = await pending;
      } catch (e) {
        if (this.#conn === pending) this.#conn = null;
        throw e;
      }
      try {
        return await exchange(conn, ident, methodname, args, kwds, options);
      } catch (e) {
        if (!inStep(e)) {
          conn.close();
          if (this.#conn === pending) this.#conn = null;
        }
        throw brokenConnection(e);
      }
    };
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  close(): void {
    const c = this.#conn;
    this.#conn = null;
    void c?.then((conn) => conn.close(), () => undefined);
  }
}

const pools = new Map<string, ServingPool>();

function keyHex(key: Uint8Array): string {
  return Buffer.from(key).toString('hex');
}

/** The pool of serving connections for a manager (one per address and key in this process). */
export function poolFor(ep: Endpoint): ServingPool {
  const k = `${addressKey(ep.address)}|${keyHex(ep.authkey)}|${loadLimitsKey(ep.loadLimits)}`;
  let p = pools.get(k);
  if (p === undefined) {
    p = new ServingPool(ep);
    pools.set(k, p);
  }
  return p;
}

/** Forgets the pools of a manager address (after it was shut down). */
export function dropPools(address: Address): void {
  const prefix = `${addressKey(address)}|`;
  for (const [k, p] of pools) {
    if (k.startsWith(prefix)) {
      p.closeIdle();
      pools.delete(k);
    }
  }
}

/** A `#RETURN` payload, or the error the reply stands for (`#PROXY` is the caller's to handle first). */
export function unwrap(reply: Reply): unknown {
  const [kind, payload] = reply;
  if (kind === RETURN) return payload;
  throw convertToError(kind, payload);
}
