/**
 * Unknown option names are TypeErrors, as Python's unexpected keyword
 * arguments are (src/connection/options.ts): a misspelt option must not be
 * ignored. `maxTasksPerChild` given to a Pool (billiard's name is
 * `maxtasksperchild`) would otherwise start a pool that never recycles,
 * and `q.get({ timout: 1 })` would wait for ever. Each constructor checks
 * before it makes anything, and each call before it queues, waits or sends.
 */
import { describe, expect, test } from 'vitest';

import { BaseManager, Client, Connection, JoinableQueue, Listener, Lock, Pipe, Pool, Process, Queue, Semaphore, SimpleQueue, SyncManager, wait } from '../src/index.js';
import { Celery, task, Worker } from '../src/celery/index.js';
import { Server } from '../src/managers/server.js';
import { square } from './fixtures/pool-targets.js';

const TASKS = new URL('./peers/celery/tasks.ts', import.meta.url);

describe('unknown option names', () => {
  test('each constructor names the unknown option and, for another spelling of a known one, the known one', async () => {
    const cases: Array<[string, () => unknown, RegExp]> = [
      ['Pool', () => new Pool({ processes: 1, maxTasksPerChild: 2 } as never), /^new Pool\(\): unknown option 'maxTasksPerChild' \(did you mean 'maxtasksperchild'\?\)$/],
      ['Pool (no near name)', () => new Pool({ processes: 1, workers: 2 } as never), /^new Pool\(\): unknown option 'workers'$/],
      ['Process', () => new Process({ target: square, arg: [2] } as never), /^new Process\(\): unknown option 'arg'$/],
      ['Queue', () => new Queue(0, { stall_timeout: 1 } as never), /^new Queue\(\): unknown option 'stall_timeout' \(did you mean 'stallTimeout'\?\)$/],
      ['JoinableQueue', () => new JoinableQueue(0, { loadlimits: {} } as never), /^new JoinableQueue\(\): unknown option 'loadlimits' \(did you mean 'loadLimits'\?\)$/],
      ['SimpleQueue', () => new SimpleQueue({ maxsize: 3 } as never), /^new SimpleQueue\(\): unknown option 'maxsize'$/],
      ['SyncManager', () => new SyncManager({ authKey: new Uint8Array(4) } as never), /^new SyncManager\(\): unknown option 'authKey' \(did you mean 'authkey'\?\)$/],
      ['register', () => BaseManager.register('thing', { callabel: () => 1 } as never), /^BaseManager\.register\(\): unknown option 'callabel'$/],
      ['Server', () => new Server({ authkey: new Uint8Array(4), registry: new Map(), backlog: 5 } as never), /^new Server\(\): unknown option 'backlog'$/],
      ['Listener', () => new Listener({ adress: ['127.0.0.1', 0] } as never), /^new Listener\(\): unknown option 'adress'$/],
      ['Listener(address, options)', () => new Listener(['127.0.0.1', 0], { authKey: null } as never), /^new Listener\(\): unknown option 'authKey' \(did you mean 'authkey'\?\)$/],
      ['Connection', () => new Connection(0, { readonly: true } as never), /^new Connection\(\): unknown option 'readonly'$/],
      ['Pipe', () => Pipe({ duplx: false } as never), /^Pipe\(\): unknown option 'duplx'$/],
      ['Worker', () => new Worker({ app: TASKS, broker: 'redis://127.0.0.1:1/0', max_tasks_per_child: 3 } as never), /^new Worker\(\): unknown option 'max_tasks_per_child' \(did you mean 'maxTasksPerChild'\?\)$/],
      ['Celery', () => new Celery({ broker: 'redis://127.0.0.1:1/0', result_backend: 'redis://127.0.0.1:1/1' } as never), /^new Celery\(\): unknown option 'result_backend' \(did you mean 'resultBackend'\?\)$/],
    ];
    for (const [name, make, message] of cases) {
      let error: unknown = null;
      try {
        make();
      } catch (e) {
        error = e;
      }
      expect(error, name).toBeInstanceOf(TypeError);
      expect((error as Error).message, name).toMatch(message);
    }
    await expect(Client(['127.0.0.1', 1], { timout: 1 } as never)).rejects.toThrow(/^Client\(\): unknown option 'timout'$/);
    // Options that are not an object at all.
    expect(() => new Pool(3 as never)).toThrow(/^new Pool\(\): the options must be an object, not number$/);
  });

  test("a Pool's submissions check theirs too, before anything is queued", async () => {
    await using pool = new Pool({ processes: 1 });
    expect(() => pool.applyAsync(square, [2], { errorcallback: () => {} } as never)).toThrow(/^Pool\.applyAsync\(\): unknown option 'errorcallback' \(did you mean 'errorCallback'\?\)$/);
    await expect(pool.apply(square, [2], { kwargs: {} } as never)).rejects.toThrow(/^Pool\.applyAsync\(\): unknown option 'kwargs'$/);
    expect(() => pool.mapAsync(square, [1], { chunkSize: 1 } as never)).toThrow(/^Pool\.map\(\): unknown option 'chunkSize' \(did you mean 'chunksize'\?\)$/);
    expect(() => pool.starmapAsync(square, [[1]], { soft_timeout: 1 } as never)).toThrow(/^Pool\.starmap\(\): unknown option 'soft_timeout' \(did you mean 'softTimeout'\?\)$/);
    expect(() => pool.imap(square, [1], { callback: () => {} } as never)).toThrow(/^Pool\.imap\(\): unknown option 'callback'$/);
    expect(() => pool.imapUnordered(square, [1], { ordered: false } as never)).toThrow(/^Pool\.imapUnordered\(\): unknown option 'ordered'$/);
    expect(pool.stats().queued).toBe(0);
    expect(await pool.apply(square, [3], { timeout: 10, callback: () => {} })).toBe(9);
  });

  test('calls that wait check theirs: a misspelt timeout must not wait for ever (queues, locks, manager proxies)', async () => {
    const q = new Queue();
    await expect(q.get({ timout: 0.1 } as never)).rejects.toThrow(/^Queue\.get\(\): unknown option 'timout'$/);
    await expect(q.put(1, { Block: false } as never)).rejects.toThrow(/^Queue\.put\(\): unknown option 'Block' \(did you mean 'block'\?\)$/);
    await expect(new JoinableQueue().put(1, { blocking: false } as never)).rejects.toThrow(/^Queue\.put\(\): unknown option 'blocking'$/);
    q.close();
    await expect(new Lock().acquire({ timeOut: 1 } as never)).rejects.toThrow(/^Lock\.acquire\(\): unknown option 'timeOut' \(did you mean 'timeout'\?\)$/);
    await expect(new Semaphore(0).acquire({ blocking: false } as never)).rejects.toThrow(/^Semaphore\.acquire\(\): unknown option 'blocking'$/);
    await using m = new SyncManager();
    await m.start();
    const lock = await m.Lock();
    await expect(lock.acquire({ blocking: false } as never)).rejects.toThrow(/^AcquirerProxy\.acquire\(\): unknown option 'blocking'$/);
    const mq = await m.Queue();
    await expect(mq.get({ timout: 0.1 } as never)).rejects.toThrow(/^QueueProxy\.get\(\): unknown option 'timout'$/);
    await expect(mq.put(1, { time_out: 1 } as never)).rejects.toThrow(/^QueueProxy\.put\(\): unknown option 'time_out' \(did you mean 'timeout'\?\)$/);
    // The right names work.
    expect(await lock.acquire({ block: false })).toBe(true);
    await mq.put(2, { timeout: 1 });
    expect(await mq.get({ timeout: 1 })).toBe(2);
  }, 60_000);

  test('connections, wait() and join() check theirs: a misspelt offset must not send the whole buffer', async () => {
    const [a, b] = Pipe();
    const buf = Uint8Array.from([1, 2, 3, 4]);
    await expect(a.sendBytes(buf, { ofset: 2 } as never)).rejects.toThrow(/^Connection\.sendBytes\(\): unknown option 'ofset'$/);
    await a.sendBytes(buf, { offset: 2 });
    expect([...(await b.recvBytes())]).toEqual([3, 4]);
    await expect(b.recv({ Signal: null } as never)).rejects.toThrow(/^Connection\.recv\(\): unknown option 'Signal' \(did you mean 'signal'\?\)$/);
    await expect(b.recvBytes(null, { abort: null } as never)).rejects.toThrow(/^Connection\.recvBytes\(\): unknown option 'abort'$/);
    await expect(b.recvBytesInto(new Uint8Array(4), 0, { timeout: 1 } as never)).rejects.toThrow(/^Connection\.recvBytesInto\(\): unknown option 'timeout'$/);
    await expect(b.poll(0, { timeout: 1 } as never)).rejects.toThrow(/^Connection\.poll\(\): unknown option 'timeout'$/);
    await expect(wait([b], 0, { timeout: 1 } as never)).rejects.toThrow(/^wait\(\): unknown option 'timeout'$/);
    const p = new Process({ target: null });
    await expect(p.join(0, { timeout: 1 } as never)).rejects.toThrow(/^Process\.join\(\): unknown option 'timeout'$/);
    a.close();
    b.close();
  });

  test("Celery's task(), broadcast() and revoke() check theirs (retry(): test/celery-node-worker.test.ts): a misspelt acksLate or terminate must not be ignored", async () => {
    expect(() => task(() => 1, { acks_late: true } as never)).toThrow(/^task\(\): unknown option 'acks_late' \(did you mean 'acksLate'\?\)$/);
    const c = new Celery({ broker: 'redis://127.0.0.1:1/0' });
    await expect(c.broadcast('ping', { destinaton: ['x'] } as never)).rejects.toThrow(/^Celery\.broadcast\(\): unknown option 'destinaton'$/);
    await expect(c.revoke('id', { termiante: true } as never)).rejects.toThrow(/^Celery\.revoke\(\): unknown option 'termiante'$/);
    await c.close();
  });

  test('the known names still work, and undefined or null options are none', async () => {
    const q = new Queue(0, { stallTimeout: 5, loadLimits: { maxMemo: 1000 } });
    await q.put('x');
    expect(await q.get()).toBe('x');
    q.close();
    const s = new SimpleQueue(undefined);
    s.close();
    const [a, b] = Pipe({ duplex: true, connection: { protocol: 5 } });
    await a.send('y');
    expect(await b.recv()).toBe('y');
    a.close();
    b.close();
  });
});
