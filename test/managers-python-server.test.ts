/**
 * Node clients of Python managers: billiard 4.1 and the standard library of
 * CPython 3.11, 3.12 and 3.13 serve (compat/peers/manager_peer.py), and
 * billiard-ts's BaseManager/SyncManager and proxies use them.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { BaseManager, pyfunc, QueueProxy, SyncManager, type Address } from '../src/index.js';
import { exerciseSyncManager } from './helpers/manager-scenario.js';
import { pythonFor, startPeer, type Peer, type PyVersion } from './helpers/peers.js';

const KEY = new TextEncoder().encode('manager-key');
const HEX = Buffer.from(KEY).toString('hex');

class QueueManager extends BaseManager {
  declare get_queue: () => Promise<QueueProxy>;
}
QueueManager.register('get_queue');

const SERVERS: Array<[label: string, version: PyVersion, impl: 'billiard' | 'mp']> = [
  ['billiard 4.1', '3.11', 'billiard'],
  ['CPython 3.11', '3.11', 'mp'],
  ['CPython 3.12', '3.12', 'mp'],
  ['CPython 3.13', '3.13', 'mp'],
];

describe.each(SERVERS)('a %s manager server', (_label, version, impl) => {
  let peer: Peer;
  let address: Address;
  beforeAll(async () => {
    peer = await startPeer(pythonFor(version), 'manager_peer.py', ['--impl', impl, '--role', 'server', '--address', '["127.0.0.1", 0]', '--authkey', HEX]);
    address = peer.info.address as [string, number];
  }, 30_000);
  afterAll(async () => {
    peer?.proc.kill('SIGTERM');
    await peer?.exited;
  });

  test('the classic distributed queue: put, qsize and get from Node', async () => {
    const m = new QueueManager({ address, authkey: KEY });
    await m.connect();
    const q = await m.get_queue();
    for (let i = 0; i < 5; i++) await q.put(i);
    expect(await q.qsize()).toBe(5);
    const got: unknown[] = [];
    for (let i = 0; i < 5; i++) got.push(await q.get());
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(await q.empty()).toBe(true);
    // a second proxy of the same typeid is the same queue
    const q2 = await m.get_queue();
    expect(q2._token.id).toBe(q._token.id);
    await q._decref();
    await q2._decref();
  });

  test('every SyncManager typeid, created and used from Node', async () => {
    const m = new SyncManager({ address, authkey: KEY });
    await m.connect();
    await exerciseSyncManager(m, impl);
  }, 60_000);

  test("the server's Pool runs Python functions for a Node client: apply, map, apply_async's AsyncResult proxy", async () => {
    const m = new SyncManager({ address, authkey: KEY });
    await m.connect();
    const pool = await m.Pool(1);
    try {
      expect(await pool.apply(pyfunc('builtins.pow'), [2, 10])).toBe(1024);
      expect(await pool.map(pyfunc('builtins.abs'), [-1, -2, 3])).toEqual([1, 2, 3]);
      expect(await pool.starmap(pyfunc('builtins.pow'), [[2, 3], [3, 2]])).toEqual([8, 9]);
      const r = await pool.applyAsync(pyfunc('builtins.pow'), [3, 3]);
      expect(r._token.typeid).toBe('AsyncResult');
      expect(await r.get(10)).toBe(27);
      expect(await r.ready()).toBe(true);
      expect(await r.successful()).toBe(true);
      await r._decref();
    } finally {
      await pool.terminate();
      await pool._decref();
    }
  }, 60_000);
});
