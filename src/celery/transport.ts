/**
 * kombu's Redis transport (spec/celery.md sections 1, 2 and 4): queues as
 * lists per priority step, bindings as sets, delivered-but-unacknowledged
 * messages in the `unacked` hash and `unacked_index` sorted set, the
 * visibility sweep, fanout exchanges over pub/sub.
 *
 * Connections (2.1): `commands` for everything short, `blocking` for BRPOP
 * only, `tx` for the WATCH transactions (a WATCH belongs to a connection,
 * so they run one at a time on their own), `subscriber` for PSUBSCRIBE.
 */
import { randomBytes } from 'node:crypto';

import { Redis, type RedisOptions } from 'ioredis';

import { pyJsonDumps, pyJsonLoads } from './pyjson.js';

/** kombu's Redis transport options, camelCase, durations in seconds. */
export interface TransportOptions {
  /** The separator inside binding members and step keys (default `\x06\x16`). */
  sep?: string;
  /** Priority steps (default [0, 3, 6, 9]). */
  prioritySteps?: readonly number[];
  /** Seconds before an unacknowledged message is restored by a sweep (default 3600). */
  visibilityTimeout?: number;
  unackedKey?: string;
  unackedIndexKey?: string;
  unackedMutexKey?: string;
  /** Seconds the sweep's lock lives (default 300). */
  unackedMutexExpire?: number;
  /** Prefix fanout channels with `/<db>.` (default true). */
  fanoutPrefix?: boolean;
  /** Append `/<routing key>` to fanout channels (default true). */
  fanoutPatterns?: boolean;
  /** Prefixes every key and channel (default ''). */
  globalKeyprefix?: string;
  /** BRPOP's timeout in seconds (default 1). */
  pollingInterval?: number;
  /** `round_robin` (default): the queue that delivered goes to the end; `priority`: the given order always. */
  queueOrderStrategy?: 'round_robin' | 'priority';
}

/** What a BRPOP gave. */
export interface Delivery {
  queue: string;
  raw: Buffer;
  /** Set when the message was already recorded in `unacked` under this tag, as its bytes (see {@link RedisTransport.popMany}). */
  recordedTag?: Buffer | null;
  /**
   * Set when {@link RedisTransport.popMany} left the message's bytes in
   * Redis because there were more than `maxBytes` of them: their number
   * (`raw` is then empty; the bytes are in the dead-letter list, if any).
   */
  oversize?: number;
}

/** The compare-and-delete that releases the sweep's lock (kombu's, by effect). */
const RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/**
 * Takes up to ARGV[1] messages at once, in BRPOP's order (step-major, the
 * queues rotated round robin after each message), and records each in
 * `unacked`/`unacked_index` in the same atomic step, so that none is ever
 * popped without being recorded. A message over ARGV[4] bytes (0: no
 * limit) is neither decoded nor recorded nor returned: it goes to the
 * dead-letter list KEYS[3] when ARGV[5] is '1', and its size comes back in
 * place of its bytes. KEYS: unacked, unacked_index, the dead-letter list (or
 * any key when there is none), then each queue's step lists (queue-major).
 * ARGV: count, steps, queues, max bytes, dead-letter flag. Returns a flat
 * list of (queue number, delivery tag or '' when it could not be recorded,
 * raw bytes or the size of a message over the limit).
 */
const POP_BATCH = `
local count, nsteps, nqueues = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local maxbytes, dead = tonumber(ARGV[4]), ARGV[5] == '1'
local order = {}
for i = 1, nqueues do order[i] = i end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for n = 1, count do
  local got, at = nil, nil
  for s = 1, nsteps do
    for oi = 1, nqueues do
      local v = redis.call('RPOP', KEYS[3 + (order[oi] - 1) * nsteps + s])
      if v then got = v; at = oi; break end
    end
    if got then break end
  end
  if not got then break end
  local q = order[at]
  table.remove(order, at)
  table.insert(order, q)
  if maxbytes > 0 and #got > maxbytes then
    if dead then redis.call('LPUSH', KEYS[3], got) end
    out[#out + 1] = q
    out[#out + 1] = ''
    out[#out + 1] = #got
  else
    local tag = ''
    local ok, env = pcall(cjson.decode, got)
    if ok and type(env) == 'table' and type(env.properties) == 'table' then
      local p = env.properties
      local di = p.delivery_info
      if type(p.delivery_tag) == 'string' and p.delivery_tag ~= '' and type(di) == 'table' and type(di.exchange) == 'string' and type(di.routing_key) == 'string' then
        redis.call('ZADD', KEYS[2], now, p.delivery_tag)
        redis.call('HSET', KEYS[1], p.delivery_tag, '[' .. got .. ', ' .. cjson.encode(di.exchange) .. ', ' .. cjson.encode(di.routing_key) .. ']')
        tag = p.delivery_tag
      end
    end
    out[#out + 1] = q
    out[#out + 1] = tag
    out[#out + 1] = got
  end
end
return out
`;

/** Acknowledges the tags in ARGV: out of `unacked` (KEYS[1]) and `unacked_index` (KEYS[2]) in one atomic step. */
const ACK_MANY = `
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('HDEL', KEYS[1], unpack(ARGV))
return #ARGV
`;

/** The DB number of a redis:// URL (its path), for the fanout prefix. */
export function urlDb(url: string): number {
  const u = new URL(url);
  const m = /^\/?(\d+)/.exec(u.pathname);
  const db = u.searchParams.get('db');
  return m ? Number(m[1]) : db !== null && /^\d+$/.test(db) ? Number(db) : 0;
}

/** An ioredis client for a redis:// or rediss:// URL. */
export function connect(url: string, extra?: RedisOptions): Redis {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new TypeError(`not a Redis URL: ${url} (redis://host:port/db or rediss://...)`);
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: null, enableReadyCheck: true, ...extra });
}

export class RedisTransport {
  readonly url: string;
  readonly db: number;
  readonly sep: string;
  readonly steps: readonly number[];
  readonly visibilityTimeout: number;
  readonly unackedKey: string;
  readonly unackedIndexKey: string;
  readonly unackedMutexKey: string;
  readonly unackedMutexExpire: number;
  readonly pollingInterval: number;
  readonly keyprefix: string;
  readonly fanoutPrefix: string;
  readonly fanoutPatterns: boolean;
  readonly roundRobin: boolean;
  readonly commands: Redis;
  #blocking: Redis | null = null;
  #tx: Redis | null = null;
  #txChain: Promise<unknown> = Promise.resolve();
  #subscriber: Redis | null = null;
  #declared = new Set<string>();
  #patterns = new Map<string, (channel: string, message: Buffer) => void>();
  #closed = false;
  #down = false;
  /** Told when a connection to the broker fails (once until one is ready again). */
  onConnectionError: ((e: Error) => void) | null = null;

  constructor(url: string, options?: TransportOptions) {
    this.url = url;
    this.db = urlDb(url);
    this.sep = options?.sep ?? '\x06\x16';
    this.steps = [...(options?.prioritySteps ?? [0, 3, 6, 9])].sort((a, b) => a - b);
    this.visibilityTimeout = options?.visibilityTimeout ?? 3600;
    this.unackedKey = options?.unackedKey ?? 'unacked';
    this.unackedIndexKey = options?.unackedIndexKey ?? 'unacked_index';
    this.unackedMutexKey = options?.unackedMutexKey ?? 'unacked_mutex';
    this.unackedMutexExpire = options?.unackedMutexExpire ?? 300;
    this.pollingInterval = options?.pollingInterval ?? 1;
    this.keyprefix = options?.globalKeyprefix ?? '';
    this.fanoutPrefix = options?.fanoutPrefix === false ? '' : `/${this.db}.`;
    this.fanoutPatterns = options?.fanoutPatterns ?? true;
    this.roundRobin = (options?.queueOrderStrategy ?? 'round_robin') === 'round_robin';
    // Commands issued in one tick of the event loop go out in one write.
    this.commands = this.#connection({ enableAutoPipelining: true });
    // ioredis sends it with EVALSHA, loading it on NOSCRIPT.
    this.commands.defineCommand('popBatch', { lua: POP_BATCH });
    this.commands.defineCommand('ackMany', { lua: ACK_MANY, numberOfKeys: 2 });
  }

  #connection(extra?: RedisOptions): Redis {
    const r = connect(this.url, { ...(this.keyprefix ? { keyPrefix: this.keyprefix } : {}), ...extra });
    // ioredis reconnects by itself; the listener keeps a lost broker from
    // crashing the process and tells `onConnectionError` (once per outage).
    r.on('error', (e: Error) => {
      if (this.#down) return;
      this.#down = true;
      this.onConnectionError?.(e);
    });
    r.on('ready', () => (this.#down = false));
    return r;
  }

  get blocking(): Redis {
    this.#blocking ??= this.#connection();
    return this.#blocking;
  }

  /** The list of `queue` at priority step `step`. */
  stepKey(queue: string, step: number): string {
    return step === 0 ? queue : `${queue}${this.sep}${step}`;
  }

  /** The step a priority (clamped to 0..9) falls in: the largest step not above it. */
  stepOf(priority: number): number {
    const p = Math.max(0, Math.min(9, Math.trunc(priority)));
    let step = this.steps[0] ?? 0;
    for (const s of this.steps) if (s <= p) step = s;
    return step;
  }

  /** Declares `queue` bound to the direct exchange of the same name (kombu's SADD, once per process). */
  async declareQueue(queue: string, exchange = queue, routingKey = queue): Promise<void> {
    const member = `${routingKey}${this.sep}${this.sep}${queue}`;
    const key = `_kombu.binding.${exchange}\0${member}`;
    if (this.#declared.has(key)) return;
    await this.commands.sadd(`_kombu.binding.${exchange}`, member);
    this.#declared.add(key);
  }

  /** Removes a binding (a worker's pidbox queue at shutdown, a client's reply queue). */
  async undeclare(exchange: string, member: string): Promise<void> {
    await this.commands.srem(`_kombu.binding.${exchange}`, member);
  }

  /** LPUSHes a message to `queue` at its priority's step (the back of the line). */
  async push(queue: string, text: string, priority = 0): Promise<void> {
    await this.commands.lpush(this.stepKey(queue, this.stepOf(priority)), text);
  }

  /** Publishes to a direct exchange: every queue bound with this routing key gets a copy (kombu's lookup). Returns how many. */
  async publishDirect(exchange: string, routingKey: string, text: string): Promise<number> {
    const members = await this.commands.smembers(`_kombu.binding.${exchange}`);
    let n = 0;
    for (const m of members) {
      const parts = m.split(this.sep);
      if (parts.length === 3 && parts[0] === routingKey) {
        await this.commands.lpush(parts[2] as string, text);
        n++;
      }
    }
    return n;
  }

  /** The pub/sub channel of a fanout exchange. */
  fanoutChannel(exchange: string, routingKey = ''): string {
    const rk = this.fanoutPatterns && routingKey !== '' ? `/${routingKey}` : '';
    return `${this.keyprefix}${this.fanoutPrefix}${exchange}${rk}`;
  }

  async publishFanout(exchange: string, routingKey: string, text: string): Promise<void> {
    await this.commands.publish(this.fanoutChannel(exchange, routingKey), text);
  }

  /** PSUBSCRIBEs to a fanout exchange (all routing keys); `onMessage` gets each message's bytes. */
  async subscribeFanout(exchange: string, onMessage: (channel: string, message: Buffer) => void): Promise<void> {
    if (this.#subscriber === null) {
      const sub = connect(this.url);
      sub.on('error', () => {});
      sub.on('pmessageBuffer', (pattern: Buffer, channel: Buffer, message: Buffer) => {
        const handler = this.#patterns.get(pattern.toString());
        if (handler) handler(channel.toString(), message);
      });
      this.#subscriber = sub;
    }
    const base = this.fanoutChannel(exchange);
    const pattern = this.fanoutPatterns ? `${base}*` : base;
    this.#patterns.set(pattern, onMessage);
    await this.#subscriber.psubscribe(pattern);
  }

  /**
   * One BRPOP over `queues`, step-major; null after the polling
   * interval without a message. With round robin the queue that delivered
   * moves to the end of `queues` (which is changed in place).
   */
  async pop(queues: string[]): Promise<Delivery | null> {
    const keys: string[] = [];
    for (const step of this.steps) for (const q of queues) keys.push(this.stepKey(q, step));
    const r = await this.blocking.brpopBuffer(...keys, this.pollingInterval);
    if (r === null) return null;
    let key = r[0].toString();
    if (this.keyprefix && key.startsWith(this.keyprefix)) key = key.slice(this.keyprefix.length);
    const cut = key.indexOf(this.sep);
    const queue = cut >= 0 && this.steps.some((s) => key === this.stepKey(key.slice(0, cut), s)) ? key.slice(0, cut) : key;
    if (this.roundRobin) {
      const i = queues.indexOf(queue);
      if (i >= 0) {
        queues.splice(i, 1);
        queues.push(queue);
      }
    }
    return { queue, raw: r[1] };
  }

  /**
   * Takes up to `count` waiting messages without blocking, recorded as
   * delivered in the same atomic step (an empty list when none waits).
   * Same order and round robin as {@link pop}. A message over `maxBytes`
   * (0: no limit) stays in Redis, in `deadLetter` if given, and comes
   * back as its size ({@link Delivery.oversize}).
   */
  async popMany(queues: string[], count: number, maxBytes = 0, deadLetter: string | null = null): Promise<Delivery[]> {
    const keys = [this.unackedKey, this.unackedIndexKey, deadLetter ?? this.unackedKey];
    for (const q of queues) for (const step of this.steps) keys.push(this.stepKey(q, step));
    const cmd = this.commands as unknown as { popBatchBuffer(n: number, ...args: Array<string | number>): Promise<Array<Buffer | number>> };
    const flat = await cmd.popBatchBuffer(keys.length, ...keys, count, this.steps.length, queues.length, maxBytes, deadLetter === null ? 0 : 1);
    const out: Delivery[] = [];
    const order = [...queues];
    for (let i = 0; i + 2 < flat.length; i += 3) {
      const queue = queues[(flat[i] as number) - 1] as string;
      const tag = flat[i + 1] as Buffer;
      const raw = flat[i + 2]!;
      out.push(typeof raw === 'number' ? { queue, raw: Buffer.alloc(0), recordedTag: null, oversize: raw } : { queue, raw, recordedTag: tag.length === 0 ? null : tag });
      if (this.roundRobin) {
        order.splice(order.indexOf(queue), 1);
        order.push(queue);
      }
    }
    if (this.roundRobin && out.length > 0) queues.splice(0, queues.length, ...order);
    return out;
  }

  /** Records a delivery before anything else is done with it. `envelopeText` is the envelope's JSON. */
  async recordDelivery(tag: string, envelopeText: string, exchange: string, routingKey: string): Promise<void> {
    const value = `[${envelopeText}, ${pyJsonDumps(exchange)}, ${pyJsonDumps(routingKey)}]`;
    await this.commands.multi().zadd(this.unackedIndexKey, Date.now() / 1000, tag).hset(this.unackedKey, tag, value).exec();
  }

  #acks: Array<{ tag: string | Buffer; done: () => void; failed: (e: unknown) => void }> = [];
  #ackScheduled = false;

  /**
   * Acknowledges: the message leaves `unacked` and `unacked_index`
   * atomically. The acknowledgements of one turn of the event loop go in one
   * script call (what MULTI/ZREM/HDEL/EXEC does for one, for all of them).
   */
  ack(tag: string | Buffer): Promise<void> {
    return new Promise((done, failed) => {
      this.#acks.push({ tag, done, failed });
      if (!this.#ackScheduled) {
        this.#ackScheduled = true;
        setImmediate(() => this.#flushAcks());
      }
    });
  }

  #flushAcks(): void {
    this.#ackScheduled = false;
    while (this.#acks.length > 0) {
      const batch = this.#acks.splice(0, 1000);
      const cmd = this.commands as unknown as { ackMany(k1: string, k2: string, ...tags: Array<string | Buffer>): Promise<number> };
      cmd.ackMany(this.unackedKey, this.unackedIndexKey, ...batch.map((a) => a.tag)).then(
        () => {
          for (const a of batch) a.done();
        },
        (e: unknown) => {
          for (const a of batch) a.failed(e);
        },
      );
    }
  }

  get #txConnection(): Redis {
    this.#tx ??= this.#connection();
    return this.#tx;
  }

  /**
   * Puts an unacknowledged message back in its queue with the redelivered
   * flags (R-11): at the back (`LPUSH`, a reject with requeue) or the front
   * (`RPUSH`, a restore). Into its priority step (kombu 5.4's behaviour).
   * Returns false when it was no longer in `unacked`.
   */
  restore(tag: string, front: boolean): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const tx = this.#txConnection;
      for (let attempt = 0; attempt < 10; attempt++) {
        await tx.watch(this.unackedKey);
        const value = await tx.hget(this.unackedKey, tag);
        if (value === null) {
          await tx.unwatch();
          await this.ack(tag);
          return false;
        }
        const target = restoreTarget(value, this);
        const m = tx.multi().zrem(this.unackedIndexKey, tag).hdel(this.unackedKey, tag);
        if (target !== null) {
          if (front) m.rpush(target.key, target.text);
          else m.lpush(target.key, target.text);
        }
        const r = await m.exec();
        if (r !== null) return target !== null;
      }
      return false;
    };
    const p = this.#txChain.then(run, run);
    this.#txChain = p.catch(() => {});
    return p;
  }

  /**
   * The visibility sweep (2.7, R-12): under the `unacked_mutex` lock, every
   * message delivered more than `visibilityTimeout` seconds ago goes back to
   * the front of its queue. Returns how many were restored (null: the lock
   * was held elsewhere).
   */
  async sweep(): Promise<number | null> {
    const token = randomBytes(16).toString('hex');
    const got = await this.commands.set(this.unackedMutexKey, token, 'PX', Math.round(this.unackedMutexExpire * 1000), 'NX');
    if (got === null) return null;
    let n = 0;
    try {
      const ceiling = Date.now() / 1000 - this.visibilityTimeout;
      const tags = await this.commands.zrevrangebyscore(this.unackedIndexKey, ceiling, 0);
      for (const tag of tags) if (await this.restore(tag, true)) n++;
    } finally {
      await this.commands.eval(RELEASE_LOCK, 1, this.unackedMutexKey, token);
    }
    return n;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const all = [this.commands, this.#blocking, this.#tx, this.#subscriber].filter((r): r is Redis => r !== null);
    await Promise.all(all.map((r) => r.quit().catch(() => r.disconnect())));
  }

  /** Closes at once, without waiting for replies (a blocked BRPOP included). */
  disconnect(): void {
    this.#closed = true;
    for (const r of [this.commands, this.#blocking, this.#tx, this.#subscriber]) r?.disconnect();
  }
}

/** Where a restored message goes and its text with the redelivered flags; null when the stored value is unusable. */
function restoreTarget(value: string, t: RedisTransport): { key: string; text: string } | null {
  try {
    const stored = pyJsonLoads(value);
    if (!Array.isArray(stored) || stored.length < 3) return null;
    const [env, exchange, routingKey] = stored as [Record<string, unknown>, unknown, unknown];
    if (env === null || typeof env !== 'object' || typeof routingKey !== 'string') return null;
    const headers = (env.headers ?? {}) as Record<string, unknown>;
    headers.redelivered = true;
    env.headers = headers;
    const props = (env.properties ?? {}) as Record<string, unknown>;
    const info = (props.delivery_info ?? {}) as Record<string, unknown>;
    info.redelivered = true;
    props.delivery_info = info;
    env.properties = props;
    const priority = typeof props.priority === 'number' ? props.priority : 0;
    // The nameless exchange routes to the queue named by the routing key;
    // a named direct exchange's queues are those bound with it (the common
    // case, Celery's default, binds the queue's own name).
    void exchange;
    return { key: t.stepKey(routingKey, t.stepOf(priority)), text: pyJsonDumps(env) };
  } catch {
    return null;
  }
}
