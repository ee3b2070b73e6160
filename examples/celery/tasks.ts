/**
 * A Node Celery app: every exported function is a task named
 * `tasks.<export>` (after this file's name), served to Python (or Node)
 * Celery clients by
 *
 *     npm run celery -- worker --app examples/celery/tasks.ts --broker redis://127.0.0.1:6379/0
 *
 * and run in billiard-ts's Pool with Celery's limits.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { currentRequest, task } from '../../src/celery/index.js';

export function add(x: number, y: number): number {
  return x + y;
}

/** Sleeps, unless the soft time limit comes first: `slow.apply_async((10,), soft_time_limit=1)`. */
export async function slow(seconds: number): Promise<string> {
  const { signal } = currentRequest();
  try {
    await sleep(seconds * 1000, undefined, { signal });
    return `slept ${seconds}s`;
  } catch (e) {
    if (signal.aborted) return 'stopped by the soft time limit';
    throw e;
  }
}

/** Acknowledged only once done: if the worker dies meanwhile, another one runs it. */
export const careful = task(
  async (name: string): Promise<string> => {
    await sleep(100);
    return `hello ${name}, from Node ${process.version} (pool process ${process.pid})`;
  },
  { acksLate: true },
);
