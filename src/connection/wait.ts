/**
 * `wait(objects, timeout)` (spec/connection.md section 6.2): the objects that
 * are ready to read (a frame or the end of the stream is there), waiting up
 * to `timeout` seconds for one.
 */

import { Connection, kIsReady, kOnReadable } from './connection.js';
import { OSError } from './errors.js';
import { timeoutSeconds, Timer } from './timers.js';
import { optionNames, optionsRejection } from './options.js';

/**
 * Something that becomes ready once, for good: what `Process.sentinel` gives
 * (Python's sentinel is a descriptor that turns readable when the child
 * exits). `wait()` watches it beside Connections.
 */
export class Sentinel {
  /** @internal */
  readonly [kOnReadable] = new Set<() => void>();
  #ready = false;

  /** True once the event happened. */
  get ready(): boolean {
    return this.#ready;
  }

  /** @internal */
  [kIsReady](): boolean {
    return this.#ready;
  }

  /** @internal marks the sentinel ready and wakes its waiters. */
  fire(): void {
    if (this.#ready) return;
    this.#ready = true;
    for (const f of [...this[kOnReadable]]) f();
  }
}

/** What `wait()` watches: Connections and sentinels. */
export type Waitable = Connection | Sentinel;

/** Options of {@link wait}. */
export interface WaitOptions {
  /** Gives up the wait: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

const WAIT_OPTIONS = optionNames<WaitOptions>()({ signal: 1 });

function isWaitable(o: unknown): o is Waitable {
  return o instanceof Connection || o instanceof Sentinel;
}

/**
 * Resolves with the objects of `objects` that are ready, in their order,
 * once at least one is (or with `[]` after `timeout` seconds; null or
 * Infinity waits for ever, 0 or less checks once).
 */
export function wait<T extends Waitable>(objects: Iterable<T>, timeout: number | null = null, options?: WaitOptions): Promise<T[]> {
  const bad = optionsRejection(options, WAIT_OPTIONS, 'wait()');
  if (bad !== null) return bad;
  const list = Array.from(new Set(objects));
  for (const o of list) {
    if (!isWaitable(o)) return Promise.reject(new TypeError('wait() takes Connections and sentinels'));
    if (o instanceof Connection && o.closed) return Promise.reject(new OSError('handle is closed', { code: 'HANDLE_CLOSED' }));
  }
  let seconds: number | null;
  try {
    seconds = timeoutSeconds(timeout);
  } catch (e) {
    return Promise.reject(e);
  }
  const signal = options?.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const ready = (): T[] => list.filter((o) => o[kIsReady]());
  const now = ready();
  if (now.length > 0 || seconds === 0 || (list.length === 0 && seconds === null && signal === undefined)) return Promise.resolve(now);
  return new Promise<T[]>((resolve, reject) => {
    const stop = (): void => {
      timer.cancel();
      for (const o of list) o[kOnReadable].delete(listener);
      signal?.removeEventListener('abort', onAbort);
    };
    const done = (): void => {
      stop();
      // Let other readiness from the same tick show up too.
      queueMicrotask(() => resolve(ready()));
    };
    const onAbort = (): void => {
      stop();
      reject(signal!.reason);
    };
    const listener = (): void => done();
    for (const o of list) o[kOnReadable].add(listener);
    const timer = new Timer(seconds, done);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
