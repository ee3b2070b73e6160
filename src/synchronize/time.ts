/** Deadlines for loops of waits (Condition.waitFor), on performance.now()'s clock. */

import { timeoutSeconds } from '../connection/timers.js';

/** performance.now() plus `timeout` seconds, or null for no deadline. */
export function monotonicDeadline(timeout: number | null | undefined): number | null {
  const t = timeoutSeconds(timeout);
  return t === null ? null : performance.now() + t * 1000;
}
