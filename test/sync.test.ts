/**
 * The sync layer between Node processes: locks, semaphores, conditions,
 * events, barriers, queues and shared values, contended by real child
 * processes; their errors; the faults of a peer that dies holding a lock or
 * in the middle of a put; the semaphore tracker; and that waits never take
 * libuv's thread pool.
 */
import { lookup } from 'node:dns/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';

import { describe, expect, test } from 'vitest';

import {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  dumps,
  Empty,
  EOFError,
  Event,
  Full,
  forkserver,
  getContext,
  JoinableQueue,
  Lock,
  OSError,
  Process,
  Queue,
  RLock,
  RuntimeError,
  Semaphore,
  SimpleQueue,
  Value,
} from '../src/index.js';
import { ownedSemaphores } from '../src/synchronize/index.js';
import { readable, writeBytes } from '../src/native/index.js';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { AssertionError, ValueError } from '../src/process/errors.js';
import { admit, consume, holdForever, increment, putMany, releaseOnce, waitBarrier, waitCondition, waitEvent } from './fixtures/sync-targets.js';

const shm = (): string[] => readdirSync('/dev/shm').filter((n) => n.startsWith('sem.mp-'));

describe('locks and semaphores in one process', () => {
  test('Lock: acquire, block:false, a timed acquire returns false, over-release is ValueError', async () => {
    const lock = new Lock();
    expect(await lock.acquire()).toBe(true);
    expect(String(lock)).toBe('<Lock(owner=MainProcess)>');
    expect(await lock.acquire({ block: false })).toBe(false);
    const t0 = performance.now();
    expect(await lock.acquire({ timeout: 0.1 })).toBe(false);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    lock.release();
    expect(String(lock)).toBe('<Lock(owner=None)>');
    expect(() => lock.release()).toThrow(ValueError);
    expect(() => lock.release()).toThrow('semaphore or lock released too many times');
  });

  test('RLock: recursion counts, release by a non-owner is AssertionError', async () => {
    const r = new RLock();
    expect(() => r.release()).toThrow(AssertionError);
    expect(() => r.release()).toThrow('attempt to release recursive lock not owned by thread');
    await r.acquire();
    await r.acquire();
    expect(String(r)).toBe('<RLock(MainProcess, 2)>');
    r.release();
    expect(r.count()).toBe(1);
    r.release();
    expect(String(r)).toBe('<RLock(None, 0)>');
  });

  test('Semaphore and BoundedSemaphore: values, reprs and bounds', async () => {
    const s = new Semaphore(2);
    expect(s.getValue()).toBe(2);
    s.release();
    expect(String(s)).toBe('<Semaphore(value=3)>');
    const b = new BoundedSemaphore(1);
    expect(String(b)).toBe('<BoundedSemaphore(value=1, maxvalue=1)>');
    expect(() => b.release()).toThrow(ValueError);
    expect(await b.acquire()).toBe(true);
    expect(b.acquireSync({ block: false })).toBe(false);
  });

  test('acquire with an AbortSignal rejects with its reason and leaves the lock untaken', async () => {
    const lock = new Lock();
    await lock.acquire();
    const ac = new AbortController();
    const p = lock.acquire({ signal: ac.signal });
    setTimeout(() => ac.abort(new Error('gave up')), 30);
    await expect(p).rejects.toThrow('gave up');
    lock.release();
    expect(lock.getValue()).toBe(1);
  });

  test('acquireSync of a Lock this process holds is an error, not a hang', async () => {
    const lock = new Lock();
    await lock.acquire();
    expect(() => lock.acquireSync()).toThrow(AssertionError);
  });

  test('withLock and await using release the lock', async () => {
    const lock = new Lock();
    await expect(lock.withLock(() => { throw new Error('x'); })).rejects.toThrow('x');
    expect(lock.getValue()).toBe(1);
    {
      await using _held = await lock.enter();
      expect(lock.getValue()).toBe(0);
    }
    expect(lock.getValue()).toBe(1);
  });

  test('outside a spawn, pickling a lock, a queue or a shared value is RuntimeError', () => {
    expect(() => dumps(new Lock())).toThrow(RuntimeError);
    expect(() => dumps(new Lock())).toThrow('Lock objects should only be shared between processes through inheritance');
    expect(() => dumps(new Queue())).toThrow(RuntimeError);
    expect(() => dumps(Value('i', 1))).toThrow(RuntimeError);
  });

  test('settleWait: a wait its thread won counts before settleWait returns; a wait still blocked is stopped', async () => {
    const lock = new Lock();
    lock.acquireSync();
    const late = lock.acquire(); // parks on a thread
    await new Promise((r) => setTimeout(r, 20));
    lock.release();
    // Block the event loop while the thread takes the lock: the loop has not heard of it yet.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30);
    expect(lock.isMine()).toBe(false);
    await lock.settleWait();
    expect(lock.isMine()).toBe(true);
    expect(await late).toBe(true);
    expect(lock.count()).toBe(1);
    // Held here, so the next wait cannot win: settleWait stops it, and it resolves false.
    const stuck = lock.acquire();
    await new Promise((r) => setTimeout(r, 20));
    await lock.settleWait();
    expect(await stuck).toBe(false);
    expect(lock.count()).toBe(1);
    lock.release();
    await lock.settleWait(); // nothing waits: returns at once
    expect(lock.isMine()).toBe(false);
  });

  test('a hundred blocked waits leave libuv\'s thread pool to fs and dns', async () => {
    const sem = new Semaphore(0);
    const waits = Array.from({ length: 100 }, () => sem.acquire({ timeout: 20 }));
    let waitsDone = false;
    void Promise.all(waits).then(() => (waitsDone = true));
    // Each of these needs a thread of libuv's pool (4 by default).
    await Promise.all([stat('/'), readFileSync('/proc/self/stat'), lookup('localhost'), ...Array.from({ length: 8 }, () => stat('/tmp'))]);
    expect(waitsDone).toBe(false);
    for (let i = 0; i < 100; i++) sem.release();
    expect(await Promise.all(waits)).toEqual(Array(100).fill(true));
  });
});

describe('contended by processes', () => {
  test('a counter incremented 10,000 times by each of 4 processes under a Lock ends exact', async () => {
    const lock = new Lock();
    const counter = Value('i', 0, { lock: false });
    const wrapped = Value('i', 0);
    const ps = Array.from({ length: 4 }, () => new Process({ target: increment, args: [lock, wrapped, 10_000] }));
    void counter;
    for (const p of ps) p.start();
    for (const p of ps) await p.join();
    expect(ps.map((p) => p.exitcode)).toEqual([0, 0, 0, 0]);
    expect(wrapped.value).toBe(40_000);
  });

  test('Semaphore(3) never admits a fourth', async () => {
    const sem = new Semaphore(3);
    const guard = new Lock();
    const inside = Value('i', 0);
    const peak = Value('i', 0);
    const go = new Event();
    const q = new Queue();
    const ps = Array.from({ length: 6 }, () => new Process({ target: admit, args: [sem, guard, inside, peak, 10, go, q] }));
    for (const p of ps) p.start();
    for (let i = 0; i < 6; i++) await q.get();
    await go.set();
    for (const p of ps) await p.join();
    expect(ps.every((p) => p.exitcode === 0)).toBe(true);
    expect(peak.value).toBe(3);
    expect(inside.value).toBe(0);
  });

  test('Event: every waiter wakes on set(); a wait with a timeout returns false', async () => {
    const event = new Event();
    const q = new Queue();
    const ps = Array.from({ length: 3 }, (_, i) => new Process({ target: waitEvent, args: [event, q, i] }));
    for (const p of ps) p.start();
    for (let i = 0; i < 3; i++) expect((await q.get()) as unknown[]).toContain('waiting');
    expect(await event.isSet()).toBe(false);
    await event.set();
    const got = [await q.get(), await q.get(), await q.get()] as Array<[string, number]>;
    expect(got.map((g) => g[0])).toEqual(['woken', 'woken', 'woken']);
    for (const p of ps) await p.join();
    await event.clear();
    expect(await event.wait(0.05)).toBe(false);
  });

  test('Condition: notify() wakes one, notifyAll() the rest', async () => {
    const cond = new Condition();
    const q = new Queue();
    const ps = Array.from({ length: 3 }, (_, i) => new Process({ target: waitCondition, args: [cond, q, i] }));
    for (const p of ps) p.start();
    for (let i = 0; i < 3; i++) await q.get();
    // Every child announced before it waits: wait until all three sleep.
    while (cond.sleepingCount.getValue() < 3) await new Promise((r) => setTimeout(r, 5));
    await cond.acquire();
    await cond.notify();
    cond.release();
    expect(((await q.get()) as unknown[])[0]).toBe('woken');
    await cond.acquire();
    await cond.notifyAll();
    cond.release();
    expect([(await q.get()) as unknown[], (await q.get()) as unknown[]].map((g) => g[0])).toEqual(['woken', 'woken']);
    for (const p of ps) await p.join();
    await cond.acquire();
    expect(await cond.wait(0.05)).toBe(false);
    cond.release();
    await expect(cond.wait()).rejects.toThrow(AssertionError);
  });

  test('a Barrier trips with N parties and breaks on abort', async () => {
    const barrier = new Barrier(3);
    const q = new Queue();
    const ps = Array.from({ length: 2 }, () => new Process({ target: waitBarrier, args: [barrier, q] }));
    for (const p of ps) p.start();
    const mine = await barrier.wait(30);
    const theirs = [(await q.get()) as [string, number], (await q.get()) as [string, number]];
    expect([mine, ...theirs.map((t) => t[1])].sort()).toEqual([0, 1, 2]);
    for (const p of ps) await p.join();
    const late = new Process({ target: waitBarrier, args: [barrier, q] });
    late.start();
    while (barrier.nWaiting < 1) await new Promise((r) => setTimeout(r, 5));
    await barrier.abort();
    expect(await q.get()).toEqual(['broken', 'BrokenBarrierError']);
    expect(barrier.broken).toBe(true);
    await expect(barrier.wait(1)).rejects.toThrow(BrokenBarrierError);
    await barrier.reset();
    expect(barrier.broken).toBe(false);
    await late.join();
  });

  test('JoinableQueue.join returns only after every taskDone', async () => {
    const q = new JoinableQueue();
    const done = new Queue();
    for (let i = 0; i < 20; i++) await q.put(i);
    const p = new Process({ target: consume, args: [q, 20, done] });
    p.start();
    await q.join();
    // Every item was passed to done before its taskDone: all 20 are there now.
    const got: unknown[] = [];
    for (let i = 0; i < 20; i++) got.push(await done.get({ timeout: 5 }));
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await p.join();
    await expect(q.taskDone()).rejects.toThrow('task_done() called too many times');
  });

  test('100,000 items through one Queue from a child arrive complete and in order; big items too', async () => {
    const q = new Queue();
    const p = new Process({ target: putMany, args: [q, 100_000, 0] });
    p.start();
    for (let i = 0; i < 100_000; i++) {
      const v = await q.get();
      if (v !== i) expect(v).toBe(i);
    }
    await p.join();
    const big = new Process({ target: putMany, args: [q, 3, 5 << 20] });
    big.start();
    for (let i = 0; i < 3; i++) {
      const v = (await q.get()) as Uint8Array;
      expect(v.length).toBe(5 << 20);
      expect(v[12345]).toBe(i);
    }
    await big.join();
  });

  test('2,000 small items put in one turn are written in one batch and all arrive', async () => {
    const q = new Queue();
    for (let i = 0; i < 2000; i++) q.putNowait(i);
    const got: unknown[] = [];
    for (let i = 0; i < 2000; i++) got.push(await q.get({ timeout: 5 }));
    expect(got).toEqual(Array.from({ length: 2000 }, (_, i) => i));
    expect(q.feederError).toBeNull();
    q.close();
  });

  test('writeBytes of more pieces than one writev takes (IOV_MAX, 1024) writes them all', async () => {
    const q = new Queue(3000);
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 1500; i++) {
      const p = dumps(i);
      const h = new Uint8Array(4);
      new DataView(h.buffer).setInt32(0, p.length);
      chunks.push(h, p);
    }
    for (let i = 0; i < 1500; i++) q.sem.acquireSync({ block: false });
    const r = writeBytes(q.writer.fileno(), chunks);
    if (r !== true) await r;
    const got: unknown[] = [];
    for (let i = 0; i < 1500; i++) got.push(await q.get({ timeout: 5 }));
    expect(got).toEqual(Array.from({ length: 1500 }, (_, i) => i));
    q.close();
  });

  test.each(['spawn', 'forkserver'] as const)('acquireSync() right after start() (%s): the child, released by it, is spawned while the thread waits', async (method) => {
    const ctx = getContext(method);
    if (method === 'forkserver') await forkserver.ensureRunning();
    const sem = ctx.Semaphore(0);
    const p = new ctx.Process({ target: releaseOnce, args: [sem] });
    p.start();
    // Blocks this thread: only what start() handed over before it can reach the child.
    expect(sem.acquireSync({ timeout: 30 })).toBe(true);
    await p.join();
    expect(p.exitcode).toBe(0);
  });

  test('the forkserver start method hands a Queue and a Lock to its children too', async () => {
    const ctx = getContext('forkserver');
    const lock = ctx.Lock();
    const counter = Value('i', 0);
    const ps = Array.from({ length: 2 }, () => new ctx.Process({ target: increment, args: [lock, counter, 1000] }));
    for (const p of ps) p.start();
    for (const p of ps) await p.join();
    expect(counter.value).toBe(2000);
  });
});

describe('faults and bad input', () => {
  test('a process killed while holding a Lock: timed acquires return false, nothing hangs', async () => {
    const lock = new Lock();
    const q = new Queue();
    const p = new Process({ target: holdForever, args: [lock, q] });
    p.start();
    expect(await q.get({ timeout: 20 })).toBe('held');
    p.kill();
    await p.join();
    expect(await lock.acquire({ timeout: 0.2 })).toBe(false);
    expect(await lock.acquire({ block: false })).toBe(false);
  });

  test('a writer killed in the middle of a frame: the reader gets EOFError, never a torn item', async () => {
    const q = new Queue(0, { stallTimeout: 0.5 });
    // 64 MiB: the child blocks in the middle of the frame once the pipe is full.
    const p = new Process({ target: putMany, args: [q, 1, 64 << 20] });
    p.start();
    while (readable(q.reader.fileno()) < 65536) await new Promise((r) => setTimeout(r, 10));
    p.kill();
    await p.join();
    const err = await q.get().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EOFError);
    expect((err as EOFError).code).toBe('TORN_FRAME');
    await expect(q.get({ timeout: 0.1 })).rejects.toThrow(EOFError);
  });

  test('queue misuse: Full, Empty, put after close, get on a closed queue, bad maxsize', async () => {
    const q = new Queue(1);
    await q.put(1);
    expect(q.full()).toBe(true);
    expect(q.qsize()).toBe(1);
    await expect(q.put(2, { block: false })).rejects.toThrow(Full);
    expect(() => q.putNowait(2)).toThrow(Full);
    await expect(q.put(2, { timeout: 0.05 })).rejects.toThrow(Full);
    expect(await q.get()).toBe(1);
    await expect(q.get({ block: false })).rejects.toThrow(Empty);
    await expect(q.get({ timeout: 0.05 })).rejects.toThrow(Empty);
    expect(q.empty()).toBe(true);
    q.close();
    await expect(q.put(3)).rejects.toThrow(AssertionError);
    await expect(q.get()).rejects.toThrow(OSError);
    await expect(q.get()).rejects.toThrow('handle is closed');
    await q.joinThread();
    expect(() => new Queue('x' as unknown as number)).toThrow(TypeError);
    const s = new SimpleQueue();
    expect(s.empty()).toBe(true);
    await s.put({ a: 1 });
    expect(s.empty()).toBe(false);
    expect(await s.get()).toEqual({ a: 1 });
    s.close();
  });
});

describe('cleanup', () => {
  test('semaphores are unlinked at exit, and by the tracker after SIGTERM and SIGKILL', async () => {
    const { execa } = await import('execa');
    for (const signal of ['exit', 'SIGTERM', 'SIGKILL'] as const) {
      const child = execa(process.execPath, ['--import', 'tsx', '-e', `
        const { Lock, Queue } = await import(${JSON.stringify(new URL('../src/index.ts', import.meta.url).href)});
        const l = new Lock(); const q = new Queue();
        console.log(JSON.stringify([l.name, q.rlock.name, q.wlock.name, q.sem.name]));
        if (${JSON.stringify(signal)} !== 'exit') setInterval(() => {}, 1000);
      `], { reject: false });
      const names = await new Promise<string[]>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(JSON.parse(String(d)) as string[])));
      if (signal !== 'exit') expect(names.every((n) => shm().includes(`sem.${n.slice(1)}`))).toBe(true);
      if (signal !== 'exit') child.kill(signal);
      await child;
      for (let i = 0; i < 200 && names.some((n) => shm().includes(`sem.${n.slice(1)}`)); i++) await new Promise((r) => setTimeout(r, 25));
      expect(names.filter((n) => shm().includes(`sem.${n.slice(1)}`)), signal).toEqual([]);
    }
  });

  test('1,000 create/destroy cycles leak no semaphore, mapping or descriptor', async () => {
    const fds = (): number => readdirSync('/proc/self/fd').length;
    // Arena mappings: billiard's files are named pym-<pid>-<random> (deleted).
    const maps = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/pym-')).length;
    const made: string[] = [];
    const cycle = (): void => {
      const lock = new Lock();
      const q = new Queue();
      const v = Value('d', 1.5);
      v.value = 2.5;
      lock.unlinkNow();
      lock.close();
      for (const l of [q.rlock, q.wlock, q.sem]) {
        l.unlinkNow();
        l.close();
      }
      q.close();
      (v.getLock() as RLock).unlinkNow();
      made.push(lock.name, q.rlock.name, q.wlock.name, q.sem.name, (v.getLock() as RLock).name);
    };
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const collect = async (): Promise<void> => {
      gc();
      await new Promise((r) => setImmediate(r));
      gc();
    };
    for (let i = 0; i < 10; i++) cycle();
    await collect();
    const before = { fds: fds(), maps: maps(), owned: ownedSemaphores().length };
    for (let i = 0; i < 1000; i++) {
      cycle();
      if (i % 100 === 99) await collect();
    }
    await collect();
    const after = { fds: fds(), maps: maps(), owned: ownedSemaphores().length };
    expect(made.length).toBe(5 * 1010);
    const left = new Set(shm());
    expect(made.filter((n) => left.has(`sem.${n.slice(1)}`))).toEqual([]);
    // A leak would add one per cycle; the test runner's own descriptors come and go.
    expect(after.fds - before.fds).toBeLessThan(5);
    expect(after.owned).toBeLessThanOrEqual(before.owned);
    // Arenas are kept and reused, as billiard keeps them: freed blocks serve the next cycles.
    expect(after.maps).toBeLessThanOrEqual(before.maps);
  });
});

describe('examples', () => {
  test('examples/queue-greetings.ts: three children greet through a Queue; examples/shared-counter.ts ends at 4000', async () => {
    const { execa } = await import('execa');
    const root = new URL('..', import.meta.url).pathname;
    const greet = await execa(process.execPath, ['--import', 'tsx', 'examples/queue-greetings.ts'], { cwd: root });
    const lines = greet.stdout.split('\n');
    expect(lines.slice(0, 3).map((l) => l.replace(/ \(from process \d+\)/, '')).sort()).toEqual(['Hello, Alice!', 'Hello, Bob!', 'Hello, Charlie!']);
    expect(lines[3]).toBe('exit codes: 0 0 0');
    const counter = await execa(process.execPath, ['--import', 'tsx', 'examples/shared-counter.ts'], { cwd: root });
    expect(counter.stdout.trim()).toBe('4000');
  });
});
