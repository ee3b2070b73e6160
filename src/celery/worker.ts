/**
 * A Celery worker in Node (spec/celery.md sections 2–6): it consumes task
 * messages from kombu's Redis transport, runs them in a billiard-ts Pool
 * with Celery's time limits, stores results where Python clients wait for
 * them, and answers remote control. Every message is treated as hostile: a
 * bad one is logged, acknowledged and dropped, and the worker goes on (R-24).
 */
import { createHash, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { availableParallelism, hostname as osHostname, loadavg } from 'node:os';
import { basename, extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { Timer } from '../connection/timers.js';
import { Pool, type ApplyResult } from '../pool/pool.js';
import { checkLoadLimits, type LoadLimits } from '../pickle/unpickler.js';
import { TimeLimitExceeded, WorkerLostError, Terminated } from '../process/errors.js';
import { exceptionFromRecord, exceptionRecord, naiveUtcNow, RedisBackend, type ExceptionRecord, type ResultMeta, type TaskState } from './backend.js';
import {
  buildJsonEnvelope,
  buildTaskMessage,
  ContentDisallowed,
  decodeBody,
  JSON_TYPE,
  MessageError,
  parseDateHeader,
  parseEnvelope,
  PICKLE_TYPE,
  taskBody,
  truncated,
  type Embed,
  type Envelope,
  type Serializer,
  type Signature,
} from './message.js';
import { pyRepr } from './repr.js';
import { initApp, runTask, warmUp, type Outcome } from './runner.js';
import { taskOptions, type PackedRequest, type TaskOptions } from './task.js';
import { RedisTransport, type Delivery, type TransportOptions } from './transport.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'critical';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40, critical: 50 };

/** Options of {@link Worker}: Celery's worker settings, camelCase, seconds. */
/** The default of WorkerOptions.maxMessageBytes. */
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface WorkerOptions {
  /** The app module: a path or URL whose exported functions are the tasks, or an already imported namespace with its `url`. */
  app: string | URL | { url: string; namespace: Record<string, unknown> };
  /** Task names are `<appName>.<export>` unless a task names itself (default: the app file's name without extension). */
  appName?: string;
  /** redis://host:port/db of the broker. */
  broker: string;
  /** redis://... of the result backend; null: results are not stored. Default: the broker. */
  resultBackend?: string | null;
  /** Pool processes (default: the number of CPUs). */
  concurrency?: number;
  /** Default soft time limit in seconds (a task's options and the message's header win). */
  softTimeLimit?: number | null;
  /** Default hard time limit in seconds. */
  timeLimit?: number | null;
  maxTasksPerChild?: number | null;
  /** KiB of resident memory after which a pool process is replaced. */
  maxMemoryPerChild?: number | null;
  /** Queues consumed (default ['celery']). */
  queues?: readonly string[];
  /** Unacknowledged messages held per pool process (default 4; 0: no limit). */
  prefetchMultiplier?: number;
  /** Node name, with `%h` (host name), `%n` (its first label) and `%d` (the rest) expanded. Default `celery@%h`. */
  hostname?: string;
  /** Accepted body serializers (default ['json']; 'pickle' goes through billiard-ts's codec, registered globals only). */
  accept?: readonly Serializer[];
  /** How results are written (default json). */
  resultSerializer?: Serializer;
  /** Seconds results live (default one day). */
  resultExpires?: number | null;
  /** Store STARTED when a task begins (Celery's task_track_started). */
  trackStarted?: boolean;
  /** Default for tasks that do not say (Celery's task_acks_late). */
  acksLate?: boolean;
  transport?: TransportOptions;
  /** Seconds between visibility sweeps (default 100; the first runs at start). */
  sweepInterval?: number;
  /** A list that receives the raw bytes of messages that cannot be used; null (default): they are only logged. */
  deadLetterQueue?: string | null;
  /**
   * Messages over this many bytes are dropped unread (logged, and kept in
   * the dead-letter list if there is one): decoding one would take memory in
   * proportion (default 64 MiB; 0: no limit but Redis's 512 MiB).
   */
  maxMessageBytes?: number;
  /**
   * Limits on loading pickled messages and the pool's results, over the
   * unpickler's defaults (see {@link LoadLimits}); also passed to the pool.
   */
  loadLimits?: LoadLimits | null;
  /** Send task events (task-received, -started, -succeeded, -failed, -retried, -revoked, -rejected) in task.multi batches (Celery's -E). */
  taskEvents?: boolean;
  /** Results over this many bytes are stored as a FAILURE instead (default 512 MiB, Redis's limit). */
  resultMaxBytes?: number;
  /** Send worker-online, a heartbeat every `heartbeatInterval` seconds, and worker-offline (default true). */
  heartbeat?: boolean;
  heartbeatInterval?: number;
  /** The pool's start method (default the package's). */
  context?: string | null;
  /** Log lines go here (default: stderr, from `loglevel`). */
  log?: ((level: LogLevel, message: string) => void) | null;
  loglevel?: LogLevel;
}

const WORKER_OPTIONS = optionNames<WorkerOptions>()({
  app: 1, appName: 1, broker: 1, resultBackend: 1, concurrency: 1, softTimeLimit: 1, timeLimit: 1, maxTasksPerChild: 1,
  maxMemoryPerChild: 1, queues: 1, prefetchMultiplier: 1, hostname: 1, accept: 1, resultSerializer: 1, resultExpires: 1,
  trackStarted: 1, acksLate: 1, transport: 1, sweepInterval: 1, deadLetterQueue: 1, maxMessageBytes: 1, loadLimits: 1,
  taskEvents: 1, resultMaxBytes: 1, heartbeat: 1, heartbeatInterval: 1, context: 1, log: 1, loglevel: 1,
});

interface TaskEntry {
  name: string;
  exportName: string;
  options: TaskOptions;
}

type JobState = 'received' | 'scheduled' | 'reserved' | 'active' | 'done';

/** One delivery this worker holds. */
interface Job {
  seq: number;
  tag: string;
  env: Envelope;
  queue: string;
  id: string;
  name: string;
  entry: TaskEntry;
  args: unknown[];
  kwargs: Record<string, unknown>;
  embed: Embed;
  eta: number | null;
  expires: number | null;
  hard: number | null;
  soft: number | null;
  acksLate: boolean;
  ignoreResult: boolean;
  acked: boolean;
  state: JobState;
  timer: Timer | null;
  timeStart: number | null;
  workerPid: number | null;
  result: ApplyResult<Outcome> | null;
  terminated: boolean;
  /** Aborts the pool part while it waits for a pool process (a revoke, the expiry). */
  controller: AbortController | null;
  expiryTimer: Timer | null;
}

/**
 * A job the pool has not written to a pool process yet: a revoke, its
 * expiry or a warm shutdown can still drop it. Once written (no synack) it
 * will run, as a job Celery's prefork pool has taken does, so it is left to
 * finish and its outcome is recorded.
 */
function waitingInPool(job: Job): boolean {
  return job.timeStart === null && !(job.result?.handedOver ?? false);
}

/** Why a job handed to the pool but not started yet was dropped there. */
class Discarded extends Error {
  readonly kind: 'revoked' | 'expired' | 'shutdown';
  constructor(kind: 'revoked' | 'expired' | 'shutdown') {
    super(kind);
    this.kind = kind;
  }
}

const REVOKED_MAX = 50000;
/**
 * A revoked id longer than this is remembered as `sha256:<hex digest>`: the
 * ids come from any client of the broker, and REVOKED_MAX of them, each as
 * long as a message, would be gigabytes (and V8 compares same-length keys
 * over 16,383 characters in full with each other). Celery's ids are 36.
 */
const REVOKED_ID_CHARS = 256;

function revokedKey(id: string): string {
  return id.length > REVOKED_ID_CHARS ? `sha256:${createHash('sha256').update(id).digest('hex')}` : id;
}
const REVOKED_EXPIRE_MS = 10800 * 1000;

function expandHostname(name: string): string {
  const host = osHostname();
  const dot = host.indexOf('.');
  return name
    .replaceAll('%h', host)
    .replaceAll('%n', dot < 0 ? host : host.slice(0, dot))
    .replaceAll('%d', dot < 0 ? '' : host.slice(dot + 1));
}

function defaultLog(min: LogLevel): (level: LogLevel, message: string) => void {
  return (level, message) => {
    if (LEVELS[level] < LEVELS[min]) return;
    process.stderr.write(`[${new Date().toISOString()}: ${level.toUpperCase()}/MainProcess] ${message}\n`);
  };
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15 };

function signalOf(v: unknown): NodeJS.Signals | number {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string') {
    const up = v.toUpperCase();
    const name = up.startsWith('SIG') ? up : `SIG${up}`;
    if (name in SIGNALS) return name as NodeJS.Signals;
    if (/^\d+$/.test(v)) return Number(v);
  }
  return 'SIGTERM';
}

function globMatch(pattern: string, text: string): boolean {
  const re = pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 's').test(text);
}

/**
 * A Celery worker: `await new Worker({ app: './tasks.js', broker }).start()`,
 * then `await worker.shutdown()` (warm: running tasks finish, prefetched
 * ones go back) or `worker.terminate()` (cold).
 */
export class Worker extends EventEmitter {
  readonly hostname: string;
  readonly concurrency: number;
  readonly queues: string[];
  readonly transport: RedisTransport;
  readonly backend: RedisBackend | null;
  readonly options: WorkerOptions;
  readonly tasks = new Map<string, TaskEntry>();
  #appUrl = '';
  #pool: Pool | null = null;
  #log: (level: LogLevel, message: string) => void;
  #accept: Set<string>;
  #prefetch: number;
  readonly #maxMessageBytes: number;
  /** WorkerOptions.loadLimits, checked; undefined for none. */
  readonly #loadLimits: Readonly<LoadLimits> | undefined;
  #seq = 0;
  #held = new Map<number, Job>();
  #reserved: Job[] = [];
  #active = new Set<Job>();
  #etaCount = 0;
  #revoked = new Map<string, number>();
  #consuming = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #sweepTimer: NodeJS.Timeout | null = null;
  #heartbeatTimer: NodeJS.Timeout | null = null;
  #clock = 0;
  #started = 0;
  #processed = 0;
  #total = new Map<string, number>();
  #stopping: Promise<void> | null = null;
  #idle: (() => void) | null = null;
  #cold = false;
  #inflight = new Set<Promise<void>>();
  /** Jobs whose pool part is over and whose result is being stored. */
  #finishing = 0;

  constructor(options: WorkerOptions) {
    super();
    checkOptionNames(options, WORKER_OPTIONS, 'new Worker()');
    this.options = options;
    this.hostname = expandHostname(options.hostname ?? 'celery@%h');
    const concurrency = options.concurrency ?? availableParallelism();
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TypeError(`concurrency must be an integer >= 1, not ${String(options.concurrency)}`);
    this.concurrency = concurrency;
    this.queues = [...(options.queues ?? ['celery'])];
    if (this.queues.length === 0 || this.queues.some((q) => typeof q !== 'string' || q === '')) throw new TypeError('queues must be a non-empty list of queue names');
    const pm = options.prefetchMultiplier ?? 4;
    if (!Number.isInteger(pm) || pm < 0) throw new TypeError(`prefetchMultiplier must be an integer >= 0, not ${String(pm)}`);
    this.transport = new RedisTransport(options.broker, options.transport);
    this.transport.onConnectionError = (e) => this.#emitLog('error', `consumer: Cannot connect to ${redactUrl(options.broker)}: ${e.message}. Trying again...`);
    const backendUrl = options.resultBackend === undefined ? options.broker : options.resultBackend;
    this.backend = backendUrl === null ? null : new RedisBackend(backendUrl, { serializer: options.resultSerializer, resultExpires: options.resultExpires, maxBytes: options.resultMaxBytes });
    this.#log = options.log ?? defaultLog(options.loglevel ?? 'warning');
    this.#accept = new Set((options.accept ?? ['json']).map((s) => (s === 'pickle' ? PICKLE_TYPE : JSON_TYPE)));
    const multiplier = options.prefetchMultiplier ?? 4;
    this.#prefetch = multiplier === 0 ? 0 : this.concurrency * multiplier;
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 0) throw new TypeError(`maxMessageBytes must be a non-negative integer, not ${String(maxMessageBytes)}`);
    this.#maxMessageBytes = maxMessageBytes;
    this.#loadLimits = checkLoadLimits(options.loadLimits, 'options.loadLimits');
  }

  /** The prefetch limit: unacknowledged messages held at once (0: none). */
  get prefetchCount(): number {
    return this.#prefetch;
  }

  #emitLog(level: LogLevel, message: string): void {
    try {
      this.#log(level, message);
    } catch {
      // a logger that throws must not stop the worker
    }
  }

  async #loadApp(): Promise<void> {
    const app = this.options.app;
    let url: string;
    let ns: Record<string, unknown>;
    if (typeof app === 'object' && !(app instanceof URL)) {
      url = app.url;
      ns = app.namespace;
    } else {
      url = app instanceof URL ? app.href : /^[a-z]+:/i.test(app) ? app : pathToFileURL(resolve(app)).href;
      ns = (await import(url)) as Record<string, unknown>;
    }
    this.#appUrl = url;
    const file = decodeURIComponent(new URL(url).pathname);
    const appName = this.options.appName ?? basename(file, extname(file));
    for (const [exportName, value] of Object.entries(ns)) {
      if (typeof value !== 'function' || exportName === 'default') continue;
      // Classes are not tasks.
      if (/^class\s/.test(Function.prototype.toString.call(value))) continue;
      const options = taskOptions(value);
      const name = options.name ?? `${appName}.${exportName}`;
      this.tasks.set(name, { name, exportName, options });
    }
  }

  /** Connects, starts the pool, sweeps, answers remote control and starts consuming. */
  async start(): Promise<this> {
    await this.#loadApp();
    this.#started = Date.now();
    const pool = new Pool({
      processes: this.concurrency,
      maxtasksperchild: this.options.maxTasksPerChild ?? null,
      maxMemoryPerChild: this.options.maxMemoryPerChild ?? null,
      loadLimits: this.#loadLimits,
      enableTimeouts: true,
      // A job is written to a pool process only when it is idle, so it starts
      // at once; until then it waits in this process, where a revoke, an
      // expiry or a shutdown drops it (its AbortSignal). Once written it runs,
      // as a job Celery's prefork pool has taken (see waitingInPool). No
      // synack, as Celery's: the confirmation cost a pipe write and a wake-up
      // of the pool process per task, about 10% of throughput.
      prefetch: 1,
      synack: false,
      initializer: initApp,
      initargs: [this.#appUrl],
      context: this.options.context ?? null,
    });
    this.#pool = pool;
    // Ready once its pool processes have imported the app, as a prefork
    // worker's forked processes have: one warm-up job each (the pool hands
    // jobs to idle processes first). Not with maxTasksPerChild, where the
    // warm-up would count as a task.
    if (this.options.maxTasksPerChild === undefined || this.options.maxTasksPerChild === null) {
      await Promise.all(Array.from({ length: this.concurrency }, () => pool.applyAsync(warmUp, []).get(120)));
    }
    for (const q of this.queues) await this.transport.declareQueue(q);
    await this.transport.commands.sadd('_kombu.binding.celery.pidbox', `${this.transport.sep}${this.transport.sep}${this.hostname}.celery.pidbox`);
    await this.transport.subscribeFanout('celery.pidbox', (_channel, raw) => {
      this.#onControl(raw).catch((e: unknown) => this.#emitLog('error', `Control command error: ${(e as Error).message}`));
    });
    await this.#sweep();
    const every = this.options.sweepInterval ?? 100;
    if (every > 0) {
      this.#sweepTimer = setInterval(() => void this.#sweep(), every * 1000);
      this.#sweepTimer.unref();
    }
    if (this.options.heartbeat !== false) {
      await this.#workerEvent('worker-online');
      this.#heartbeatTimer = setInterval(() => void this.#workerEvent('worker-heartbeat'), (this.options.heartbeatInterval ?? 2) * 1000);
      this.#heartbeatTimer.unref();
    }
    this.#emitLog('info', `${this.hostname} ready.`);
    this.#consuming = true;
    this.#loop = this.#consume();
    this.emit('ready');
    return this;
  }

  async #sweep(): Promise<void> {
    try {
      const n = await this.transport.sweep();
      if (n) this.#emitLog('info', `Restored ${n} unacknowledged message(s) past the visibility timeout`);
    } catch (e) {
      this.#emitLog('error', `visibility sweep failed: ${(e as Error).message}`);
    }
  }

  /** Held jobs not acknowledged yet (kept as a count: #room() runs before every pop). */
  #unackedCount = 0;

  /** The job counts as acknowledged from now on (its message is, or is being, acked or put back). */
  #settle(job: Job): void {
    if (job.acked) return;
    job.acked = true;
    this.#unackedCount--;
  }

  /** The job leaves this worker (acknowledged or not: one not acknowledged stays in unacked for a sweep). */
  #forget(job: Job): void {
    if (this.#held.delete(job.seq) && !job.acked) this.#unackedCount--;
    job.acked = true;
  }

  #poke(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
    if (this.#idle !== null && this.#active.size === 0 && this.#finishing === 0) {
      const idle = this.#idle;
      this.#idle = null;
      idle();
    }
  }

  /** Deliveries the prefetch limit still allows (Infinity without a limit). */
  #room(): number {
    if (this.#prefetch === 0) return Infinity;
    return this.#prefetch + this.#etaCount - this.#unackedCount - this.#inflight.size;
  }

  #handle(d: Delivery): void {
    // The next pop need not wait for this delivery's handling; it counts
    // against prefetch meanwhile.
    const handled: Promise<void> = this.#onDelivery(d)
      .catch((e: unknown) => this.#emitLog('critical', `error while handling a message (the worker goes on): ${(e as Error).stack ?? String(e)}`))
      .finally(() => {
        this.#inflight.delete(handled);
        this.#poke();
      });
    this.#inflight.add(handled);
  }

  async #consume(): Promise<void> {
    let backoff = 0;
    while (this.#consuming) {
      const room = this.#room();
      if (room <= 0) {
        await new Promise<void>((r) => (this.#wake = r));
        continue;
      }
      let batch: Delivery[];
      try {
        // Whatever waits is taken at once (and recorded in the same step);
        // only an empty queue is waited on with BRPOP.
        batch = await this.transport.popMany(this.queues, Math.min(room, 100), this.#maxMessageBytes, this.options.deadLetterQueue ?? null);
        if (batch.length === 0) {
          const d = await this.transport.pop(this.queues);
          batch = d === null ? [] : [d];
        }
        backoff = 0;
      } catch (e) {
        if (!this.#consuming) break;
        this.#emitLog('error', `consumer: cannot read from the broker (${(e as Error).message}); retrying`);
        backoff = Math.min(backoff + 1, 5);
        await new Promise((r) => setTimeout(r, backoff * 1000));
        continue;
      }
      for (const d of batch) this.#handle(d);
    }
    await Promise.all(this.#inflight);
  }

  /** Logs, reports and keeps (in the dead-letter list, unless `kept` already) a message that cannot be used. */
  async #drop(raw: Buffer, reason: string, kept = false): Promise<void> {
    this.#emitLog('error', `Dropped a message that cannot be used: ${reason}.${raw.length > 0 ? ` Raw: ${truncated(raw)}` : ''}`);
    this.emit('rejected', { reason, raw });
    const dlq = this.options.deadLetterQueue;
    if (dlq && !kept) await this.transport.commands.lpush(dlq, raw).catch(() => {});
  }

  async #onDelivery(d: Delivery): Promise<void> {
    const { queue, raw } = d;
    const size = d.oversize ?? raw.length;
    if (this.#maxMessageBytes > 0 && size > this.#maxMessageBytes) {
      // Left in Redis by the batch pop (in the dead-letter list already), or taken whole by BRPOP; never decoded.
      if (d.recordedTag) await this.transport.ack(d.recordedTag);
      await this.#drop(raw, `a message of ${size} bytes, over maxMessageBytes (${this.#maxMessageBytes})`, d.oversize !== undefined);
      return;
    }
    let env: Envelope;
    try {
      env = parseEnvelope(raw);
    } catch (e) {
      // Recorded by the batch pop but unusable here: it leaves unacked too.
      if (d.recordedTag) await this.transport.ack(d.recordedTag);
      await this.#drop(raw, (e as Error).message);
      return;
    }
    const tag = env.properties.delivery_tag;
    // The script recorded the tag's bytes as Redis's cjson read them; a tag
    // JavaScript reads otherwise (escaped surrogates) is recorded again as it
    // will be acknowledged.
    if (d.recordedTag === undefined || d.recordedTag === null || !d.recordedTag.equals(Buffer.from(tag))) {
      if (d.recordedTag) await this.transport.ack(d.recordedTag);
      await this.transport.recordDelivery(tag, raw.toString('utf8'), env.properties.delivery_info.exchange, env.properties.delivery_info.routing_key);
    }
    const headers = env.headers;
    const name = headers.task;
    const id = headers.id;
    const ackAndLog = async (level: LogLevel, message: string): Promise<void> => {
      this.#emitLog(level, `${message}. Raw: ${truncated(raw)}`);
      this.emit('rejected', { reason: message, raw });
      await this.transport.ack(tag);
    };
    if (typeof name !== 'string') return ackAndLog('warning', 'Received and deleted unknown message. Wrong destination?!?');
    if (typeof id !== 'string' || id === '') return ackAndLog('error', `Received invalid task message: task ${pyRepr(name)} has no id`);
    const entry = this.tasks.get(name);
    const base = { taskId: id, parentId: typeof headers.parent_id === 'string' ? headers.parent_id : null, groupId: typeof headers.group === 'string' ? headers.group : null };
    if (entry === undefined) {
      this.#emitLog('error', `Received unregistered task of type '${name}'. The message has been ignored and discarded.`);
      await this.#storeFailure(base, { excModule: 'celery.exceptions', excType: 'NotRegistered', excMessage: [name] }, null);
      this.emit('rejected', { reason: `unregistered task ${name}`, raw });
      await this.transport.ack(tag);
      return;
    }
    let body;
    let eta: number | null;
    let expires: number | null;
    try {
      body = taskBody(decodeBody(env, this.#accept, this.#loadLimits));
      eta = parseDateHeader(headers.eta, 'eta');
      expires = parseDateHeader(headers.expires, 'expires');
    } catch (e) {
      const disallowed = e instanceof ContentDisallowed;
      const rec: ExceptionRecord = { excModule: 'kombu.exceptions', excType: disallowed ? 'ContentDisallowed' : 'DecodeError', excMessage: [(e as Error).message] };
      if (e instanceof MessageError) {
        await this.#storeFailure(base, rec, null);
        return ackAndLog(disallowed ? 'error' : 'critical', `Received invalid task message ${name}[${id}]: ${(e as Error).message}`);
      }
      throw e;
    }
    const limits = Array.isArray(headers.timelimit) ? (headers.timelimit as unknown[]) : [];
    const num = (v: unknown): number | null => (typeof v === 'number' && v > 0 ? v : null);
    const opts = entry.options;
    const job: Job = {
      seq: ++this.#seq,
      tag,
      env,
      queue,
      id,
      name,
      entry,
      args: body.args,
      kwargs: body.kwargs,
      embed: body.embed,
      eta,
      expires,
      hard: num(limits[0]) ?? opts.timeLimit ?? this.options.timeLimit ?? null,
      soft: num(limits[1]) ?? opts.softTimeLimit ?? this.options.softTimeLimit ?? null,
      acksLate: opts.acksLate ?? this.options.acksLate ?? false,
      ignoreResult: opts.ignoreResult === true || headers.ignore_result === true,
      acked: false,
      state: 'received',
      timer: null,
      timeStart: null,
      workerPid: null,
      result: null,
      terminated: false,
      controller: null,
      expiryTimer: null,
    };
    this.#held.set(job.seq, job);
    this.#unackedCount++;
    this.#emitLog('info', `Task ${name}[${id}] received`);
    this.#taskEvent('task-received', job, () => ({
      name,
      args: pyRepr(job.args),
      kwargs: pyRepr(job.kwargs),
      root_id: headers.root_id ?? null,
      parent_id: headers.parent_id ?? null,
      retries: headers.retries ?? 0,
      eta: headers.eta ?? null,
      expires: headers.expires ?? null,
    }));
    if (await this.#discardIfRevoked(job)) return;
    if (eta !== null && eta > Date.now()) {
      job.state = 'scheduled';
      this.#etaCount++;
      // A Timer re-arms past setTimeout's 24.8 days.
      job.timer = new Timer((eta - Date.now()) / 1000, () => {
        job.timer = null;
        this.#etaCount--;
        this.#reserve(job);
      });
      this.#poke();
      return;
    }
    this.#reserve(job);
  }

  #isRevoked(id: string): boolean {
    const key = revokedKey(id);
    const t = this.#revoked.get(key);
    if (t === undefined) return false;
    if (Date.now() - t > REVOKED_EXPIRE_MS) {
      this.#revoked.delete(key);
      return false;
    }
    return true;
  }

  #addRevoked(id: string, when = Date.now()): void {
    const key = revokedKey(id);
    this.#revoked.delete(key);
    this.#revoked.set(key, when);
    while (this.#revoked.size > REVOKED_MAX) {
      const first = this.#revoked.keys().next().value as string;
      this.#revoked.delete(first);
    }
  }

  /** Revoked or expired: REVOKED stored, acknowledged, forgotten (R-15). */
  async #discardIfRevoked(job: Job): Promise<boolean> {
    const expired = job.expires !== null && job.expires <= Date.now();
    if (!expired && !this.#isRevoked(job.id)) return false;
    this.#taskEvent('task-revoked', job, () => ({ terminated: false, signum: null, expired }));
    this.#emitLog('info', `Discarding revoked task: ${job.name}[${job.id}]`);
    this.#addRevoked(job.id);
    if (!job.ignoreResult) {
      await this.#storeFailure(this.#base(job), { excModule: 'celery.exceptions', excType: 'TaskRevokedError', excMessage: [expired ? 'expired' : 'revoked'] }, null, 'REVOKED');
    }
    await this.#finish(job);
    return true;
  }

  #base(job: Job): { taskId: string; parentId: string | null; groupId: string | null } {
    const h = job.env.headers;
    return { taskId: job.id, parentId: typeof h.parent_id === 'string' ? h.parent_id : null, groupId: typeof h.group === 'string' ? h.group : null };
  }

  #reserve(job: Job): void {
    job.state = 'reserved';
    this.#reserved.push(job);
    this.#pump();
  }

  #pump(): void {
    // Every reserved job waits in the pool, handed to the next process that
    // frees without a trip through this loop; one waiting there is still
    // dropped if revoked or expired before it starts (the pool hands a job
    // only to an idle process, so none waits behind a long one).
    while (this.#reserved.length > 0 && this.#pool !== null) {
      const job = this.#reserved.shift() as Job;
      if (job.state !== 'reserved') continue;
      if ((job.expires !== null && job.expires <= Date.now()) || this.#isRevoked(job.id)) {
        this.#active.add(job);
        void this.#discardIfRevoked(job).finally(() => {
          this.#active.delete(job);
          this.#pump();
        });
        continue;
      }
      this.#dispatch(job);
    }
  }

  /** The request the task sees (`currentRequest()`), packed to travel to the pool process. */
  #packedRequest(job: Job): PackedRequest {
    const h = job.env.headers;
    const p = job.env.properties;
    const info = p.delivery_info;
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    const opts = job.entry.options;
    return [
      job.id,
      job.name,
      typeof h.retries === 'number' ? h.retries : 0,
      str(h.root_id),
      str(h.parent_id),
      str(h.group),
      typeof h.group_index === 'number' ? h.group_index : null,
      str(h.eta),
      str(h.expires),
      this.hostname,
      str(p.correlation_id) ?? job.id,
      str(p.reply_to),
      str(h.origin),
      h.redelivered === true || info.redelivered === true,
      info.exchange,
      info.routing_key,
      typeof p.priority === 'number' ? p.priority : 0,
      info.redelivered === true ? true : null,
      job.hard,
      job.soft,
      opts.maxRetries === undefined ? 3 : opts.maxRetries,
      opts.defaultRetryDelay ?? 180,
    ];
  }

  #dispatch(job: Job): void {
    const pool = this.#pool as Pool;
    job.state = 'active';
    this.#active.add(job);
    const trackStarted = job.entry.options.trackStarted ?? this.options.trackStarted ?? false;
    let result: ApplyResult<Outcome>;
    const controller = new AbortController();
    job.controller = controller;
    if (job.expires !== null) {
      job.expiryTimer = new Timer(Math.max(0, job.expires - Date.now()) / 1000, () => {
        if (waitingInPool(job)) controller.abort(new Discarded('expired'));
      });
    }
    try {
      result = pool.applyAsync(runTask, [job.entry.exportName, job.args, job.kwargs, this.#packedRequest(job)], {
        timeout: job.hard,
        softTimeout: job.soft,
        signal: controller.signal,
        acceptCallback: (pid) => {
          job.expiryTimer?.cancel();
          job.expiryTimer = null;
          job.workerPid = pid;
          job.timeStart = Date.now() / 1000;
          this.#taskEvent('task-started', job);
          if (!job.acksLate) void this.#ack(job);
          if (trackStarted && !job.ignoreResult) void this.#store({ ...this.#base(job), status: 'STARTED', result: { pid, hostname: this.hostname }, traceback: null, children: [], dateDone: null });
        },
      });
    } catch (e) {
      this.#active.delete(job);
      void this.#afterPoolError(job, e).finally(() => this.#pump());
      return;
    }
    job.result = result;
    // The pool process is free as soon as its part is over: the next job is
    // dispatched while this one's result is stored.
    const over = (): void => {
      job.expiryTimer?.cancel();
      job.expiryTimer = null;
      this.#active.delete(job);
      this.#finishing++;
      this.#processed++;
      this.#total.set(job.name, (this.#total.get(job.name) ?? 0) + 1);
      this.#pump();
    };
    result
      .get()
      .then(
        (outcome) => {
          over();
          return this.#cold ? undefined : this.#afterOutcome(job, outcome);
        },
        (err: unknown) => {
          over();
          return this.#cold ? undefined : this.#afterPoolError(job, err);
        },
      )
      .catch((e: unknown) => {
        // (the broker failed under a retry's publish, say): the message stays
        // in unacked for a sweep to restore, and leaves this worker's window.
        this.#emitLog('critical', `error after task ${job.name}[${job.id}]: ${(e as Error).stack ?? String(e)}`);
        this.#forget(job);
      })
      .finally(() => {
        this.#finishing--;
        this.#poke();
      });
  }

  async #ack(job: Job): Promise<void> {
    if (job.acked) return;
    this.#settle(job);
    try {
      await this.transport.ack(job.tag);
    } catch (e) {
      this.#emitLog('error', `could not acknowledge ${job.name}[${job.id}]: ${(e as Error).message}`);
    }
    this.#poke();
  }

  /** The job leaves this worker: acknowledged (if not yet) and forgotten. */
  async #finish(job: Job): Promise<void> {
    job.state = 'done';
    await this.#ack(job);
    this.#forget(job);
    this.#poke();
  }

  /** The job leaves this worker with its message put back at the end of its queue (a reject with requeue, R-11). */
  async #requeue(job: Job): Promise<void> {
    this.#settle(job);
    job.state = 'done';
    try {
      await this.transport.restore(job.tag, false);
    } finally {
      this.#forget(job);
      this.#poke();
    }
  }

  async #store(meta: ResultMeta): Promise<void> {
    if (this.backend === null) return;
    try {
      await this.backend.store(meta);
    } catch (e) {
      const reason = (e as Error).message;
      this.#emitLog('error', `could not store the result of ${meta.taskId}: ${reason}`);
      if (meta.status === 'SUCCESS' || meta.status === 'FAILURE') {
        const rec: ExceptionRecord = { excModule: 'kombu.exceptions', excType: 'EncodeError', excMessage: [reason] };
        try {
          await this.backend.store({ ...meta, status: 'FAILURE', result: this.backend.exceptionResult(rec), traceback: null });
        } catch (e2) {
          this.#emitLog('error', `could not store the failure of ${meta.taskId}: ${(e2 as Error).message}`);
        }
      }
    }
  }

  async #storeFailure(base: { taskId: string; parentId: string | null; groupId: string | null }, rec: ExceptionRecord, traceback: string | null, status: TaskState = 'FAILURE'): Promise<void> {
    if (this.backend === null) return;
    await this.#store({ ...base, status, result: this.backend.exceptionResult(rec), traceback, children: [], dateDone: naiveUtcNow() });
  }

  /** Publishes a signature as a task message (a chain step, callback or errback). */
  async #publishSignature(sig: Signature, args: unknown[], parent: Job, extra?: { embed?: Partial<Embed> }): Promise<string> {
    const opts = sig.options;
    const id = typeof opts.task_id === 'string' ? opts.task_id : randomUUID();
    const queue = typeof opts.queue === 'string' ? opts.queue : typeof opts.routing_key === 'string' ? opts.routing_key : 'celery';
    const h = parent.env.headers;
    const msg = buildTaskMessage({
      name: sig.task,
      id,
      args,
      kwargs: sig.kwargs,
      embed: extra?.embed,
      rootId: typeof h.root_id === 'string' ? h.root_id : parent.id,
      parentId: parent.id,
      queue,
      priority: typeof opts.priority === 'number' ? opts.priority : 0,
      serializer: parent.env['content-type'] === PICKLE_TYPE ? 'pickle' : 'json',
      origin: this.hostname,
      timeLimit: typeof opts.time_limit === 'number' ? opts.time_limit : null,
      softTimeLimit: typeof opts.soft_time_limit === 'number' ? opts.soft_time_limit : null,
      countdown: typeof opts.countdown === 'number' ? opts.countdown : null,
      replyTo: typeof opts.reply_to === 'string' ? opts.reply_to : undefined,
    });
    await this.transport.declareQueue(queue);
    await this.transport.push(queue, msg.text, msg.priority);
    return id;
  }

  async #afterOutcome(job: Job, outcome: Outcome): Promise<void> {
    const base = this.#base(job);
    if (job.terminated) return this.#finish(job);
    switch (outcome.s) {
      case 'ok': {
        const children: unknown[] = [];
        const chain = job.embed.chain;
        if (chain && chain.length > 0) {
          const rest = chain.slice(0, -1);
          const next = chain[chain.length - 1] as Signature;
          const args = next.immutable ? next.args : [outcome.v, ...next.args];
          try {
            const id = await this.#publishSignature(next, args, job, { embed: { chain: rest } });
            children.push([[id, null], null]);
          } catch (e) {
            this.#emitLog('error', `could not send the next chain step of ${job.name}[${job.id}]: ${(e as Error).message}`);
          }
        }
        if (!job.ignoreResult) await this.#store({ ...base, status: 'SUCCESS', result: outcome.v, traceback: null, children, dateDone: naiveUtcNow() });
        for (const cb of job.embed.callbacks ?? []) {
          await this.#publishSignature(cb, cb.immutable ? cb.args : [outcome.v, ...cb.args], job).catch((e: unknown) => this.#emitLog('error', `could not send a callback of ${job.id}: ${(e as Error).message}`));
        }
        await this.#chordPart(job, 'SUCCESS', outcome.v);
        this.#taskEvent('task-succeeded', job, () => ({ result: pyRepr(outcome.v), runtime: job.timeStart === null ? 0 : Date.now() / 1000 - job.timeStart }));
        this.#emitLog('info', `Task ${job.name}[${job.id}] succeeded: ${pyRepr(outcome.v, 256)}`);
        return this.#finish(job);
      }
      case 'fail': {
        const rec: ExceptionRecord = { excModule: outcome.m, excType: outcome.t, excMessage: outcome.a };
        this.#emitLog('error', `Task ${job.name}[${job.id}] raised unexpected: ${outcome.t}(${outcome.a.map((x) => pyRepr(x, 256)).join(', ')})`);
        await this.#failed(job, rec, outcome.tb);
        return this.#finish(job);
      }
      case 'retry':
        return this.#retry(job, outcome);
      case 'reject':
        this.#emitLog('info', `Task ${job.name}[${job.id}] rejected (requeue: ${outcome.requeue}): ${outcome.msg}`);
        this.#taskEvent('task-rejected', job, () => ({ requeue: outcome.requeue }));
        if (outcome.requeue && job.acksLate && !job.acked) return this.#requeue(job);
        return this.#finish(job);
      case 'ignore':
        return this.#finish(job);
      default:
        return this.#finish(job);
    }
  }

  /**
   * A chord header part is counted (3.8); the part that completes the chord
   * sends its body with every part's result, or stores the body's FAILURE
   * (ChordError) when a part failed.
   */
  async #chordPart(job: Job, state: TaskState, result: unknown): Promise<void> {
    const body = job.embed.chord;
    const h = job.env.headers;
    if (body === null || this.backend === null || typeof h.group !== 'string') return;
    const index = typeof h.group_index === 'number' ? h.group_index : 0;
    try {
      const parts = await this.backend.chordPartReturn(h.group, index, job.id, state, result);
      if (parts === null) return;
      const failed = parts.find((p) => p[2] !== 'SUCCESS');
      const bodyId = typeof body.options.task_id === 'string' ? body.options.task_id : null;
      if (failed !== undefined) {
        if (bodyId !== null) {
          const exc = exceptionFromRecord(failed[3], null);
          const rec: ExceptionRecord = { excModule: 'celery.exceptions', excType: 'ChordError', excMessage: [`Dependency ${failed[1]} raised ${exc.pyName}(${exc.args.map((a) => pyRepr(a, 200)).join(', ')})`] };
          await this.#storeFailure({ taskId: bodyId, parentId: job.id, groupId: null }, rec, null);
        }
        return;
      }
      const results = parts.map((p) => p[3]);
      await this.#publishSignature(body, body.immutable ? body.args : [results, ...body.args], job);
    } catch (e) {
      this.#emitLog('error', `chord part of ${job.name}[${job.id}] (group ${h.group}): ${(e as Error).message}`);
    }
  }

  /** FAILURE stored (unless ignored), errbacks sent, a chord part counted. */
  async #failed(job: Job, rec: ExceptionRecord, traceback: string | null): Promise<void> {
    this.#taskEvent('task-failed', job, () => ({ exception: `${rec.excType}(${rec.excMessage.map((a) => pyRepr(a, 200)).join(', ')})`, traceback }));
    if (!job.ignoreResult) await this.#storeFailure(this.#base(job), rec, traceback);
    if (job.embed.chord !== null && this.backend !== null) await this.#chordPart(job, 'FAILURE', this.backend.exceptionResult(rec));
    for (const eb of job.embed.errbacks ?? []) {
      await this.#publishSignature(eb, eb.immutable ? eb.args : [job.id, ...eb.args], job).catch((e: unknown) => this.#emitLog('error', `could not send an errback of ${job.id}: ${(e as Error).message}`));
    }
  }

  async #retry(job: Job, r: Extract<Outcome, { s: 'retry' }>): Promise<void> {
    const h = job.env.headers;
    const retries = (typeof h.retries === 'number' ? h.retries : 0) + 1;
    const eta = r.eta ?? Date.now() + (r.countdown ?? 0) * 1000;
    const props = job.env.properties;
    const msg = buildTaskMessage({
      name: job.name,
      id: job.id,
      args: job.args,
      kwargs: job.kwargs,
      embed: job.embed,
      eta,
      expires: job.expires,
      timeLimit: Array.isArray(h.timelimit) ? ((h.timelimit[0] as number | null) ?? null) : null,
      softTimeLimit: Array.isArray(h.timelimit) ? ((h.timelimit[1] as number | null) ?? null) : null,
      retries,
      rootId: typeof h.root_id === 'string' ? h.root_id : job.id,
      parentId: job.id,
      group: typeof h.group === 'string' ? h.group : null,
      groupIndex: typeof h.group_index === 'number' ? h.group_index : null,
      shadow: typeof h.shadow === 'string' ? h.shadow : null,
      ignoreResult: h.ignore_result === true,
      priority: typeof props.priority === 'number' ? props.priority : 0,
      queue: props.delivery_info.routing_key || job.queue,
      serializer: job.env['content-type'] === PICKLE_TYPE ? 'pickle' : 'json',
      origin: this.hostname,
      replyTo: typeof props.reply_to === 'string' ? props.reply_to : undefined,
      extraProperties: { replaced_task_nesting: 0, origin: typeof h.origin === 'string' ? h.origin : this.hostname },
    });
    await this.transport.push(msg.queue, msg.text, msg.priority);
    if (!job.ignoreResult && this.backend !== null) {
      const rec: ExceptionRecord = r.t !== null && r.m !== null ? { excModule: r.m, excType: r.t, excMessage: r.a ?? [] } : { excModule: 'celery.exceptions', excType: 'Retry', excMessage: [r.msg] };
      await this.#store({ ...this.#base(job), status: 'RETRY', result: this.backend.exceptionResult(rec), traceback: r.tb, children: [[[job.id, null], null]], dateDone: null });
    }
    this.#emitLog('info', `Task ${job.name}[${job.id}] retry: ${r.msg}`);
    this.#taskEvent('task-retried', job, () => ({ exception: r.msg, traceback: r.tb }));
    return this.#finish(job);
  }

  async #afterPoolError(job: Job, err: unknown): Promise<void> {
    if (job.terminated) return this.#finish(job);
    // Put back by a warm shutdown (see shutdown()).
    if (err instanceof Discarded && err.kind === 'shutdown') return;
    if (err instanceof Discarded) {
      this.#emitLog('info', `Discarding revoked task: ${job.name}[${job.id}]`);
      this.#addRevoked(job.id);
      if (!job.ignoreResult) await this.#storeFailure(this.#base(job), { excModule: 'celery.exceptions', excType: 'TaskRevokedError', excMessage: [err.kind] }, null, 'REVOKED');
      return this.#finish(job);
    }
    if (err instanceof TimeLimitExceeded) {
      this.#emitLog('error', `Hard time limit (${job.hard}s) exceeded for ${job.name}[${job.id}]`);
      await this.#failed(job, { excModule: 'billiard.exceptions', excType: 'TimeLimitExceeded', excMessage: [job.hard] }, null);
      return this.#finish(job);
    }
    if (err instanceof WorkerLostError) {
      const reject = job.acksLate && job.entry.options.rejectOnWorkerLost === true;
      if (reject && !job.acked) {
        this.#emitLog('error', `Task ${job.name}[${job.id}]: its pool process was lost; the message goes back to the queue`);
        return this.#requeue(job);
      }
      this.#emitLog('error', `Task handler raised error: ${err.message}`);
      await this.#failed(job, { excModule: 'billiard.exceptions', excType: 'WorkerLostError', excMessage: [err.message] }, null);
      return this.#finish(job);
    }
    if (err instanceof Terminated) return this.#finish(job);
    const rec = exceptionRecord(err);
    this.#emitLog('error', `Task ${job.name}[${job.id}] failed in the pool: ${(err as Error).message ?? String(err)}`);
    await this.#failed(job, rec, err instanceof Error ? (err.stack ?? null) : null);
    return this.#finish(job);
  }

  // ----- remote control (section 4) -----

  async #onControl(raw: Buffer): Promise<void> {
    let env: Envelope;
    let body: Record<string, unknown>;
    try {
      env = parseEnvelope(raw);
      const decoded = decodeBody(env, new Set([JSON_TYPE]));
      if (decoded === null || typeof decoded !== 'object' || Array.isArray(decoded)) throw new MessageError('the control body is not an object');
      body = decoded as Record<string, unknown>;
    } catch (e) {
      this.#emitLog('warning', `ignored a bad control message: ${(e as Error).message}. Raw: ${truncated(raw)}`);
      return;
    }
    const clock = env.headers.clock;
    if (typeof clock === 'number' && clock > this.#clock) this.#clock = clock;
    this.#clock++;
    const dest = body.destination;
    if (Array.isArray(dest) && dest.length > 0) {
      if (!dest.includes(this.hostname)) return;
    } else if (typeof body.pattern === 'string' && body.pattern !== '') {
      const matcher = body.matcher;
      // A pattern is a peer's input: a long one is not compiled.
      const ok = body.pattern.length <= 256 && (matcher === 'pcre' ? safeRegex(body.pattern, this.hostname) : globMatch(body.pattern, this.hostname));
      if (!ok) return;
    }
    const method = typeof body.method === 'string' ? body.method : '';
    const args = (body.arguments !== null && typeof body.arguments === 'object' ? body.arguments : {}) as Record<string, unknown>;
    let reply: unknown;
    try {
      reply = await this.#command(method, args);
    } catch (e) {
      reply = { error: `${(e as Error).name ?? 'Error'}(${pyRepr((e as Error).message ?? String(e))})` };
    }
    const replyTo = body.reply_to as { exchange?: unknown; routing_key?: unknown } | undefined;
    if (reply === undefined || replyTo === null || typeof replyTo !== 'object' || typeof replyTo.routing_key !== 'string') return;
    const exchange = typeof replyTo.exchange === 'string' ? replyTo.exchange : 'reply.celery.pidbox';
    this.#clock++;
    const text = buildJsonEnvelope(
      { [this.hostname]: reply },
      { ticket: body.ticket ?? null, clock: this.#clock },
      { delivery_mode: 1, delivery_info: { exchange, routing_key: replyTo.routing_key }, priority: 0 },
    );
    await this.transport.publishDirect(exchange, replyTo.routing_key, text);
  }

  #info(job: Job, safe = false): Record<string, unknown> {
    const info = job.env.properties.delivery_info;
    return {
      id: job.id,
      name: job.name,
      args: safe ? pyRepr(job.args) : job.args,
      kwargs: safe ? pyRepr(job.kwargs) : job.kwargs,
      type: job.name,
      hostname: this.hostname,
      time_start: job.timeStart,
      acknowledged: job.acked,
      delivery_info: { exchange: info.exchange, routing_key: info.routing_key, priority: job.env.properties.priority ?? 0, redelivered: info.redelivered ?? null },
      worker_pid: job.workerPid,
    };
  }

  #revokedReply(): Record<string, [number, string]> {
    const out: Record<string, [number, string]> = {};
    for (const [id, t] of this.#revoked) out[id] = [t / 1000, id];
    return out;
  }

  async #command(method: string, args: Record<string, unknown>): Promise<unknown> {
    const jobs = [...this.#held.values()];
    switch (method) {
      case 'ping':
        return { ok: 'pong' };
      case 'hello': {
        if (args.from_node === this.hostname) return null;
        const revoked = args.revoked;
        if (revoked !== null && typeof revoked === 'object') {
          for (const [id, v] of Object.entries(revoked as Record<string, unknown>)) {
            const t = Array.isArray(v) ? v[0] : v;
            if (typeof t === 'number') this.#addRevoked(id, t * 1000);
          }
        }
        return { revoked: this.#revokedReply(), clock: this.#clock };
      }
      case 'active':
        return [...this.#active].filter((j) => j.timeStart !== null).map((j) => this.#info(j, args.safe === true));
      case 'reserved':
        return jobs.filter((j) => j.state === 'reserved' || (j.state === 'active' && j.timeStart === null)).map((j) => this.#info(j));
      case 'scheduled':
        return jobs
          .filter((j) => j.state === 'scheduled')
          .map((j) => ({ eta: typeof j.env.headers.eta === 'string' ? j.env.headers.eta : null, priority: j.env.properties.priority ?? 0, request: this.#info(j) }));
      case 'revoked':
        return [...this.#revoked.keys()];
      case 'query_task': {
        const ids = Array.isArray(args.ids) ? args.ids : typeof args.ids === 'string' ? [args.ids] : [];
        const out: Record<string, unknown> = {};
        for (const j of jobs) if (ids.includes(j.id)) out[j.id] = [j.timeStart !== null ? 'active' : 'reserved', this.#info(j)];
        return out;
      }
      case 'revoke':
      case 'terminate':
        return this.#revoke(args, method === 'terminate' || args.terminate === true);
      case 'stats':
        return this.#stats();
      case 'registered':
        return [...this.tasks.keys()].sort();
      case 'active_queues':
        return this.queues.map((q) => ({
          name: q,
          exchange: { name: q, type: 'direct', arguments: null, durable: true, passive: false, auto_delete: false, delivery_mode: null, no_declare: false },
          routing_key: q,
          queue_arguments: null,
          binding_arguments: null,
          consumer_arguments: null,
          durable: true,
          exclusive: false,
          auto_delete: false,
          no_ack: false,
          alias: null,
          bindings: [],
          no_declare: null,
          expires: null,
          message_ttl: null,
          max_length: null,
          max_length_bytes: null,
          max_priority: null,
        }));
      case 'clock':
        return { clock: this.#clock };
      case 'shutdown':
        setImmediate(() => void this.shutdown());
        return undefined;
      default:
        return { error: `KeyError('${method.replace(/'/g, "\\'")}')` };
    }
  }

  async #revoke(args: Record<string, unknown>, terminate: boolean): Promise<unknown> {
    const raw = args.task_id;
    const ids = (Array.isArray(raw) ? raw : [raw]).filter((x): x is string => typeof x === 'string');
    for (const id of ids) this.#addRevoked(id);
    this.#emitLog('info', `Tasks flagged as revoked: ${ids.map((id) => (id.length > REVOKED_ID_CHARS ? `${id.slice(0, 64)}... (${id.length} characters)` : id)).join(', ')}`);
    // Those still waiting in the pool are dropped there.
    for (const job of this.#active) if (ids.includes(job.id) && waitingInPool(job)) job.controller?.abort(new Discarded('revoked'));
    if (!terminate) return { ok: `tasks ${ids.join(', ')} flagged as revoked` };
    const signal = signalOf(args.signal);
    const hit: string[] = [];
    for (const job of this.#active) {
      if (!ids.includes(job.id) || job.result === null || job.timeStart === null) continue;
      job.terminated = true;
      hit.push(job.id);
      if (!job.ignoreResult) {
        await this.#storeFailure(this.#base(job), { excModule: 'celery.exceptions', excType: 'TaskRevokedError', excMessage: ['terminated'] }, null, 'REVOKED');
      }
      job.result.terminate(signal);
    }
    return hit.length === 0 ? { ok: 'terminate: tasks unknown' } : { ok: `terminate: ${hit.join(', ')}` };
  }

  #stats(): Record<string, unknown> {
    const pool = this.#pool;
    const usage = process.resourceUsage();
    return {
      total: Object.fromEntries(this.#total),
      pid: process.pid,
      clock: String(this.#clock),
      uptime: Math.round((Date.now() - this.#started) / 1000),
      pool: {
        'max-concurrency': this.concurrency,
        processes: pool?.pids ?? [],
        'max-tasks-per-child': this.options.maxTasksPerChild ?? 'N/A',
        'put-guarded-by-semaphore': false,
        timeouts: [this.options.softTimeLimit ?? 0, this.options.timeLimit ?? 0],
        writes: { total: this.#processed, avg: '0.00%', all: '', raw: '', strategy: 'fair', inqueues: { total: this.concurrency, active: this.#active.size } },
      },
      broker: { transport: 'redis', hostname: new URL(this.options.broker).hostname, port: Number(new URL(this.options.broker).port || 6379), virtual_host: String(this.transport.db) },
      prefetch_count: this.#prefetch,
      rusage: { utime: usage.userCPUTime / 1e6, stime: usage.systemCPUTime / 1e6, maxrss: usage.maxRSS },
      sw_ident: 'billiard-ts',
    };
  }

  #eventBatch: Array<Record<string, unknown>> = [];

  /** A task event (4.5): batched, published as one task.multi array per turn of the event loop. */
  #taskEvent(type: string, job: Job, fields?: () => Record<string, unknown>): void {
    if (this.options.taskEvents !== true) return;
    this.#clock++;
    this.#eventBatch.push({ hostname: this.hostname, utcoffset: 0, pid: process.pid, clock: this.#clock, uuid: job.id, ...fields?.(), timestamp: Date.now() / 1000, type });
    if (this.#eventBatch.length === 1) {
      setImmediate(() => {
        const batch = this.#eventBatch;
        this.#eventBatch = [];
        const text = buildJsonEnvelope(batch, { hostname: this.hostname }, { delivery_mode: 1, delivery_info: { exchange: 'celeryev', routing_key: 'task.multi' }, priority: 0 });
        this.transport.publishFanout('celeryev', 'task.multi', text).catch((e: unknown) => this.#emitLog('warning', `could not send task events: ${(e as Error).message}`));
      });
    }
  }

  async #workerEvent(type: 'worker-online' | 'worker-heartbeat' | 'worker-offline'): Promise<void> {
    this.#clock++;
    const body = {
      hostname: this.hostname,
      utcoffset: 0,
      pid: process.pid,
      clock: this.#clock,
      freq: this.options.heartbeatInterval ?? 2,
      active: this.#active.size,
      processed: this.#processed,
      loadavg: loadavg().map((x) => Math.round(x * 100) / 100),
      sw_ident: 'billiard-ts',
      sw_ver: '0.1.0',
      sw_sys: process.platform === 'linux' ? 'Linux' : process.platform,
      timestamp: Date.now() / 1000,
      type,
    };
    const rk = type.replace(/-/g, '.');
    const text = buildJsonEnvelope(body, { hostname: this.hostname }, { delivery_mode: 1, delivery_info: { exchange: 'celeryev', routing_key: rk }, priority: 0 });
    try {
      await this.transport.publishFanout('celeryev', rk, text);
    } catch (e) {
      this.#emitLog('warning', `could not send ${type}: ${(e as Error).message}`);
    }
  }

  // ----- shutdown (5.9) -----

  async #stopConsuming(): Promise<void> {
    this.#consuming = false;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    if (this.#heartbeatTimer) clearInterval(this.#heartbeatTimer);
    this.#poke();
    await this.#loop;
  }

  /** Puts back every held message that is not acknowledged yet, front of the line, in delivery order (2.6). */
  async #restoreHeld(which: (j: Job) => boolean): Promise<number> {
    const jobs = [...this.#held.values()].filter((j) => !j.acked && which(j)).sort((a, b) => a.seq - b.seq);
    for (const j of jobs) {
      j.timer?.cancel();
      j.state = 'done';
      this.#settle(j);
      await this.transport.restore(j.tag, true).catch((e: unknown) => this.#emitLog('error', `could not restore ${j.id}: ${(e as Error).message}`));
      this.#forget(j);
    }
    if (jobs.length > 0) this.#emitLog('info', `Restoring ${jobs.length} unacknowledged message(s)`);
    return jobs.length;
  }

  /** Warm shutdown: stop consuming, say worker-offline, put reserved messages back, let running tasks finish. */
  shutdown(): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#stopConsuming();
      if (this.options.heartbeat !== false) await this.#workerEvent('worker-offline');
      // Jobs waiting in the pool are taken back and go back to the queue with
      // the reserved ones; one already written to a pool process runs, and
      // is waited for as a running one.
      for (const j of this.#active) {
        if (!waitingInPool(j)) continue;
        j.state = 'reserved';
        j.controller?.abort(new Discarded('shutdown'));
      }
      await this.#restoreHeld((j) => j.state === 'scheduled' || j.state === 'reserved' || j.state === 'received');
      this.#reserved.length = 0;
      if (this.#active.size > 0 || this.#finishing > 0) await new Promise<void>((r) => (this.#idle = r));
      // A cold shutdown that began meanwhile closes everything itself.
      if (this.#cold) return;
      await this.#close(false);
    })();
    return this.#stopping;
  }

  /** Cold shutdown: kill the pool, put back every message not acknowledged (acksLate running ones too). */
  async terminate(): Promise<void> {
    this.#cold = true;
    await this.#stopConsuming();
    const pool = this.#pool;
    this.#pool = null;
    if (pool) await pool.terminate();
    await this.#restoreHeld(() => true);
    this.#reserved.length = 0;
    if (this.options.heartbeat !== false) await this.#workerEvent('worker-offline');
    await this.#close(true);
  }

  async #close(cold: boolean): Promise<void> {
    if (!cold && this.#pool) {
      this.#pool.close();
      await this.#pool.join();
    }
    this.#pool = null;
    await this.transport.commands.srem('_kombu.binding.celery.pidbox', `${this.transport.sep}${this.transport.sep}${this.hostname}.celery.pidbox`).catch(() => {});
    await this.transport.close();
    await this.backend?.close();
    this.emit('close');
  }
}

/** A URL for a log line: without its password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '**';
    return u.href;
  } catch {
    return '(a broker URL)';
  }
}

function safeRegex(pattern: string, text: string): boolean {
  try {
    return new RegExp(pattern).test(text);
  } catch {
    return false;
  }
}

