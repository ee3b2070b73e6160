/**
 * The pool (src/pool/pool.ts) with real Node workers: billiard's documented
 * map example, applyAsync and its callbacks, async targets, failures with
 * their class, a killed worker (WorkerLostError, and the pool goes on),
 * maxtasksperchild recycling, imap / imapUnordered, terminate with jobs in
 * flight, close + join.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, test } from 'vitest';

import { ExceptionInfo, getContext, PyFloat, RestartFreqExceeded, TimeLimitExceeded, PicklingError, UnpicklingError, IMapIterator, Pool, PythonException, RemoteTraceback, Terminated, ValueError, WorkerLostError } from '../src/index.js';
import { AssertionError } from '../src/process/errors.js';
import { add, boom, delayed, failInit, sendBadLength, sendGarbage, sendMalformed, hang, init, initValue, jsTypeError, mapSize, mixedSquare, pid, shiftedKeyDict, power, same, sleepThen, slowSquare, spinForever, square, whoAmINow } from './fixtures/pool-targets.js';

/** Resolves true once no process `pid` exists, false if one still does after `seconds`. */
async function gone(pid: number, seconds: number): Promise<boolean> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('Pool', () => {
  test("billiard's example: pool.map(square, [1, 2, 3, 4, 5]) -> [1, 4, 9, 16, 25]; starmap; a context's Pool", async () => {
    await using pool = new Pool({ processes: 4 });
    expect(await pool.map(square, [1, 2, 3, 4, 5])).toEqual([1, 4, 9, 16, 25]);
    expect(await pool.map(square, [])).toEqual([]);
    expect(await pool.map(square, Array.from({ length: 37 }, (_, k) => k), { chunksize: 5 })).toEqual(Array.from({ length: 37 }, (_, k) => k * k));
    expect(await pool.starmap(add, [[1, 2], [3, 4]])).toEqual([3, 7]);
    // A chunk awaits what a call returns only when it is a thenable; plain values, Promises and bare thenables mix.
    expect(await pool.map(mixedSquare, Array.from({ length: 13 }, (_, k) => k), { chunksize: 4 })).toEqual(Array.from({ length: 13 }, (_, k) => k * k));
    await expect(pool.map(mixedSquare, [11, 12, 13, 14], { chunksize: 4 })).rejects.toThrow('thirteen');
    await using ctxPool = getContext('spawn').Pool({ processes: 1, initializer: init, initargs: ['ready'] });
    expect(await ctxPool.apply(initValue)).toBe('ready');
  });

  test('plain results (None, bools, ints, floats) come back as they went, as do the ones around them', async () => {
    await using pool = new Pool({ processes: 2 });
    const values = [null, true, false, 0, 255, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 1.5, new PyFloat(2), 2 ** 40, 'text', [1, 2]];
    expect(await pool.map(same, values, { chunksize: 1 })).toEqual(values);
    expect(await Promise.all(values.map((v) => pool.apply(same, [v])))).toEqual(values);
  });

  test('a chunk of 200,000 items (a default chunk of a map of 1.6 million on 2 workers): map, starmap and imap', async () => {
    await using pool = new Pool({ processes: 1 });
    const n = 200_000;
    const items = Array.from({ length: n }, (_, k) => k);
    const out = await pool.map(square, items, { chunksize: n });
    expect(out.length).toBe(n);
    expect(out[n - 1]).toBe((n - 1) ** 2);
    const sums = await pool.starmap(add, items.map((k) => [k, 1] as [number, number]), { chunksize: n });
    expect(sums[n - 1]).toBe(n);
    let count = 0;
    let last = -1;
    for await (const v of pool.imap(square, items, { chunksize: n })) {
      count++;
      last = v;
    }
    expect([count, last]).toEqual([n, (n - 1) ** 2]);
  });

  test("Pool(...) is a factory as billiard's is, without new: the same class, instanceof and subclassing intact", async () => {
    await using pool = Pool({ processes: 1 });
    expect(pool).toBeInstanceOf(Pool);
    expect(pool.constructor.name).toBe('Pool');
    expect(await pool.map(square, [1, 2, 3])).toEqual([1, 4, 9]);
    class ClosingPool extends Pool {
      closes = 0;
      override close(): void {
        this.closes++;
        super.close();
      }
    }
    await using sub = new ClosingPool({ processes: 1 });
    expect(sub).toBeInstanceOf(Pool);
    expect(sub).toBeInstanceOf(ClosingPool);
    expect(await sub.applyAsync(add, [2, 3])).toBe(5);
    sub.close();
    await sub.join();
    expect(sub.closes).toBe(1);
  });

  test('applyAsync: callback, ready/successful/accepted/workerPids, thenable, kwds, an async target', async () => {
    await using pool = new Pool({ processes: 2 });
    const seen: unknown[] = [];
    const r = pool.applyAsync(slowSquare, [6], { callback: (v) => seen.push(v) });
    expect(r.ready()).toBe(false);
    expect(() => r.successful()).toThrow(AssertionError);
    expect(await r.get(30)).toBe(36);
    expect(seen).toEqual([36]);
    expect(r.ready()).toBe(true);
    expect(r.successful()).toBe(true);
    expect(r.accepted()).toBe(true);
    expect(r.workerPids()).toHaveLength(1);
    expect(pool.pids).toContain(r.workerPids()[0]);
    expect(await pool.applyAsync(add, [2, 3])).toBe(5);
    expect(await pool.apply(power, [2], { kwds: { exp: 10 } })).toBe(1024);
    const slow = pool.applyAsync(sleepThen, [1, 3000]);
    await expect(slow.get(0.05)).rejects.toMatchObject({ name: 'TimeoutError' });
    await slow.wait(0.01);
    expect(slow.ready()).toBe(false);
  });

  test("get() and wait() with a timeout past setTimeout's cap (3e6 s) wait for the result", async () => {
    await using pool = new Pool({ processes: 1 });
    const first = pool.applyAsync(sleepThen, [7, 300]);
    const second = pool.applyAsync(sleepThen, [8, 300]);
    await first.wait(3e6);
    expect(first.ready()).toBe(true);
    expect(await second.get(3e6)).toBe(8);
  });

  test('a task that throws: get() rejects with its class and the remote traceback; errorCallback gets the ExceptionInfo; the pool goes on', async () => {
    await using pool = new Pool({ processes: 1 });
    const einfos: ExceptionInfo[] = [];
    const r = pool.applyAsync(boom, ['nope'], { errorCallback: (e) => einfos.push(e) });
    const err = await r.get(30).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValueError);
    expect((err as Error).message).toContain('nope');
    expect((err as Error).cause).toBeInstanceOf(RemoteTraceback);
    expect(r.successful()).toBe(false);
    expect(einfos).toHaveLength(1);
    expect(einfos[0]).toBeInstanceOf(ExceptionInfo);
    expect(einfos[0].exception).toBe(err);
    expect(einfos[0].traceback).toMatch(/ValueError: nope\n$/);
    const te = await pool.apply(jsTypeError).catch((e: unknown) => e);
    expect(te).toBeInstanceOf(PythonException);
    expect((te as PythonException).pyType).toBe('builtins.TypeError');
    // map: ready at the first failed chunk, with that error
    await expect(pool.map(boom, ['a', 'b'])).rejects.toBeInstanceOf(ValueError);
    expect(await pool.apply(square, [3])).toBe(9);
  });

  test('a worker killed while running a job: the job fails with WorkerLostError, a replacement starts, the pool keeps working', async () => {
    await using pool = new Pool({ processes: 2 });
    const r = pool.applyAsync(hang);
    while (!r.accepted()) await new Promise((res) => setTimeout(res, 10));
    const victim = r.workerPids()[0];
    process.kill(victim, 'SIGKILL');
    const err = await r.get(30).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerLostError);
    expect((err as Error).message).toBe(`Worker exited prematurely: signal 9 (SIGKILL) Job: ${r.job}.`);
    expect(await pool.map(square, [1, 2, 3, 4, 5, 6, 7, 8])).toEqual([1, 4, 9, 16, 25, 36, 49, 64]);
    const pids = new Set(await Promise.all(Array.from({ length: 8 }, () => pool.apply(slowSquare, [1, 50]).then(() => pool.apply(pid)))));
    expect(pids.has(victim)).toBe(false);
    expect(pool.pids).toHaveLength(2);
    expect(pool.pids).not.toContain(victim);
  });

  test('maxtasksperchild=2: workers are recycled, every task completes', async () => {
    await using pool = new Pool({ processes: 2, maxtasksperchild: 2 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, k) => pool.applyAsync(pid).then((p) => [k, p] as const)));
    expect(results).toHaveLength(10);
    const pids = new Set(results.map(([, p]) => p));
    expect(pids.size).toBeGreaterThan(2);
    // the recycled workers exited (exit code 155): only `processes` are left
    for (let t = 0; t < 200 && pool.pids.length > 2; t++) await new Promise((res) => setTimeout(res, 50));
    expect(pool.pids.length).toBeLessThanOrEqual(2);
    for (const p of pids) if (!pool.pids.includes(p)) expect(() => process.kill(p, 0)).toThrow();
    expect(await pool.map(square, [1, 2, 3, 4, 5], { chunksize: 1 })).toEqual([1, 4, 9, 16, 25]);
  });

  test('imap yields in input order; imapUnordered yields every result; chunked imap', async () => {
    await using pool = new Pool({ processes: 3 });
    const ordered: number[] = [];
    // later items finish first: imap still yields them in input order
    for await (const v of pool.imap(delayed, [[0, 300], [1, 200], [2, 100], [3, 0], [4, 150], [5, 50]] as Array<[number, number]>)) ordered.push(v);
    expect(ordered).toEqual([0, 1, 2, 3, 4, 5]);
    const it = pool.imap(square, [5, 6, 7, 8, 9], { chunksize: 2 });
    expect(it).toBeInstanceOf(IMapIterator);
    const chunked: number[] = [];
    for await (const v of it) chunked.push(v);
    expect(chunked).toEqual([25, 36, 49, 64, 81]);
    const unordered: number[] = [];
    for await (const v of pool.imapUnordered(delayed, [[0, 300], [1, 200], [2, 100], [3, 0], [4, 150], [5, 50], [6, 0]] as Array<[number, number]>)) unordered.push(v);
    expect(unordered).toHaveLength(7);
    expect([...unordered].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(await pool.imap(square, []).next()).toEqual({ done: true, value: undefined });
  });

  test('imap input: a generator that throws ends there, its error after the items before it; an async iterable is read as workers take it', async () => {
    await using pool = new Pool({ processes: 2 });
    function* failing(): Generator<number> {
      yield 1;
      yield 2;
      yield 3;
      throw new Error('input broke at 3');
    }
    for (const chunksize of [1, 2]) {
      const seen: number[] = [];
      const err = await (async () => {
        for await (const v of pool.imap(square, failing(), { chunksize })) seen.push(v);
      })().catch((e: unknown) => e);
      expect(seen).toEqual([1, 4, 9]);
      expect(err).toEqual(new Error('input broke at 3'));
    }
    async function* slowInput(n: number): AsyncGenerator<number> {
      for (let k = 0; k < n; k++) {
        await new Promise((r) => setTimeout(r, 2));
        yield k;
      }
    }
    const out: number[] = [];
    for await (const v of pool.imap(square, slowInput(9), { chunksize: 2 })) out.push(v);
    expect(out).toEqual([0, 1, 4, 9, 16, 25, 36, 49, 64]);
    const unordered: number[] = [];
    for await (const v of pool.imapUnordered(square, slowInput(7))) unordered.push(v);
    expect(unordered.sort((a, b) => a - b)).toEqual([0, 1, 4, 9, 16, 25, 36]);
    async function* brokenAsync(): AsyncGenerator<number> {
      yield 5;
      throw new Error('async input broke');
    }
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const v of pool.imap(square, brokenAsync())) got.push(v);
      })(),
    ).rejects.toThrow('async input broke');
    expect(got).toEqual([25]);
    // An endless input is not read ahead of the workers: a few parts per worker at most.
    let pulled = 0;
    async function* endless(): AsyncGenerator<[number, number]> {
      for (;;) {
        await new Promise((r) => setImmediate(r));
        pulled++;
        yield [pulled, 50];
      }
    }
    const it = pool.imap(delayed, endless());
    expect((await it.next(20)).value).toBe(1);
    await new Promise((r) => setTimeout(r, 300));
    expect(pulled).toBeLessThan(40);
    expect(pulled).toBeGreaterThan(2);
  });

  test('terminate with jobs in flight and queued: each rejects with Terminated, and terminate resolves', async () => {
    const pool = new Pool({ processes: 2 });
    const running = [pool.applyAsync(hang), pool.applyAsync(hang)];
    const queued = pool.applyAsync(square, [2]);
    while (!running.every((r) => r.accepted())) await new Promise((res) => setTimeout(res, 10));
    const it = pool.imap(hang, [undefined]);
    await pool.terminate();
    for (const r of [...running, queued]) await expect(r.get(5)).rejects.toBeInstanceOf(Terminated);
    await expect(it.next(5)).rejects.toBeInstanceOf(Terminated);
    expect(pool.pids).toEqual([]);
    expect(() => pool.applyAsync(square, [1])).toThrow(ValueError);
  });

  test('close + join after work: the workers exit; join before close is AssertionError', async () => {
    const pool = new Pool({ processes: 2 });
    await expect(pool.join()).rejects.toBeInstanceOf(AssertionError);
    const r = pool.mapAsync(slowSquare, [1, 2, 3, 4]);
    pool.close();
    expect(() => pool.applyAsync(square, [1])).toThrow('Pool not running');
    await pool.join();
    expect(await r.get(0)).toEqual([1, 4, 9, 16]);
    expect(pool.pids).toEqual([]);
  });

  test('hostile frames from a worker fail the job it holds with a typed error; the pool runs on', async () => {
    await using pool = new Pool({ processes: 1 });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const garbage = await pool.apply(sendGarbage).catch((e: unknown) => e);
      expect(garbage).toBeInstanceOf(UnpicklingError);
      expect((garbage as UnpicklingError).code).toBe('BAD_POOL_MESSAGE');
      const malformed = await pool.apply(sendMalformed).catch((e: unknown) => e);
      expect(malformed).toBeInstanceOf(UnpicklingError);
      expect(await pool.apply(square, [4])).toBe(16);
      // a bad length breaks the framing: the worker is killed and replaced, its job lost
      const lost = await pool.apply(sendBadLength).catch((e: unknown) => e);
      expect(lost).toBeInstanceOf(WorkerLostError);
      expect(await pool.map(square, [1, 2, 3])).toEqual([1, 4, 9]);
      expect(warnings.some((w) => w.includes('undecodable frame'))).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('loadLimits: a result or a job over the unpickler\'s limits fails its own job with UnpicklingError and the worker goes on; with the limits raised, the pool and its workers load both', async () => {
    // 2,000 bigint keys k << 64 share one V8 hash (test/helpers/v8-collisions.ts): over the default maxHashCollisions.
    const n = 2000;
    for (const synack of [false, true]) {
      await using pool = new Pool({ processes: 1, synack });
      const worker = await pool.apply(pid, []);
      // The result, loaded by the pool.
      await expect(pool.apply(shiftedKeyDict, [n])).rejects.toThrow(UnpicklingError);
      // The job, loaded by the worker: that job fails with the load's error, the worker lives.
      const err = await pool.apply(mapSize, [shiftedKeyDict(n)]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnpicklingError);
      expect(String((err as Error).message)).toMatch(/maxHashCollisions/);
      expect(await pool.apply(square, [7])).toBe(49);
      expect(await pool.apply(pid, [])).toBe(worker);
    }
    {
      await using pool = new Pool({ processes: 1, loadLimits: { maxHashCollisions: Infinity } });
      expect(((await pool.apply(shiftedKeyDict, [n])) as Map<bigint, number>).size).toBe(n);
      expect(await pool.apply(mapSize, [shiftedKeyDict(n)])).toBe(n);
    }
    expect(() => new Pool({ processes: 1, loadLimits: { maxHashColisions: 1 } as never })).toThrow(/maxHashColisions is not a load limit/);
    expect(() => new Pool({ processes: 1, loadLimits: { maxDepth: -1 } })).toThrow(TypeError);
  });

  test('a map of 300,000 one-item parts is queued (no stack overflow), and terminate fails it and what waits behind it', async () => {
    const pool = new Pool({ processes: 1 });
    const items = Array.from({ length: 300_000 }, (_, k) => k);
    const r = pool.mapAsync(square, items, { chunksize: 1 });
    const first = pool.applyAsync(square, [7]);
    expect(pool.stats().queued).toBeGreaterThan(299_000);
    await pool.terminate();
    expect(await r.get().catch((e: unknown) => e)).toBeInstanceOf(Terminated);
    expect(await first.get().catch((e: unknown) => e)).toBeInstanceOf(Terminated);
  });

  test('examples/pool-square.ts prints [1, 4, 9, 16, 25] and exits 0', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/pool-square.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('[1, 4, 9, 16, 25]\n');
    expect(r.status).toBe(0);
  });

  test('a Pool constructor that throws (bad options) leaves nothing that keeps the process alive', () => {
    const script = "import { Pool } from './src/index.ts'; for (const o of [{ processes: 0 }, { loadLimits: { maxMemo: -1 } }]) { try { new Pool(o); } catch (e) { console.log(e.name); } }";
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 20_000 });
    expect(r.stdout).toBe('ValueError\nTypeError\n');
    expect(r.signal).toBe(null); // not killed by the timeout
    expect(r.status).toBe(0);
  });

  test('a job that cannot be pickled, or a function workers cannot import, throws at the call; nothing of it is queued', async () => {
    const pool = new Pool({ processes: 1 });
    // @ts-expect-error -- square takes a number: the signature checks args against the function
    expect(() => pool.applyAsync(square, [() => 1])).toThrow(PicklingError);
    expect(() => pool.mapAsync(square, [1, 2, 3, () => 4] as number[], { chunksize: 1 })).toThrow(PicklingError);
    const local = (x: number): number => x;
    expect(() => pool.applyAsync(local, [1])).toThrow(PicklingError);
    expect(await pool.map(square, [1, 2])).toEqual([1, 4]);
    pool.close();
    await pool.join();
  });

  test('an initializer that throws: workers restart with back-off, and after 5 failed starts in a row the waiting jobs fail with RestartFreqExceeded', async () => {
    const log = join(mkdtempSync(join(tmpdir(), 'pool-init-')), 'starts');
    const pool = new Pool({ processes: 1, initializer: failInit, initargs: [log] });
    const err = await pool.apply(square, [2]).catch((e: unknown) => e);
    await pool.terminate();
    expect(err).toBeInstanceOf(RestartFreqExceeded);
    expect((err as Error).message).toMatch(/^workers exited 5 times in a row before accepting a job \(last: exitcode 1;/);
    // back-off: the 2nd..5th workers are spawned 0.1, 0.2, 0.4, 0.8 s after
    // the one before failed. Measured from that failure to the next process's
    // start (its performance.timeOrigin), so start-up time is not counted; only
    // lower bounds (a timer never fires early, a loaded machine only adds),
    // with 5 ms for the clocks' granularity.
    const starts = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
    expect(starts.length).toBeGreaterThanOrEqual(5);
    const gaps = starts.slice(1, 5).map(([began], k) => began! - starts[k]![1]!);
    gaps.forEach((gap, k) => expect(gap).toBeGreaterThanOrEqual(100 * 2 ** k - 5));
  });

  test('a callback that throws is reported as a warning; its result, and a map whose callback throws, still complete', async () => {
    await using pool = new Pool({ processes: 1 });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      const r = pool.applyAsync(square, [5], {
        callback: () => {
          throw new Error('callback bug');
        },
      });
      expect(await r.get(30)).toBe(25);
      const m = pool.mapAsync(square, [1, 2, 3], {
        chunksize: 1,
        callback: () => {
          throw new Error('map callback bug');
        },
      });
      expect(await m.get(30)).toEqual([1, 4, 9]);
      expect(await pool.apply(square, [6])).toBe(36);
      await new Promise((res) => setImmediate(res));
      expect(warnings.filter((w) => w.startsWith('Pool callback raised exception: Error: '))).toHaveLength(2);
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('a worker killed after it was handed a job but before it accepted it: the job runs on the replacement', async () => {
    await using pool = new Pool({ processes: 1 });
    expect(await pool.apply(square, [1])).toBe(1);
    const [victim] = pool.pids;
    const r = pool.applyAsync(slowSquare, [3]);
    process.kill(victim, 'SIGKILL'); // in the same tick: the job cannot have been accepted
    expect(await r.get(30)).toBe(9);
    expect(r.workerPids()).toHaveLength(1);
    expect(r.workerPids()[0]).not.toBe(victim);
  });

  test('hard time limit: an awaiting task and a synchronous loop both fail with TimeLimitExceeded, their workers are killed and replaced, and the pool runs on', async () => {
    await using pool = new Pool({ processes: 1, timeout: 1 });
    const told: unknown[] = [];
    const first = pool.applyAsync(hang, [], { timeoutCallback: (info) => told.push(info) });
    const err = await first.get().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeLimitExceeded);
    expect((err as TimeLimitExceeded).timeout).toBe(1);
    expect(String((err as Error).message)).toBe('TimeLimitExceeded(1.0,)');
    expect(told).toEqual([{ soft: false, timeout: 1 }]);
    const firstPid = first.workerPids()[0];
    // Synchronous JavaScript that handles SIGTERM never runs the handler: SIGKILL follows.
    const spin = pool.applyAsync(spinForever);
    await expect(spin.get()).rejects.toBeInstanceOf(TimeLimitExceeded);
    expect(spin.workerPids()[0]).not.toBe(firstPid);
    const after = pool.applyAsync(pid);
    const p = await after.get(60);
    expect(p).not.toBe(firstPid);
    expect(p).not.toBe(spin.workerPids()[0]);
    // A job within its limit is not touched.
    expect(await pool.apply(square, [9])).toBe(81);
    // Both killed workers are gone (not left running beside their replacements).
    for (const dead of [firstPid!, spin.workerPids()[0]!]) await expect(gone(dead, 20)).resolves.toBe(true);
  });

  test('a per-call hard time limit overrides the pool (none here); jobs without one run as long as they take', async () => {
    await using pool = new Pool({ processes: 1 });
    await expect(pool.apply(hang, [], { timeout: 0.5 })).rejects.toBeInstanceOf(TimeLimitExceeded);
    expect(await pool.apply(sleepThen, [7, 1500])).toBe(7);
    // Limits past a Node timer's 24.8 days are kept, not fired at once (Node turns such a delay into 1 ms).
    expect(await pool.apply(sleepThen, [8, 300], { timeout: 30 * 86400, softTimeout: 40 * 86400 })).toBe(8);
    expect(() => pool.applyAsync(square, [1], { timeout: -1 })).toThrow(ValueError);
    expect(() => new Pool({ timeout: 0 })).toThrow(ValueError);
  });
});

describe('a worker runs an imported function that returns a plain value without awaiting it', () => {
  test('values, throws, promises, thenables and kwargs, in turn on one worker, each with its own task context', async () => {
    await using pool = new Pool({ processes: 1 });
    // The first call imports the function (the awaited way); the later ones take the plain path.
    const calls = [
      pool.applyAsync(whoAmINow, [1]),
      pool.applyAsync(whoAmINow, [2]),
      pool.applyAsync(whoAmINow, [-3]),
      pool.applyAsync(whoAmINow, [4]),
      pool.applyAsync(mixedSquare, [3]), // a bare thenable
      pool.applyAsync(mixedSquare, [4]), // a Promise
      pool.applyAsync(mixedSquare, [13]), // a rejected Promise
      pool.applyAsync(mixedSquare, [5]), // a plain value
      pool.applyAsync(power, [3], { kwds: { exp: 3 } }),
      pool.applyAsync(whoAmINow, [6]),
    ];
    const settled = await Promise.allSettled(calls);
    const values = settled.map((s) => (s.status === 'fulfilled' ? s.value : s.reason));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(values[0]).toEqual([calls[0]!.job, null, 1]);
    expect(values[1]).toEqual([calls[1]!.job, null, 2]);
    expect(values[2]).toBeInstanceOf(ValueError);
    expect((values[2] as Error).message).toContain('negative: -3');
    expect(values[3]).toEqual([calls[3]!.job, null, 4]);
    expect(values.slice(4, 6)).toEqual([9, 16]);
    expect(values[6]).toBeInstanceOf(Error);
    expect((values[6] as Error).message).toContain('thirteen');
    expect(values.slice(7, 9)).toEqual([25, 27]);
    expect(values[9]).toEqual([calls[9]!.job, null, 6]);
  });
});
