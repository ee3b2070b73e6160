/**
 * The client side (spec/celery.md 1.2, 3.6, 4.2): Node code sending tasks
 * to Celery workers (Python or Node) and reading their results, and
 * broadcasting remote-control commands.
 */
import { randomUUID } from 'node:crypto';

import { TimeoutError } from '../connection/errors.js';
import { Timer, timeoutSeconds } from '../connection/timers.js';
import { exceptionFromRecord, READY_STATES, RedisBackend, type TaskState } from './backend.js';
import { buildJsonEnvelope, buildTaskMessage, decodeBody, JSON_TYPE, parseEnvelope, type Embed, type Serializer, type Signature, type TaskMessageInit } from './message.js';
import { RedisTransport, type TransportOptions } from './transport.js';
import { checkOptionNames, optionNames, optionsRejection } from '../connection/options.js';

export interface CeleryOptions {
  /** redis://host:port/db of the broker. */
  broker: string;
  /** redis://... of the result backend (default: the broker); null: no results. */
  backend?: string | null;
  /** The same as `backend`, by the name the Worker's options give it. */
  resultBackend?: string | null;
  /** Body serializer (default json). */
  taskSerializer?: Serializer;
  /** Result serializer: must be the workers' (default json). */
  resultSerializer?: Serializer;
  transport?: TransportOptions;
}

const CELERY_OPTIONS = optionNames<CeleryOptions>()({
  broker: 1, backend: 1, resultBackend: 1, taskSerializer: 1, resultSerializer: 1, transport: 1,
});

/** Options of {@link Celery.sendTask}: `apply_async`'s, camelCase, seconds. */
export type SendTaskOptions = Omit<TaskMessageInit, 'name' | 'args' | 'kwargs' | 'embed' | 'serializer'> & {
  serializer?: Serializer;
  /** Callbacks on success (signatures, Celery's `link`). */
  link?: Signature | Signature[] | null;
  /** Callbacks on failure (Celery's `link_error`). */
  linkError?: Signature | Signature[] | null;
  /** Remaining chain steps, the next one last (as Celery sends them). */
  chain?: Signature[] | null;
};

/** A signature, as Celery's `signature(name, args, kwargs, options)`. */
export function signature(task: string, args: unknown[] = [], kwargs: Record<string, unknown> = {}, options: Record<string, unknown> & { immutable?: boolean } = {}): Signature {
  const { immutable, ...rest } = options;
  return { task, args, kwargs, options: rest, subtask_type: null, immutable: immutable === true };
}

const list = (v: Signature | Signature[] | null | undefined): Signature[] | null => (v === null || v === undefined ? null : Array.isArray(v) ? v : [v]);

/** A task's result, as Celery's `AsyncResult`: `await r.get(timeout)`. */
export class AsyncResult {
  readonly id: string;
  readonly #backend: RedisBackend | null;
  #meta: Record<string, unknown> | null = null;
  #waiters = new Set<() => void>();
  #unsubscribe: (() => Promise<void>) | null = null;

  /** @internal */
  constructor(id: string, backend: RedisBackend | null) {
    this.id = id;
    this.#backend = backend;
  }

  /** @internal subscribes before the message is sent. */
  async listen(): Promise<void> {
    if (this.#backend === null || this.#unsubscribe !== null) return;
    this.#unsubscribe = await this.#backend.subscribe(this.id, (meta) => this.#see(meta));
  }

  #see(meta: Record<string, unknown>): void {
    if (typeof meta.status !== 'string' || !READY_STATES.has(meta.status)) return;
    this.#meta = meta;
    const unsub = this.#unsubscribe;
    this.#unsubscribe = null;
    void unsub?.();
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  /** The state: PENDING until a worker stores another. */
  async state(): Promise<TaskState> {
    if (this.#meta !== null) return this.#meta.status as TaskState;
    if (this.#backend === null) return 'PENDING';
    const meta = await this.#backend.getMeta(this.id);
    if (meta === null) return 'PENDING';
    this.#see(meta);
    return meta.status as TaskState;
  }

  /** The stored record (null while PENDING). */
  async meta(): Promise<Record<string, unknown> | null> {
    return this.#meta ?? (this.#backend === null ? null : this.#backend.getMeta(this.id));
  }

  /**
   * Waits for the result (at most `timeout` seconds; null: for ever) and
   * returns it; a FAILURE or REVOKED throws the stored exception as a
   * PythonException (its `pyName`, `args` and `traceback`) unless
   * `propagate` is false, when it is returned. TimeoutError on time out.
   */
  async get(timeout: number | null = null, options?: { propagate?: boolean }): Promise<unknown> {
    if (this.#backend === null) throw new TypeError('no result backend is configured');
    if (this.#meta === null) {
      await this.listen();
      const meta = await this.#backend.getMeta(this.id);
      if (meta !== null) this.#see(meta);
    }
    if (this.#meta === null) {
      let timer: Timer | null = null;
      let wake: (() => void) | null = null;
      const arrived = await new Promise<boolean>((resolve) => {
        wake = () => resolve(true);
        this.#waiters.add(wake);
        // A Timer, not setTimeout: past 2**31-1 ms setTimeout fires at once.
        timer = new Timer(timeoutSeconds(timeout), () => resolve(false));
      });
      (timer as Timer | null)?.cancel();
      if (wake) this.#waiters.delete(wake);
      if (!arrived) throw new TimeoutError('The operation timed out.');
    }
    const meta = this.#meta as Record<string, unknown>;
    if (meta.status === 'SUCCESS') return meta.result;
    const err = exceptionFromRecord(meta.result, meta.traceback);
    if (options?.propagate === false) return err;
    throw err;
  }

  /** Stops listening for this result. */
  async forget(): Promise<void> {
    const unsub = this.#unsubscribe;
    this.#unsubscribe = null;
    await unsub?.();
  }
}

/** Options of {@link Celery.broadcast}. */
export interface BroadcastOptions {
  arguments?: Record<string, unknown>;
  destination?: string[] | null;
  pattern?: string | null;
  matcher?: 'glob' | 'pcre' | null;
  /** Wait for replies (default true). */
  reply?: boolean;
  /** Seconds to collect replies (default 1). */
  timeout?: number;
  /** Stop after this many replies (default: the destination's length). */
  limit?: number | null;
}

const BROADCAST_OPTIONS = optionNames<BroadcastOptions>()({ arguments: 1, destination: 1, pattern: 1, matcher: 1, reply: 1, timeout: 1, limit: 1 });

/** Options of {@link Celery.revoke} (Celery's `control.revoke(id, terminate=..., signal=...)`). */
export interface RevokeOptions {
  /** Also end the task if it runs (the pool process is signalled). */
  terminate?: boolean;
  /** The signal `terminate` sends (default `'SIGTERM'`). */
  signal?: string;
  /** Wait for replies (default false). */
  reply?: boolean;
  /** Seconds to collect replies. */
  timeout?: number;
  /** Worker names (default: every worker). */
  destination?: string[];
}

const REVOKE_OPTIONS = optionNames<RevokeOptions>()({ terminate: 1, signal: 1, reply: 1, timeout: 1, destination: 1 });

/**
 * A Celery app's client: `sendTask(name, args, kwargs, options)`, results,
 * and remote control. Close it when done.
 */
export class Celery {
  readonly transport: RedisTransport;
  readonly backend: RedisBackend | null;
  readonly options: CeleryOptions;
  readonly oid = randomUUID();
  #clock = 0;
  #broadcasts: Promise<unknown> = Promise.resolve();

  constructor(options: CeleryOptions) {
    checkOptionNames(options, CELERY_OPTIONS, 'new Celery()');
    this.options = options;
    this.transport = new RedisTransport(options.broker, options.transport);
    if (options.backend !== undefined && options.resultBackend !== undefined && options.backend !== options.resultBackend) {
      throw new TypeError('options.backend and options.resultBackend name the same thing: give one');
    }
    const backend = options.backend !== undefined ? options.backend : options.resultBackend;
    const backendUrl = backend === undefined ? options.broker : backend;
    this.backend = backendUrl === null ? null : new RedisBackend(backendUrl, { serializer: options.resultSerializer });
  }

  /** Sends a task by name (Celery's `send_task`): the result is subscribed to before the message is pushed. */
  async sendTask(name: string, args: readonly unknown[] = [], kwargs: Record<string, unknown> = {}, options: SendTaskOptions = {}): Promise<AsyncResult> {
    const { link, linkError, chain, serializer, ...rest } = options;
    const embed: Partial<Embed> = { callbacks: list(link), errbacks: list(linkError), chain: chain ?? null };
    const msg = buildTaskMessage({ ...rest, name, args, kwargs, embed, serializer: serializer ?? this.options.taskSerializer ?? 'json' });
    const result = new AsyncResult(msg.id, this.backend);
    if (!options.ignoreResult) await result.listen();
    await this.transport.declareQueue(msg.queue);
    await this.transport.push(msg.queue, msg.text, msg.priority);
    return result;
  }

  /** Sends `steps` as a chain (`a | b | c`); the result is the last step's. */
  async chain(steps: Signature[], options: SendTaskOptions = {}): Promise<AsyncResult> {
    if (steps.length === 0) throw new TypeError('an empty chain');
    const withIds = steps.map((s) => ({ ...s, options: { ...s.options, task_id: typeof s.options.task_id === 'string' ? s.options.task_id : randomUUID() } }));
    const first = withIds[0] as Signature;
    const rest = withIds.slice(1);
    const last = withIds[withIds.length - 1] as Signature;
    const result = new AsyncResult(last.options.task_id as string, this.backend);
    await result.listen();
    await this.sendTask(first.task, first.args, first.kwargs, { ...options, id: first.options.task_id as string, chain: rest.reverse() });
    return result;
  }

  /** A result by id. */
  asyncResult(id: string): AsyncResult {
    return new AsyncResult(id, this.backend);
  }

  /**
   * Celery's `control.broadcast`: publishes a command on the pidbox and,
   * with `reply`, collects `{node: reply}` objects until the timeout or the
   * limit.
   */
  broadcast(method: string, options: BroadcastOptions = {}): Promise<Array<Record<string, unknown>>> {
    const bad = optionsRejection(options, BROADCAST_OPTIONS, 'Celery.broadcast()');
    if (bad !== null) return bad;
    // One at a time: every broadcast of this client reads the same reply
    // queue, and one must not take (and drop) another's replies.
    const run = (): Promise<Array<Record<string, unknown>>> => this.#broadcast(method, options);
    const p = this.#broadcasts.then(run, run);
    this.#broadcasts = p.catch(() => undefined);
    return p;
  }

  async #broadcast(method: string, options: BroadcastOptions): Promise<Array<Record<string, unknown>>> {
    const reply = options.reply ?? true;
    const timeout = options.timeout ?? 1;
    const destination = options.destination ?? null;
    const limit = options.limit ?? (destination ? destination.length : null);
    const ticket = randomUUID();
    const exchange = 'reply.celery.pidbox';
    const queue = `${this.oid}.reply.celery.pidbox`;
    const member = `${this.oid}${this.transport.sep}${this.transport.sep}${queue}`;
    const body: Record<string, unknown> = { method, arguments: options.arguments ?? {}, destination, pattern: options.pattern ?? null, matcher: options.matcher ?? null };
    if (reply) {
      body.ticket = ticket;
      body.reply_to = { exchange, routing_key: this.oid };
      await this.transport.commands.sadd(`_kombu.binding.${exchange}`, member);
    }
    this.#clock++;
    const text = buildJsonEnvelope(body, { clock: this.#clock, expires: Date.now() / 1000 + timeout }, { delivery_mode: 2, delivery_info: { exchange: 'celery.pidbox', routing_key: '' }, priority: 0 });
    await this.transport.publishFanout('celery.pidbox', '', text);
    if (!reply) return [];
    const replies: Array<Record<string, unknown>> = [];
    const deadline = Date.now() + timeout * 1000;
    try {
      while (Date.now() < deadline && (limit === null || replies.length < limit)) {
        const left = Math.max(0.01, (deadline - Date.now()) / 1000);
        const r = await this.transport.blocking.brpopBuffer(queue, left);
        if (r === null) break;
        try {
          const env = parseEnvelope(r[1]);
          if (env.headers.ticket !== ticket) continue;
          const clock = env.headers.clock;
          if (typeof clock === 'number' && clock > this.#clock) this.#clock = clock;
          const value = decodeBody(env, new Set([JSON_TYPE]));
          if (value !== null && typeof value === 'object') replies.push(value as Record<string, unknown>);
        } catch {
          // a reply that does not parse is skipped
        }
      }
    } finally {
      await this.transport.commands.srem(`_kombu.binding.${exchange}`, member).catch(() => {});
      await this.transport.commands.del(queue).catch(() => {});
    }
    return replies;
  }

  /** `control.ping`: `[{node: {ok: 'pong'}}, ...]`. */
  ping(options: Omit<BroadcastOptions, 'arguments' | 'reply'> = {}): Promise<Array<Record<string, unknown>>> {
    return this.broadcast('ping', options);
  }

  /** `control.revoke(id, terminate=..., signal=...)`. */
  revoke(taskId: string | string[], options: RevokeOptions = {}): Promise<Array<Record<string, unknown>>> {
    const bad = optionsRejection(options, REVOKE_OPTIONS, 'Celery.revoke()');
    if (bad !== null) return bad;
    return this.broadcast('revoke', {
      arguments: { task_id: taskId, terminate: options.terminate ?? false, signal: options.signal ?? 'SIGTERM' },
      reply: options.reply ?? false,
      timeout: options.timeout,
      destination: options.destination,
    });
  }

  async close(): Promise<void> {
    await this.transport.close();
    await this.backend?.close();
  }
}
