/**
 * The pool side of a Celery task: `runTask` is the function every job of the
 * worker's Pool runs. It imports the app module once per process, sets the
 * request `currentRequest()` returns, calls the task and reports what
 * happened as a plain outcome (the worker in the main process stores it),
 * so that a thrown value never has to cross the pool's pipe as an error.
 */
import { SoftTimeLimitExceeded } from '../process/errors.js';
import { exceptionRecord } from './backend.js';
import { Ignore, Reject, Retry, setCurrentRequest, type PackedRequest } from './task.js';

/** What a job reports. */
export type Outcome =
  | { s: 'ok'; v: unknown }
  | { s: 'fail'; m: string; t: string; a: unknown[]; tb: string | null }
  | { s: 'retry'; eta: number | null; countdown: number | null; msg: string; m: string | null; t: string | null; a: unknown[] | null; tb: string | null }
  | { s: 'reject'; requeue: boolean; msg: string }
  | { s: 'ignore' };

let app: Promise<Record<string, unknown>> | null = null;

/** The pool's initializer: imports the app module once in this pool process. */
export async function initApp(url: string): Promise<void> {
  app = import(url) as Promise<Record<string, unknown>>;
  await app;
}

function traceOf(err: unknown): string | null {
  if (err instanceof Error && typeof err.stack === 'string') return err.stack;
  return err === undefined ? null : String(err);
}

function failure(err: unknown): Outcome {
  // An API given the request's signal rejects with an AbortError whose cause is the limit.
  const soft = err instanceof SoftTimeLimitExceeded || (err instanceof Error && err.name === 'AbortError' && err.cause instanceof SoftTimeLimitExceeded);
  if (soft) return { s: 'fail', m: 'billiard.exceptions', t: 'SoftTimeLimitExceeded', a: [], tb: traceOf(err) };
  const rec = exceptionRecord(err);
  return { s: 'fail', m: rec.excModule, t: rec.excType, a: rec.excMessage, tb: traceOf(err) };
}

/** A job that waits for the app's import: the worker runs one per pool process before it is ready. */
export async function warmUp(): Promise<number> {
  if (app !== null) await app;
  return process.pid;
}

/**
 * Runs task `exportName` of the app module with `args` (and `kwargs`, given
 * as a last argument when there are any) under `request`.
 */
export async function runTask(exportName: string, args: unknown[], kwargs: Record<string, unknown>, request: PackedRequest): Promise<Outcome> {
  if (app === null) throw new Error('runTask: the pool process has no app (its initializer is initApp)');
  const fn = (await app)[exportName];
  if (typeof fn !== 'function') return { s: 'fail', m: 'celery.exceptions', t: 'NotRegistered', a: [request[1]], tb: null };
  setCurrentRequest(request, args, kwargs);
  try {
    const callArgs = Object.keys(kwargs).length > 0 ? [...args, kwargs] : args;
    const value: unknown = await (fn as (...a: unknown[]) => unknown)(...callArgs);
    return { s: 'ok', v: value };
  } catch (err) {
    if (err instanceof Retry) {
      const rec = err.exc === undefined ? null : exceptionRecord(err.exc);
      return { s: 'retry', eta: err.eta, countdown: err.countdown, msg: err.message, m: rec?.excModule ?? null, t: rec?.excType ?? null, a: rec?.excMessage ?? null, tb: traceOf(err.exc ?? err) };
    }
    if (err instanceof Reject) return { s: 'reject', requeue: err.requeue, msg: err.message };
    if (err instanceof Ignore) return { s: 'ignore' };
    return failure(err);
  } finally {
    setCurrentRequest(null);
  }
}
