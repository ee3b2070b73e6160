/**
 * The load processes of `npm run soak:manager` (bench/soak-manager.ts): each
 * one connects to the manager server under test and makes its share of the
 * requests, good proxy calls mixed with malformed requests on raw
 * connections, one after another. It sends its counts back as a JSON string
 * over the Pipe end it was given.
 *
 * This module is what the load processes import to find `soakClient`: it
 * does nothing on import.
 */
import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';

import { AuthenticationError, Client, SyncManager, tuple, type Address, type Connection } from '../src/index.js';

/** Good requests: proxy calls whose answers are checked. */
export const GOOD_KINDS = ['dict set+get', 'queue put+get', 'list append+len', 'create+use+decref'] as const;

/** Malformed requests, each on a connection of its own. */
export const BAD_KINDS = [
  'control: garbage bytes',
  'control: pickled non-tuple',
  'control: 3-tuple',
  'control: unknown public method',
  'serving: garbage bytes',
  'serving: pickled non-tuple',
  'serving: unknown ident',
  'serving: non-str method name',
  'serving: method not exposed',
  'serving: args not a tuple',
  'serving: kwds not a dict',
  'hang up during a blocking get',
  'connect, never handshake',
  'wrong authkey',
  'oversize length prefix',
] as const;

/** Good kinds weigh 4 each, malformed ones 1: about half the requests are good. */
export const SCHEDULE: readonly string[] = [...GOOD_KINDS.flatMap((k) => [k, k, k, k]), ...BAD_KINDS];

export interface ClientReport {
  worker: number;
  pid: number;
  /** Requests sent, by kind. */
  sent: Record<string, number>;
  /** Good requests answered with the right value; malformed ones rejected as expected. */
  ok: Record<string, number>;
  /** Good requests answered with a wrong value; malformed ones answered other than expected. */
  wrong: Record<string, number>;
  /** Exceptions that were not the expected outcome, by `kind: error`. */
  errors: Record<string, number>;
  /** The first few wrong answers and errors, in full. */
  samples: string[];
  /** The server's replies to malformed requests, by reply kind (`#TRACEBACK`, `#ERROR`, `closed`...). */
  replies: Record<string, number>;
  /** Milliseconds spent on each kind, in total. */
  ms: Record<string, number>;
  seconds: number;
}

class Wrong extends Error {
  override name = 'WrongAnswer';
}

const EMPTY = new Map<string, unknown>();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function deadline<T>(p: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error(`no answer in ${seconds} s`), { name: 'HUNG' })), seconds * 1000)))]).finally(() =>
    clearTimeout(timer),
  );
}

const show = (v: unknown): string => {
  try {
    return JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x instanceof Uint8Array ? `<${x.length} bytes>` : x))?.slice(0, 200) ?? String(v);
  } catch {
    return String(v);
  }
};

/** A connection made serving by `accept_connection`. */
async function serving(address: Address, authkey: Uint8Array): Promise<Connection> {
  const conn = await Client(address, { authkey });
  await conn.send(tuple(null, 'accept_connection', tuple('soak'), EMPTY));
  const r = (await conn.recv()) as unknown[];
  if (r[0] !== '#RETURN' || r[1] !== null) {
    conn.close();
    throw new Wrong(`accept_connection answered ${show(r)}`);
  }
  return conn;
}

/** A reply that rejects a malformed request: ('#TRACEBACK', str) or ('#ERROR', exception). */
function rejection(reply: unknown): string {
  if (!Array.isArray(reply) || reply.length !== 2) throw new Wrong(`not a 2-tuple reply: ${show(reply)}`);
  const [kind, payload] = reply as [unknown, unknown];
  if (kind === '#TRACEBACK' && typeof payload === 'string') return kind;
  if (kind === '#ERROR' && payload instanceof Error) return kind;
  throw new Wrong(`expected #TRACEBACK or #ERROR, got ${show(kind)} ${show(payload)}`);
}

/** The connection is closed by the server (or reset) within `seconds`. */
async function closedByServer(conn: Connection, seconds: number): Promise<void> {
  try {
    const extra = await deadline(conn.recv(), seconds);
    throw new Wrong(`the server sent ${show(extra)} instead of closing`);
  } catch (e) {
    if (e instanceof Wrong || (e as Error).name === 'HUNG') throw e;
  }
}

export async function soakClient(address: Address, authkey: Uint8Array, worker: number, count: number, out: { send(v: unknown): Promise<void> }): Promise<void> {
  const t0 = performance.now();
  const report: ClientReport = { worker, pid: process.pid, sent: {}, ok: {}, wrong: {}, errors: {}, samples: [], replies: {}, ms: {}, seconds: 0 };
  const bump = (r: Record<string, number>, k: string): void => void (r[k] = (r[k] ?? 0) + 1);

  const m = new SyncManager({ address, authkey });
  await m.connect();
  const d = await m.dict();
  await d.setItem('fixed', `worker-${worker}`);
  const q = await m.Queue();
  const hq = await m.Queue(); // stays empty but for the checks after each hang-up
  const l = await m.list();
  let listLen = 0;
  const did = d._token.id;

  /** The serving connection still answers a good request after a bad one. */
  const stillServes = async (conn: Connection): Promise<void> => {
    await conn.send(tuple(did, '__getitem__', tuple('fixed'), EMPTY));
    const r = (await conn.recv()) as unknown[];
    if (r[0] !== '#RETURN' || r[1] !== `worker-${worker}`) throw new Wrong(`after a bad request the connection answered ${show(r)}`);
  };

  /** One bad request on a fresh serving connection, its rejection, then a good one on the same connection. */
  const servingBad = async (request: unknown): Promise<string> => {
    const conn = await serving(address, authkey);
    try {
      await (request instanceof Uint8Array ? conn.sendBytes(request) : conn.send(request));
      const kind = rejection(await conn.recv());
      await stillServes(conn);
      return kind;
    } finally {
      conn.close();
    }
  };

  /** One bad request on a fresh control connection: a rejection, then the server closes. */
  const controlBad = async (request: unknown): Promise<string> => {
    const conn = await Client(address, { authkey });
    try {
      await (request instanceof Uint8Array ? conn.sendBytes(request) : conn.send(request));
      const kind = rejection(await conn.recv());
      await closedByServer(conn, 10);
      return kind;
    } finally {
      conn.close();
    }
  };

  const garbage = (): Uint8Array => {
    const b = randomBytes(8 + Math.floor(Math.random() * 200));
    b[0] = 0xff; // not an opcode: 'invalid load key'
    return b;
  };

  const run: Record<string, (i: number) => Promise<string | void>> = {
    async 'dict set+get'(i) {
      const key = `k${i % 64}`;
      const value = i % 3 === 0 ? i * 7 : `w${worker}:${i}:${'x'.repeat(i % 17)}`;
      await d.setItem(key, value);
      const got = await d.getItem(key);
      if (got !== value) throw new Wrong(`d[${key}] = ${show(value)} read back ${show(got)}`);
    },
    async 'queue put+get'(i) {
      const item = `q${worker}:${i}`;
      await q.put(item);
      const got = await q.get({ timeout: 10 });
      if (got !== item) throw new Wrong(`put ${show(item)}, got ${show(got)}`);
    },
    async 'list append+len'(i) {
      await l.append(i);
      listLen++;
      const n = await l.len();
      if (n !== listLen) throw new Wrong(`list length ${show(n)} after ${listLen} appends`);
    },
    async 'create+use+decref'(i) {
      const x = await m.dict({ i });
      try {
        const got = await x.getItem('i');
        if (got !== i) throw new Wrong(`dict({i: ${i}})['i'] read back ${show(got)}`);
        await x.setItem('j', i + 1);
        const n = await x.len();
        if (n !== 2) throw new Wrong(`len ${show(n)}, expected 2`);
      } finally {
        await x._decref();
      }
    },
    'control: garbage bytes': () => controlBad(garbage()),
    'control: pickled non-tuple': () => controlBad('hello'),
    'control: 3-tuple': () => controlBad(tuple(null, 'dummy', tuple())),
    'control: unknown public method': () => controlBad(tuple(null, 'foo', tuple(), EMPTY)),
    'serving: garbage bytes': () => servingBad(garbage()),
    'serving: pickled non-tuple': () => servingBad(tuple('hello', 'world')),
    'serving: unknown ident': () => servingBad(tuple(`no-such-id-${worker}`, '__len__', tuple(), EMPTY)),
    'serving: non-str method name': () => servingBad(tuple(did, 42, tuple(), EMPTY)),
    'serving: method not exposed': () => servingBad(tuple(did, '__init__', tuple(), EMPTY)),
    'serving: args not a tuple': () => servingBad(tuple(did, '__getitem__', 5, EMPTY)),
    'serving: kwds not a dict': () => servingBad(tuple(did, '__getitem__', tuple('fixed'), [1, 2])),
    async 'hang up during a blocking get'(i) {
      const conn = await serving(address, authkey);
      await conn.send(tuple(hq._token.id, 'get', tuple(), EMPTY));
      await sleep(5);
      conn.close();
      // The departed waiter must not take the next item (spec §9.3: cancel the pending get).
      await sleep(20);
      const item = `h${worker}:${i}`;
      await hq.put(item);
      const got = await hq.get({ timeout: 5 }).catch((e: Error) => {
        throw new Wrong(`after a hang-up, put ${show(item)} then get failed: ${e.name}: ${e.message}`);
      });
      if (got !== item) throw new Wrong(`after a hang-up, put ${show(item)}, got ${show(got)}`);
      return 'closed by us';
    },
    async 'connect, never handshake'() {
      const [host, port] = address as [string, number];
      const s = createConnection(port, host);
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      await new Promise<void>((r) => s.once('connect', () => r()).once('close', () => r()));
      await sleep(50);
      s.destroy();
      return 'closed by us';
    },
    async 'wrong authkey'() {
      try {
        const c = await Client(address, { authkey: randomBytes(32) });
        c.close();
      } catch (e) {
        if (e instanceof AuthenticationError) return 'AuthenticationError';
        throw e;
      }
      throw new Wrong('a wrong authkey was accepted');
    },
    async 'oversize length prefix'() {
      const conn = await serving(address, authkey);
      try {
        const closed = new Promise<string>((r) => {
          conn.stream.once('end', () => r('closed')).once('close', () => r('closed'));
          conn.stream.once('error', (e: NodeJS.ErrnoException) => r(`closed (${e.code ?? e.name})`));
        });
        conn.stream.resume();
        conn.stream.write(new Uint8Array([0x7f, 0xff, 0xff, 0xff, ...randomBytes(60)])); // 2 GiB - 1 announced
        return await deadline(closed, 10);
      } finally {
        conn.close();
      }
    },
  };

  for (let i = 0; i < count; i++) {
    const kind = SCHEDULE[(i * 7 + worker * 13) % SCHEDULE.length]!;
    bump(report.sent, kind);
    const t = performance.now();
    try {
      const reply = await deadline(run[kind]!(i), 30);
      bump(report.ok, kind);
      if (typeof reply === 'string') bump(report.replies, reply);
    } catch (e) {
      const err = e as Error;
      if (err instanceof Wrong) bump(report.wrong, kind);
      else bump(report.errors, `${kind}: ${err.name}${(err as NodeJS.ErrnoException).code ? ` ${(err as NodeJS.ErrnoException).code}` : ''}`);
      if (report.samples.length < 10) report.samples.push(`worker ${worker} request ${i} (${kind}): ${err.name}: ${err.message}`);
    }
    report.ms[kind] = (report.ms[kind] ?? 0) + performance.now() - t;
  }

  // A good client releases everything it created.
  for (const p of [d, q, hq, l]) await p._decref();
  report.seconds = (performance.now() - t0) / 1000;
  await out.send(JSON.stringify(report));
}
