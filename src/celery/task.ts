/**
 * What a task module uses: `task(fn, options)` to give an exported function
 * Celery's task options, `currentRequest()` inside a running task (Celery's
 * `self.request`, camelCase), and the control-flow exceptions `Retry`,
 * `Reject` and `Ignore`.
 */
import { BilliardError } from '../pickle/errors.js';
import { currentTask } from '../pool/worker.js';
import { checkOptionNames, optionNames } from '../connection/options.js';

/** Celery's task options (camelCase, seconds). */
export interface TaskOptions {
  /** The registered name; default `<module file name>.<export name>` (`tasks.add` for `add` in tasks.ts). */
  name?: string;
  /** Acknowledge after the task ran rather than when a pool process accepted it. */
  acksLate?: boolean;
  /** With acksLate: a lost pool process puts the message back rather than storing WorkerLostError. */
  rejectOnWorkerLost?: boolean;
  /** With acksLate: acknowledge failures and timeouts (default true); false rejects them without requeue. */
  acksOnFailureOrTimeout?: boolean;
  /** Store no result. */
  ignoreResult?: boolean;
  /** Hard time limit in seconds (the message's `timelimit` header wins). */
  timeLimit?: number | null;
  /** Soft time limit in seconds (the message's `timelimit` header wins). */
  softTimeLimit?: number | null;
  /** Retries allowed before `retry()` fails (default 3; null: no limit). */
  maxRetries?: number | null;
  /** Seconds before a retry when `retry()` is given neither countdown nor eta (default 180). */
  defaultRetryDelay?: number;
  /** Store STARTED when a pool process begins the task. */
  trackStarted?: boolean;
}

const kOptions = Symbol.for('billiard-ts.celery.taskOptions');
const TASK_OPTIONS = optionNames<TaskOptions>()({
  name: 1, acksLate: 1, rejectOnWorkerLost: 1, acksOnFailureOrTimeout: 1, ignoreResult: 1, timeLimit: 1, softTimeLimit: 1,
  maxRetries: 1, defaultRetryDelay: 1, trackStarted: 1,
});

/**
 * Marks an exported function as a Celery task with these options and returns
 * it unchanged (so `export const add = task((x, y) => x + y, { acksLate: true })`
 * stays importable by pool processes). Every exported function of an app
 * module is a task; this only adds options.
 */
export function task<F extends (...args: never[]) => unknown>(fn: F, options: TaskOptions = {}): F {
  if (typeof fn !== 'function') throw new TypeError('task() takes a function');
  checkOptionNames(options, TASK_OPTIONS, 'task()');
  Object.defineProperty(fn, kOptions, { value: Object.freeze({ ...options }), enumerable: false, configurable: true });
  return fn;
}

/** The options given with `task()`, or none. */
export function taskOptions(fn: unknown): TaskOptions {
  return ((fn as { [kOptions]?: TaskOptions } | null)?.[kOptions] ?? {}) as TaskOptions;
}

/** Celery's `Retry`: thrown by `request.retry()`; the task is sent again later. */
export class Retry extends BilliardError {
  static override readonly brand: string = 'celery.exceptions.Retry';
  readonly countdown: number | null;
  readonly eta: number | null;
  readonly exc: unknown;
  constructor(message: string, options: { countdown?: number | null; eta?: number | null; exc?: unknown } = {}) {
    super(message, { code: 'RETRY', args: [message] });
    this.countdown = options.countdown ?? null;
    this.eta = options.eta ?? null;
    this.exc = options.exc;
  }
}

/** Celery's `Reject`: the message is rejected, put back when `requeue` (acksLate tasks only). Nothing is stored. */
export class Reject extends BilliardError {
  static override readonly brand: string = 'celery.exceptions.Reject';
  readonly requeue: boolean;
  constructor(reason = 'rejected', requeue = false) {
    super(reason, { code: 'REJECT', args: [reason, requeue] });
    this.requeue = requeue;
  }
}

/** Celery's `Ignore`: the message is acknowledged and nothing is stored. */
export class Ignore extends BilliardError {
  static override readonly brand: string = 'celery.exceptions.Ignore';
  constructor(reason = 'ignored') {
    super(reason, { code: 'IGNORE', args: [reason] });
  }
}

/** Celery's `MaxRetriesExceededError`. */
export class MaxRetriesExceededError extends BilliardError {
  static override readonly brand: string = 'celery.exceptions.MaxRetriesExceededError';
  constructor(message: string) {
    super(message, { code: 'MAX_RETRIES' });
  }
}

/** Where the message came from. */
export interface DeliveryInfo {
  exchange: string;
  routingKey: string;
  priority: number;
  redelivered: boolean | null;
}

/** What `retry()` takes. */
export interface RetryOptions {
  /** Seconds from now. */
  countdown?: number | null;
  /** When to run: a Date or Unix milliseconds. */
  eta?: Date | number | null;
  /** The error the retry is for (stored in the RETRY record, and thrown past maxRetries). */
  exc?: unknown;
  /** Overrides the task's maxRetries. */
  maxRetries?: number | null;
}

const RETRY_OPTIONS = optionNames<RetryOptions>()({ countdown: 1, eta: 1, exc: 1, maxRetries: 1 });

/** The request a running task sees (Celery's `self.request`, camelCase). */
export interface Request {
  id: string;
  task: string;
  args: unknown[];
  kwargs: Record<string, unknown>;
  retries: number;
  rootId: string | null;
  parentId: string | null;
  groupId: string | null;
  groupIndex: number | null;
  eta: string | null;
  expires: string | null;
  hostname: string;
  correlationId: string;
  replyTo: string | null;
  origin: string | null;
  redelivered: boolean;
  isEager: boolean;
  calledDirectly: boolean;
  deliveryInfo: DeliveryInfo;
  /** `[hard, soft]` in seconds, as the message's header. */
  timelimit: [number | null, number | null];
  /** Aborted with SoftTimeLimitExceeded at the soft time limit: hand it to anything that takes a signal. */
  readonly signal: AbortSignal;
  /** Throws SoftTimeLimitExceeded once the soft limit has passed (for loops that do not await). */
  checkpoint(): void;
  /** Celery's `self.retry(...)`: throws {@link Retry} (or, past maxRetries, the error given or MaxRetriesExceededError). */
  retry(options?: RetryOptions): never;
}

/** The parts of a request that travel to the pool process. */
export type RequestInfo = Omit<Request, 'signal' | 'checkpoint' | 'retry'> & { maxRetries: number | null; defaultRetryDelay: number };

/**
 * A request as it travels to the pool process: its values in a fixed order,
 * without the names (less to pickle per task); unpacked on first use.
 */
export type PackedRequest = [
  id: string,
  task: string,
  retries: number,
  rootId: string | null,
  parentId: string | null,
  groupId: string | null,
  groupIndex: number | null,
  eta: string | null,
  expires: string | null,
  hostname: string,
  correlationId: string,
  replyTo: string | null,
  origin: string | null,
  redelivered: boolean,
  exchange: string,
  routingKey: string,
  priority: number,
  deliveryRedelivered: boolean | null,
  hard: number | null,
  soft: number | null,
  maxRetries: number | null,
  defaultRetryDelay: number,
];

function unpack(p: PackedRequest, args: unknown[], kwargs: Record<string, unknown>): RequestInfo {
  return {
    id: p[0],
    task: p[1],
    args,
    kwargs,
    retries: p[2],
    rootId: p[3],
    parentId: p[4],
    groupId: p[5],
    groupIndex: p[6],
    eta: p[7],
    expires: p[8],
    hostname: p[9],
    correlationId: p[10],
    replyTo: p[11],
    origin: p[12],
    redelivered: p[13],
    isEager: false,
    calledDirectly: false,
    deliveryInfo: { exchange: p[14], routingKey: p[15], priority: p[16], redelivered: p[17] },
    timelimit: [p[18], p[19]],
    maxRetries: p[20],
    defaultRetryDelay: p[21],
  };
}

let current: Request | null = null;
let pending: [PackedRequest, unknown[], Record<string, unknown>] | null = null;
const NO_TASK = { signal: new AbortController().signal };

/** @internal the runner sets the request of the task it runs (unpacked only if the task asks for it). */
export function setCurrentRequest(packed: PackedRequest | null, args?: unknown[], kwargs?: Record<string, unknown>): void {
  current = null;
  pending = packed === null ? null : [packed, args ?? [], kwargs ?? {}];
}

function makeRequest(info: RequestInfo): Request {
  const { maxRetries, defaultRetryDelay, ...fields } = info;
  return {
    ...fields,
    get signal(): AbortSignal {
      return (currentTask() ?? NO_TASK).signal;
    },
    checkpoint(): void {
      currentTask()?.checkpoint();
    },
    retry(options?: RetryOptions): never {
      checkOptionNames(options, RETRY_OPTIONS, 'retry()');
      const limit = options?.maxRetries !== undefined ? options.maxRetries : maxRetries;
      if (limit !== null && fields.retries >= limit) {
        if (options?.exc !== undefined) throw options.exc;
        throw new MaxRetriesExceededError(`Can't retry ${fields.task}[${fields.id}] args:${JSON.stringify(fields.args)} kwargs:${JSON.stringify(fields.kwargs)}`);
      }
      const eta = options?.eta === undefined || options.eta === null ? null : options.eta instanceof Date ? options.eta.getTime() : options.eta;
      const countdown = eta === null ? (options?.countdown ?? defaultRetryDelay) : null;
      const when = eta !== null ? `at ${new Date(eta).toISOString()}` : `in ${countdown}s`;
      const exc = options?.exc;
      const excText = exc instanceof Error ? `${exc.name}(${JSON.stringify(exc.message)})` : exc === undefined ? '' : String(exc);
      throw new Retry(excText ? `Retry ${when}: ${excText}` : `Retry ${when}`, { countdown, eta, exc });
    },
  };
}

/** The request of the task running in this pool process (Celery's `self.request`). Throws outside a task. */
export function currentRequest(): Request {
  if (current === null) {
    if (pending === null) throw new Error('currentRequest() is only available inside a running Celery task');
    current = makeRequest(unpack(...pending));
  }
  return current;
}
