/**
 * Node child targets of the queue and sync benchmarks (bench/queue.ts,
 * bench/sync.ts). Each mirrors a function of bench/py_sync_targets.py line
 * for line, so that the only difference between two pairs is the runtime
 * on each end.
 */

import type { Connection, Queue, Semaphore } from '../src/index.js';


/**
 * Serves batches on `q` until the driver sends null on `conn`:
 * `['produce', kind, n]` puts n items (`'int'`: 0..n-1, `'str'`:
 * `'item-<i>'`); `['consume', n]` gets n items, then answers `'done'`.
 */
export async function queueServe(q: Queue, conn: Connection): Promise<void> {
  for (;;) {
    const cmd = (await conn.recv()) as [string, ...unknown[]] | null;
    if (cmd === null) break;
    if (cmd[0] === 'produce') {
      const kind = cmd[1] as string;
      const n = cmd[2] as number;
      if (kind === 'int') {
        for (let i = 0; i < n; i++) await q.put(i);
      } else {
        for (let i = 0; i < n; i++) await q.put(`item-${i}`);
      }
    } else {
      const n = cmd[1] as number;
      for (let i = 0; i < n; i++) await q.get();
      await conn.send('done');
    }
  }
  conn.close();
}

/**
 * The other end of a hand-off: takes `ping`, gives `pong`, until `stop` can
 * be taken after a ping. `mode` 'async' waits with `await acquire()` (off
 * the event loop), 'sync' with `acquireSync()` (blocking it).
 */
export async function pingpongServe(ping: Semaphore, pong: Semaphore, stop: Semaphore, mode: 'async' | 'sync'): Promise<void> {
  if (mode === 'sync') {
    for (;;) {
      ping.acquireSync();
      if (stop.acquireSync({ block: false })) break;
      pong.release();
    }
  } else {
    for (;;) {
      await ping.acquire();
      if (stop.acquireSync({ block: false })) break;
      pong.release();
    }
  }
}
