/**
 * Celery's Redis result backend (spec/celery.md section 3): the
 * `celery-task-meta-<id>` records a worker writes (GET, then
 * MULTI/SETEX/PUBLISH/EXEC, never over a SUCCESS) and a client reads
 * (SUBSCRIBE before the task is sent, one GET, then the channel).
 */
import type { Redis } from 'ioredis';

import { BilliardError } from '../pickle/errors.js';
import { PythonException } from '../pickle/exceptions.js';
import { dumps } from '../pickle/pickler.js';
import { loads } from '../pickle/unpickler.js';
import { connect } from './transport.js';
import { pyJsonDumps, pyJsonLoads } from './pyjson.js';
import type { Serializer } from './message.js';

export const META_PREFIX = 'celery-task-meta-';
/** Celery refuses results over 512 MiB (Redis's string limit). */
export const MAX_RESULT_BYTES = 536870912;

export type TaskState = 'PENDING' | 'RECEIVED' | 'STARTED' | 'SUCCESS' | 'FAILURE' | 'RETRY' | 'REVOKED';
export const READY_STATES: ReadonlySet<string> = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);

/** An exception as a Python client rebuilds it (3.4): its module, qualified class name and args. */
export interface ExceptionRecord {
  excModule: string;
  excType: string;
  excMessage: unknown[];
}

/** The module JavaScript errors are reported under: not importable in Python, so clients make a same-named class. */
export const JS_ERROR_MODULE = 'javascript';

/** A thrown value as Celery's exception record. */
export function exceptionRecord(err: unknown): ExceptionRecord {
  if (err instanceof PythonException) return { excModule: err.pyModule, excType: err.pyName, excMessage: [...err.args] };
  if (err instanceof BilliardError) {
    const type = err.pyType;
    if (!type.startsWith('billiard-ts.')) {
      const dot = type.lastIndexOf('.');
      return { excModule: type.slice(0, dot), excType: type.slice(dot + 1), excMessage: [...err.args] };
    }
  }
  if (err instanceof Error) return { excModule: JS_ERROR_MODULE, excType: err.name || 'Error', excMessage: [err.message] };
  return { excModule: JS_ERROR_MODULE, excType: 'Error', excMessage: [String(err)] };
}

/** A stored failure read back as an error: a PythonException named after the record, with its traceback. */
export function exceptionFromRecord(result: unknown, traceback: unknown): PythonException {
  const tb = typeof traceback === 'string' ? traceback : undefined;
  if (result instanceof PythonException) {
    if (tb !== undefined) result.traceback = tb;
    return result;
  }
  if (result instanceof BilliardError) {
    const e = new PythonException(result.pyType, result.args, { traceback: tb });
    return e;
  }
  const r = (result ?? {}) as Record<string, unknown>;
  const module = typeof r.exc_module === 'string' ? r.exc_module : 'builtins';
  const type = typeof r.exc_type === 'string' ? r.exc_type : 'Exception';
  const message = Array.isArray(r.exc_message) ? (r.exc_message as unknown[]) : r.exc_message === undefined ? [] : [r.exc_message];
  return new PythonException(`${module}.${type}`, message, { traceback: tb });
}

/** What a worker stores for one task (3.3). */
export interface ResultMeta {
  status: TaskState;
  result: unknown;
  traceback: string | null;
  children: unknown[];
  dateDone: string | null;
  groupId?: string | null;
  parentId?: string | null;
  taskId: string;
}

/** `datetime.utcnow().isoformat()`: naive UTC, as Celery 5.2 writes `date_done`. */
export function naiveUtcNow(): string {
  const iso = new Date().toISOString(); // 2026-12-05T08:21:06.546Z
  return `${iso.slice(0, 23)}000`;
}

export interface BackendOptions {
  /** Seconds a result lives (`result_expires`, default one day); 0 or null: for ever. */
  resultExpires?: number | null;
  /** How results are written and read (`result_serializer`, default json). */
  serializer?: Serializer;
  /** Larger records are refused with a RangeError (default 512 MiB, Redis's limit). */
  maxBytes?: number;
}

/** A Python-compatible pickle exception: the record's class, rebuilt from its args. */
function pickledException(rec: ExceptionRecord): PythonException {
  return new PythonException(`${rec.excModule}.${rec.excType}`, rec.excMessage);
}

/**
 * Celery's store (3.2) in one atomic step: GET, and unless the old record is
 * a SUCCESS, SETEX (SET when ARGV[2] is 0) and PUBLISH on the key's channel.
 * KEYS[1] the key; ARGV[1] the JSON record. Returns 0 when a SUCCESS was there.
 */
const STORE_JSON = `
local old = redis.call('GET', KEYS[1])
if old then
  local ok, v = pcall(cjson.decode, old)
  if ok and type(v) == 'table' and v.status == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then redis.call('SETEX', KEYS[1], ARGV[2], ARGV[1]) else redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`;

export class RedisBackend {
  readonly url: string;
  readonly resultExpires: number | null;
  readonly serializer: Serializer;
  readonly maxBytes: number;
  readonly client: Redis;
  #subscriber: Redis | null = null;
  #waiters = new Map<string, Set<(meta: Record<string, unknown>) => void>>();

  constructor(url: string, options?: BackendOptions) {
    this.url = url;
    const ttl = options?.resultExpires === undefined ? 86400 : options.resultExpires;
    this.resultExpires = ttl === null || ttl === 0 ? null : ttl;
    this.serializer = options?.serializer ?? 'json';
    this.maxBytes = options?.maxBytes ?? MAX_RESULT_BYTES;
    this.client = connect(url, { enableAutoPipelining: true });
    this.client.on('error', () => {});
    this.client.defineCommand('storeJson', { lua: STORE_JSON, numberOfKeys: 1 });
  }

  key(taskId: string): string {
    return `${META_PREFIX}${taskId}`;
  }

  /** Encodes a record as the result serializer writes it, keys in Celery's order. */
  encode(meta: ResultMeta): Buffer {
    const obj: Record<string, unknown> = { status: meta.status, result: meta.result, traceback: meta.traceback, children: meta.children, date_done: meta.dateDone };
    if (meta.groupId) obj.group_id = meta.groupId;
    if (meta.parentId) obj.parent_id = meta.parentId;
    obj.task_id = meta.taskId;
    if (this.serializer === 'pickle') return Buffer.from(dumps(obj, { protocol: 4 }));
    return Buffer.from(pyJsonDumps(obj));
  }

  /** The `result` field for an exception. */
  exceptionResult(rec: ExceptionRecord): unknown {
    if (this.serializer === 'pickle') return pickledException(rec);
    return { exc_type: rec.excType, exc_message: rec.excMessage, exc_module: rec.excModule };
  }

  decode(raw: Buffer): Record<string, unknown> {
    if (this.serializer === 'pickle') {
      const v = loads(raw);
      if (v instanceof Map) return Object.fromEntries(v) as Record<string, unknown>;
      return v as Record<string, unknown>;
    }
    return pyJsonLoads(raw.toString('utf8')) as Record<string, unknown>;
  }

  /**
   * Stores a record (3.2): GET first (a SUCCESS is final), then SETEX (SET
   * without expiry) and PUBLISH on the key's channel in one transaction.
   * Throws RangeError for a value over 512 MiB. Returns false when a SUCCESS
   * was already there.
   */
  async store(meta: ResultMeta): Promise<boolean> {
    const key = this.key(meta.taskId);
    const value = this.encode(meta);
    if (value.length > this.maxBytes) throw new RangeError(`the result of task ${meta.taskId} is ${value.length} bytes, over the limit of ${this.maxBytes}`);
    if (this.serializer === 'json') {
      const cmd = this.client as unknown as { storeJson(key: string, value: Buffer, ttl: number): Promise<number> };
      return (await cmd.storeJson(key, value, this.resultExpires === null ? 0 : Math.round(this.resultExpires))) === 1;
    }
    const old = await this.client.getBuffer(key);
    if (old !== null) {
      try {
        if (this.decode(old).status === 'SUCCESS') return false;
      } catch {
        // an unreadable old value is replaced
      }
    }
    const m = this.client.multi();
    if (this.resultExpires === null) m.set(key, value);
    else m.setex(key, Math.round(this.resultExpires), value);
    await m.publish(key, value).exec();
    return true;
  }

  /** The stored record, or null (PENDING). */
  async getMeta(taskId: string): Promise<Record<string, unknown> | null> {
    const raw = await this.client.getBuffer(this.key(taskId));
    return raw === null ? null : this.decode(raw);
  }

  get #sub(): Redis {
    if (this.#subscriber === null) {
      const sub = connect(this.url);
      sub.on('error', () => {});
      sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
        const id = channel.toString().slice(META_PREFIX.length);
        const set = this.#waiters.get(id);
        if (!set) return;
        let meta: Record<string, unknown>;
        try {
          meta = this.decode(message);
        } catch {
          return;
        }
        for (const w of set) w(meta);
      });
      // After a reconnect the channels are subscribed again by ioredis; what
      // was published meanwhile is read back with MGET.
      sub.on('ready', () => {
        const ids = [...this.#waiters.keys()];
        if (ids.length === 0) return;
        this.client.mgetBuffer(...ids.map((id) => this.key(id))).then(
          (values) => {
            values.forEach((raw, i) => {
              if (raw === null) return;
              try {
                const meta = this.decode(raw);
                for (const w of this.#waiters.get(ids[i] as string) ?? []) w(meta);
              } catch {
                // unreadable: keep waiting
              }
            });
          },
          () => {},
        );
      });
      this.#subscriber = sub;
    }
    return this.#subscriber;
  }

  /** SUBSCRIBEs to a task's channel (before the task is sent, R-8); returns the unsubscribe. */
  async subscribe(taskId: string, onMeta: (meta: Record<string, unknown>) => void): Promise<() => Promise<void>> {
    let set = this.#waiters.get(taskId);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.#waiters.set(taskId, set);
    }
    set.add(onMeta);
    if (first) await this.#sub.subscribe(this.key(taskId));
    return async () => {
      const s = this.#waiters.get(taskId);
      if (!s) return;
      s.delete(onMeta);
      if (s.size === 0) {
        this.#waiters.delete(taskId);
        await this.#subscriber?.unsubscribe(this.key(taskId)).catch(() => {});
      }
    };
  }

  /**
   * A chord header task's part (3.8, R-19): its `[1, id, state, result]` joins
   * the group's `.j` sorted set at its index; the part that completes the
   * chord (the count reaches `.s` plus `.t`) gets every part's entry in
   * index order, and the chord's keys are deleted. Null for the others.
   */
  async chordPartReturn(groupId: string, groupIndex: number, taskId: string, state: TaskState, result: unknown): Promise<Array<[unknown, string, string, unknown]> | null> {
    const base = `celery-taskset-meta-${groupId}`;
    const [j, t, sKey] = [`${base}.j`, `${base}.t`, `${base}.s`];
    const member = this.serializer === 'pickle' ? Buffer.from(dumps([1, taskId, state, result], { protocol: 4 })) : pyJsonDumps([1, taskId, state, result]);
    const ttl = this.resultExpires === null ? null : Math.round(this.resultExpires);
    const m = this.client.multi().zadd(j, groupIndex, member).zcount(j, '-inf', '+inf').get(t).get(sKey);
    if (ttl !== null) m.expire(j, ttl).expire(t, ttl).expire(sKey, ttl);
    const replies = await m.exec();
    if (replies === null) throw new Error('the chord transaction was aborted');
    for (const [err] of replies) if (err) throw err;
    const count = Number(replies[1]![1]);
    const total = Number(replies[2]![1] ?? 0);
    const size = Number(replies[3]![1] ?? NaN);
    if (!(count === size + total)) return null;
    await this.client.get(base);
    const raw = await this.client.zrangeBuffer(j, 0, -1);
    await this.client.del(j, t, sKey);
    return raw.map((b) => (this.serializer === 'pickle' ? loads(b) : pyJsonLoads(b.toString('utf8'))) as [unknown, string, string, unknown]);
  }

  async close(): Promise<void> {
    const all = [this.client, this.#subscriber].filter((r): r is Redis => r !== null);
    await Promise.all(all.map((r) => r.quit().catch(() => r.disconnect())));
  }

  disconnect(): void {
    this.client.disconnect();
    this.#subscriber?.disconnect();
  }
}
