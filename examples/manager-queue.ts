/**
 * A Node manager serving a job queue to Python: the Python side is the
 * classic distributed-queue client of multiprocessing's documentation,
 * unchanged (`QueueManager.register('get_queue')`, `connect()`, `get()`).
 *
 *   npx tsx examples/manager-queue.ts
 *
 * Python (what the child below runs):
 *   class QueueManager(BaseManager): pass
 *   QueueManager.register('get_queue')
 *   m = QueueManager(address=('127.0.0.1', port), authkey=b'secret')
 *   m.connect()
 *   q = m.get_queue()
 *   q.put(sum(q.get() for _ in range(3)))
 */
import { spawnSync } from 'node:child_process';

import { BaseManager, findPythonSync, isMainProcess, ManagedQueue, type QueueProxy } from '../src/index.js';

const queue = new ManagedQueue();

/** Exported: start() runs the server in a child, which imports this module to find the class. */
export class QueueManager extends BaseManager {
  declare get_queue: () => Promise<QueueProxy>;
}
QueueManager.register('get_queue', { callable: () => queue });

if (isMainProcess(import.meta)) {
  await using m = new QueueManager({ authkey: new TextEncoder().encode('secret') });
  await m.start(); // the server runs in a Node child; m.address is where it listens
  const q = await m.get_queue();
  for (const n of [1, 2, 3]) await q.put(n);
  const [host, port] = m.address as [string, number];
  const python = `
from multiprocessing.managers import BaseManager
class QueueManager(BaseManager): pass
QueueManager.register('get_queue')
m = QueueManager(address=(${JSON.stringify(host)}, ${port}), authkey=b'secret')
m.connect()
q = m.get_queue()
q.put(sum(q.get() for _ in range(3)))
`;
  const r = spawnSync(findPythonSync(), ['-c', python], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`python exited with ${r.status}`);
  console.log(`Python summed the jobs: ${String(await q.get({ timeout: 10 }))}`); // 6
  await q._decref();
}
