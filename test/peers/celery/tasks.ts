/**
 * The Node side's Celery app for the conformance tests: the same task names
 * as compat/peers/celery/tasks.py (`tasks.add`, ...), served by the
 * billiard-ts worker.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { PythonException } from '../../../src/pickle/exceptions.js';
import { currentRequest, Ignore, Reject, task } from '../../../src/celery/task.js';

// Which processes imported this module (the worker's warm-up test reads it).
if (process.env.CELERY_TASKS_IMPORT_LOG) appendFileSync(process.env.CELERY_TASKS_IMPORT_LOG, `${process.pid}\n`);

export function add(x: number, y: number): number {
  return x + y;
}

export function mul(x: number, y: number): number {
  return x * y;
}

/** Throws a Python exception type: the client re-raises the real ValueError. */
export function boomPy(message: string): never {
  throw new PythonException('ValueError', [message]);
}

/** Throws a plain JavaScript error: the client gets a same-named synthetic class. */
export function boomJs(message: string): never {
  throw new RangeError(message);
}

export async function sleeper(seconds: number): Promise<number> {
  await sleep(seconds * 1000);
  return seconds;
}

/** Sleeps, catching the soft time limit through the request's signal. */
export async function softCaught(seconds: number): Promise<string> {
  try {
    await sleep(seconds * 1000, undefined, { signal: currentRequest().signal });
    return 'slept';
  } catch (e) {
    if (currentRequest().signal.aborted) return `caught soft: ${(currentRequest().signal.reason as Error).name}()`;
    throw e;
  }
}

/** Sleeps under the request's signal without catching the soft limit. */
export async function softUncaught(seconds: number): Promise<string> {
  await sleep(seconds * 1000, undefined, { signal: currentRequest().signal });
  return 'slept';
}

/** A synchronous loop: only the hard limit stops it. */
export function spin(seconds: number): number {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end);
  return seconds;
}

export function pid(): number {
  return process.pid;
}

export const retrier = task((): unknown => {
  const r = currentRequest();
  if (r.retries < 2) r.retry({ countdown: 1, exc: new PythonException('KeyError', [`again ${r.retries}`]) });
  return ['done', r.retries];
});

export const lateSleeper = task(
  async (seconds: number): Promise<number> => {
    await sleep(seconds * 1000);
    return seconds;
  },
  { acksLate: true },
);

/** Kills its own pool process on the first delivery; the redelivered message completes. */
export const lateRowl = task(
  (marker: string): string => {
    if (!currentRequest().redelivered) process.kill(process.pid, 'SIGKILL');
    return `done ${marker}`;
  },
  { acksLate: true, rejectOnWorkerLost: true },
);

/** Kills its own pool process (early ack): WorkerLostError. */
export function suicide(): never {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

export const noresult = task((): number => 1, { ignoreResult: true });

export function showRequest(): Record<string, unknown> {
  const r = currentRequest();
  return { id: r.id, task: r.task, retries: r.retries, hostname: r.hostname, rootId: r.rootId, parentId: r.parentId, deliveryInfo: r.deliveryInfo };
}

/** A result JSON cannot carry. */
export function unencodable(): Set<number> {
  return new Set([1, 2]);
}

/** The number of entries of a Map (or items of an array) argument. */
export function size(value: Map<unknown, unknown> | unknown[]): number {
  return value instanceof Map ? value.size : value.length;
}

export function echo(value: unknown): unknown {
  return value;
}

/** acksLate: sleeps, then appends a line to `path` (how many times it completed). */
export const lateRecord = task(
  async (path: string, seconds: number): Promise<string> => {
    await sleep(seconds * 1000);
    appendFileSync(path, `${currentRequest().id} ${process.pid}\n`);
    return 'recorded';
  },
  { acksLate: true },
);

/** A result the pool cannot pickle back to the worker. */
export function unpicklable(): () => number {
  return () => 1;
}

/** Retries for ever with a countdown of 0.2 s; past maxRetries (1) the KeyError it retries for is raised. */
export const alwaysRetry = task(
  (): never => currentRequest().retry({ countdown: 0.2, exc: new PythonException('KeyError', [`again ${currentRequest().retries}`]) }),
  { maxRetries: 1 },
);

/** Celery's Reject: requeued once (acksLate), then it succeeds on the redelivery. */
export const rejectOnce = task(
  (): string => {
    if (!currentRequest().redelivered) throw new Reject('not yet', true);
    return 'second time';
  },
  { acksLate: true },
);

/** Reject without requeue: the message is dropped, nothing stored. */
export function rejectDrop(): never {
  throw new Reject('drop it', false);
}

/** Celery's Ignore: acknowledged, nothing stored. */
export function ignoreMe(): never {
  throw new Ignore('not stored');
}

/** retry() with a misspelt option: the task fails with the TypeError instead of retrying at once. */
export function retryTypo(): never {
  return currentRequest().retry({ countdwn: 5 } as never);
}
