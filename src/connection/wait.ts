/**
 * `wait(objects, timeout)` (spec/connection.md section 6.2): the objects that
 * are ready to read (a frame or the end of the stream is there), waiting up
 * to `timeout` seconds for one.
 */

import { Connection, kOnReadable, timeoutMs } from './connection.js';
import { OSError } from './errors.js';

/** Anything `wait` can watch: a Connection, or an object following the same protocol. */
export interface Waitable {
  isReady(): boolean;
  readonly [kOnReadable]: Set<() => void>;
}

/**
 * Resolves with the objects of `objects` that are ready, in their order,
 * once at least one is (or with `[]` after `timeout` seconds; null waits for
 * ever, 0 or less checks once).
 */
export function wait<T extends Waitable>(objects: Iterable<T>, timeout: number | null = null): Promise<T[]> {
  const list = Array.from(new Set(objects));
  for (const o of list) if (o instanceof Connection && o.closed) return Promise.reject(new OSError('handle is closed', { code: 'HANDLE_CLOSED' }));
  const ms = timeoutMs(timeout);
  const ready = (): T[] => list.filter((o) => o.isReady());
  const now = ready();
  if (now.length > 0 || ms === 0 || list.length === 0 && ms === null) return Promise.resolve(now);
  return new Promise<T[]>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      if (timer) clearTimeout(timer);
      for (const o of list) o[kOnReadable].delete(listener);
      // Let other readiness from the same tick show up too.
      queueMicrotask(() => resolve(ready()));
    };
    const listener = (): void => done();
    for (const o of list) o[kOnReadable].add(listener);
    if (ms !== null) timer = setTimeout(done, ms);
  });
}
