/**
 * The pool's timeouts, callbacks and run-time controls (spec/pool.md §4-5,
 * spec/api.md §4.1-4.4), with real Node workers: soft limits (SIGUSR1 to the
 * task's AbortSignal, caught or not, synchronous code meeting only the hard
 * limit), the callbacks and events, maxRestarts, maxMemoryPerChild,
 * grow/shrink/restart/terminateJob, discard and synack's NACK, AbortSignal,
 * maxQueue/drain/waitForSlot, stats(), lostWorkerTimeout.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, test } from 'vitest';

import { Full, MaybeEncodingError, Pool, wait, RestartFreqExceeded, SoftTimeLimitExceeded, Terminated, TimeLimitExceeded, ValueError, WorkerLostError, type Process } from '../src/index.js';
import { AttributeError } from '../src/sharedctypes/errors.js';
import {
  allocate,
  checkpointLoop,
  cleanUpOnSoftLimit,
  exitLeavingPipeOpen,
  exitWith,
  failInit,
  hang,
  logExit,
  mark,
  memory,
  pid,
  sleepThen,
  spinForever,
  square,
  unpicklable,
  waitOnSignal,
  whoAmI,
} from './fixtures/pool-targets.js';
import { until } from './helpers/until.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `cond()` holds, checking every 20 ms; false if it still does not after `seconds`. */
const tmp = (): string => mkdtempSync(join(tmpdir(), 'billiard-ts-pool-'));

describe('Pool soft time limits', () => {
  test('an async task sees SoftTimeLimitExceeded through its AbortSignal; one that catches it cleans up and returns; checkpoint() throws it; the worker lives on', async () => {
    const timeouts: unknown[] = [];
    await using pool = new Pool({ processes: 1, softTimeout: 0.3 });
    const worker = await pool.apply(pid);
    const r = pool.applyAsync(waitOnSignal, [10_000], { timeoutCallback: (info) => timeouts.push(info) });
    await expect(r.get(20)).rejects.toBeInstanceOf(SoftTimeLimitExceeded);
    expect(timeouts).toEqual([{ soft: true, timeout: 0.3 }]);
    expect(await pool.apply(cleanUpOnSoftLimit, [10_000])).toBe('cleaned up after SoftTimeLimitExceeded');
    await expect(pool.apply(checkpointLoop, [10_000])).rejects.toBeInstanceOf(SoftTimeLimitExceeded);
    // A soft limit is not a kill: the same worker ran them all and still runs.
    expect(await pool.apply(pid)).toBe(worker);
    // A task inside its limit sees its own context, its signal not aborted.
    const who = pool.applyAsync(whoAmI);
    expect(await who).toEqual([who.job, null, false]);
  });

  test('a per-call softTimeout overrides the pool (none here); synchronous JavaScript meets only the hard limit', async () => {
    const timeouts: unknown[] = [];
    const events: Array<{ soft: boolean; timeout: number }> = [];
    await using pool = new Pool({ processes: 1 });
    pool.on('timeout', ({ soft, timeout }) => events.push({ soft, timeout }));
    await expect(pool.apply(waitOnSignal, [10_000], { softTimeout: 0.2 })).rejects.toBeInstanceOf(SoftTimeLimitExceeded);
    expect(await pool.apply(waitOnSignal, [50])).toBe('finished');
    const worker = await pool.apply(pid);
    const spin = pool.applyAsync(spinForever, [], { softTimeout: 0.2, timeout: 1, timeoutCallback: (info) => timeouts.push(info) });
    const err = await spin.get(20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeLimitExceeded);
    expect(timeouts).toEqual([
      { soft: true, timeout: 0.2 },
      { soft: false, timeout: 1 },
    ]);
    expect(events).toContainEqual({ soft: false, timeout: 1 });
    expect(await until(() => !alive(worker))).toBe(true);
    expect(await pool.apply(square, [4])).toBe(16);
  });

  test('enableTimeouts: false ignores per-call limits, as billiard without a pool-level limit', async () => {
    await using pool = new Pool({ processes: 1, enableTimeouts: false });
    expect(await pool.apply(sleepThen, [7, 400], { timeout: 0.1, softTimeout: 0.05 })).toBe(7);
  });
});

describe('Pool callbacks and events', () => {
  test('onProcessUp/onProcessDown/onProcessExit, the events, acceptCallback, onTimeoutSet/onTimeoutCancel (apply only)', async () => {
    const dir = tmp();
    const exitLog = join(dir, 'exits');
    process.env.BILLIARD_TS_EXIT_LOG = exitLog;
    const up: Process[] = [];
    const down: Array<number | null> = [];
    const exits: Array<[number, number | null]> = [];
    const upEvents: number[] = [];
    const set: Array<[number, number | null, number | null]> = [];
    const cancelled: number[] = [];
    const pool = new Pool({
      processes: 2,
      softTimeout: 5,
      timeout: 10,
      onProcessUp: (p) => up.push(p),
      onProcessDown: (p) => down.push(p.exitcode),
      onProcessExit: logExit,
      onTimeoutSet: (r, soft, hard) => set.push([r.job, soft, hard]),
      onTimeoutCancel: (r) => cancelled.push(r.job),
    });
    pool.on('processUp', (p) => upEvents.push(p.pid!));
    pool.on('processExit', (p, code) => exits.push([p, code]));
    const accepted: Array<[number, number]> = [];
    const r = pool.applyAsync(square, [3], { acceptCallback: (p, t) => accepted.push([p, t]), correlationId: 'abc' });
    expect(await r).toBe(9);
    expect(r.correlationId).toBe('abc');
    expect(accepted).toHaveLength(1);
    expect(accepted[0]![0]).toBe(r.workerPids()[0]);
    // the worker's CLOCK_MONOTONIC, as Python's time.monotonic(): the same clock as this process's
    expect(Math.abs(accepted[0]![1] - Number(process.hrtime.bigint()) / 1e9)).toBeLessThan(60);
    expect(set).toEqual([[r.job, 5, 10]]);
    expect(cancelled).toEqual([r.job]);
    expect(await pool.map(square, [1, 2, 3], { chunksize: 1 })).toEqual([1, 4, 9]);
    expect(set).toHaveLength(1); // not for map results, as billiard
    expect(cancelled).toHaveLength(1);
    expect(up.map((p) => p.pid).sort()).toEqual([...upEvents].sort());
    expect(up).toHaveLength(2);
    const victim = up[0]!.pid!;
    process.kill(victim, 'SIGKILL');
    expect(await until(() => up.length === 3)).toBe(true);
    expect(down).toEqual([-9]);
    expect(exits).toEqual([[victim, -9]]);
    pool.close();
    await pool.join();
    expect(down.sort()).toEqual([-9, 0, 0]);
    // onProcessExit ran inside each worker that exited on its own, with its pid and exit code
    const logged = readFileSync(exitLog, 'utf8').trim().split('\n').sort();
    expect(logged).toEqual(up.slice(1).map((p) => `${p.pid} 0`).sort());
    delete process.env.BILLIARD_TS_EXIT_LOG;
  });
});

describe('Pool restarts and recycling', () => {
  test('maxRestarts: more abnormal exits than that within maxRestartFreq fail the waiting jobs with RestartFreqExceeded and close the pool', async () => {
    const log = join(tmp(), 'starts');
    const pool = new Pool({ processes: 1, initializer: failInit, initargs: [log], maxRestarts: 2, maxRestartFreq: 30 });
    const r = pool.applyAsync(square, [2]);
    const err = await r.get(60).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestartFreqExceeded);
    expect((err as Error).message).toBe('2 in 30s');
    expect(() => pool.applyAsync(square, [1])).toThrow(ValueError);
    await pool.join();
    expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(3);
  });

  test('maxMemoryPerChild: a worker past the peak RSS limit after a task exits 155 and is replaced; small tasks keep their worker', async () => {
    const probe = new Pool({ processes: 1 });
    const [peak] = await probe.apply(memory);
    await probe.terminate();
    const down: Array<number | null> = [];
    await using pool = new Pool({ processes: 1, maxMemoryPerChild: peak + 64 * 1024, onProcessDown: (p) => down.push(p.exitcode) });
    const first = await pool.apply(pid);
    expect(await pool.apply(pid)).toBe(first);
    expect(await pool.apply(square, [5])).toBe(25);
    expect(await pool.apply(pid)).toBe(first);
    expect(await pool.apply(allocate, [160])).toBe(1); // its result still arrives
    const next = await pool.apply(pid);
    expect(next).not.toBe(first);
    expect(down).toEqual([155]);
  });

  test('grow and shrink change the worker count; shrink with every worker busy is a ValueError; didStartOk', async () => {
    await using pool = new Pool({ processes: 1 });
    expect(await until(() => pool.stats().workers === 1)).toBe(true);
    expect(pool.didStartOk()).toBe(true);
    pool.grow(2);
    expect(pool.processes).toBe(3);
    expect(await until(() => pool.stats().workers === 3 && pool.stats().idle === 3)).toBe(true);
    const busy = [pool.applyAsync(hang), pool.applyAsync(hang), pool.applyAsync(hang)];
    expect(await until(() => busy.every((r) => r.accepted()))).toBe(true);
    expect(() => pool.shrink()).toThrow("Can't shrink pool. All processes busy!");
    for (const r of busy) r.terminate('SIGKILL');
    for (const r of busy) await expect(r.get(20)).rejects.toEqual(new Terminated(9));
    expect(pool.didStartOk()).toBe(false);
    expect(await until(() => pool.stats().idle === 3)).toBe(true);
    const before = pool.pids;
    pool.shrink(2);
    expect(pool.processes).toBe(1);
    expect(await until(() => pool.pids.length === 1)).toBe(true);
    expect(before).toContain(pool.pids[0]);
    expect(await pool.map(square, [1, 2, 3])).toEqual([1, 4, 9]);
  });

  test('restart() needs allowRestart; it replaces every worker, a busy one after its job', async () => {
    await using plain = new Pool({ processes: 1 });
    expect(() => plain.restart()).toThrow(AttributeError);
    await using pool = new Pool({ processes: 2, allowRestart: true });
    expect(await until(() => pool.stats().idle === 2)).toBe(true);
    const old = pool.pids;
    const busy = pool.applyAsync(sleepThen, [1, 500]);
    expect(await until(() => busy.accepted())).toBe(true);
    pool.restart();
    expect(await busy).toBe(1);
    expect(await until(() => pool.pids.length === 2 && pool.pids.every((p) => !old.includes(p)))).toBe(true);
    expect(await pool.map(square, [2, 3], { chunksize: 1 })).toEqual([4, 9]);
  });

  test('terminateJob(pid): the job fails with Terminated(15) and its worker is replaced', async () => {
    await using pool = new Pool({ processes: 1 });
    const r = pool.applyAsync(hang);
    expect(await until(() => r.accepted())).toBe(true);
    const [worker] = r.workerPids();
    pool.terminateJob(worker!);
    const err = await r.get(20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Terminated);
    expect(err).toEqual(new Terminated(15));
    expect(await pool.apply(pid)).not.toBe(worker);
  });

  test('lostWorkerTimeout: a worker that exits while a grandchild holds its result pipe fails its job after that long, not when the grandchild ends', async () => {
    const log = join(tmp(), 'grandchild');
    process.env.BILLIARD_TS_EXIT_LOG = log;
    try {
      await using pool = new Pool({ processes: 1, lostWorkerTimeout: 0.5 });
      const err = await pool
        .applyAsync(exitLeavingPipeOpen, [60])
        .get(20)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkerLostError);
      expect((err as Error).message).toMatch(/^Worker exited prematurely: exitcode 7 Job: \d+\.$/);
      expect(await pool.apply(square, [3])).toBe(9);
    } finally {
      delete process.env.BILLIARD_TS_EXIT_LOG;
      for (const p of readFileSync(log, 'utf8').trim().split('\n')) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});

/** Holds this thread (the pool's event loop) for `ms`: what a busy or descheduled process looks like to its timers. */
function holdThread(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // busy
  }
}

describe('a limit that expires while its result waits unread', () => {
  test('the hard limit: the result that came in meanwhile wins, and the worker lives', async () => {
    await using pool = new Pool({ processes: 1, timeout: 0.3 });
    const first = await pool.apply(pid, []);
    const r = pool.applyAsync(sleepThen, [42, 100]);
    expect(await until(() => r.accepted())).toBe(true);
    // The worker answers after 100 ms; the limit runs out at 300 ms; this process reads neither until 1.5 s.
    holdThread(1500);
    expect(await r.get(10)).toBe(42);
    expect(await pool.apply(pid, [])).toBe(first);
  });

  test("an abort's grace: the task that cleaned up in time keeps its worker", async () => {
    await using pool = new Pool({ processes: 1 });
    const first = await pool.apply(pid, []);
    const controller = new AbortController();
    const r = pool.applyAsync(cleanUpOnSoftLimit, [30_000], { signal: controller.signal });
    expect(await until(() => r.accepted())).toBe(true);
    controller.abort(new Error('not needed any more'));
    // The worker cleans up at once (SIGUSR1 went out with the abort); the 1 s grace runs out unread.
    // Held in the check phase, so that the next phase to run is the timers' (then the poll that reads).
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        holdThread(2500);
        resolve();
      }),
    );
    await expect(r.get(10)).rejects.toThrow('not needed any more');
    expect(await pool.apply(pid, [])).toBe(first);
  });
});

describe('Pool submission controls', () => {
  test('discard(): a waiting job never runs and its callbacks stay silent; with synack a job handed over but not yet confirmed is skipped (NACK)', async () => {
    const dir = tmp();
    for (const synack of [true, false]) {
      await using pool = new Pool({ processes: 1, synack, prefetch: 1 });
      await pool.apply(square, [1]);
      const called: unknown[] = [];
      const handed = pool.applyAsync(mark, [join(dir, `handed-${synack}`), 'ran'], { callback: (v) => called.push(v) });
      const waiting = pool.applyAsync(mark, [join(dir, `waiting-${synack}`), 'ran'], { callback: (v) => called.push(v) });
      handed.discard();
      waiting.discard();
      // a later job on the same (only) worker: everything before it was answered
      expect(await pool.apply(square, [2])).toBe(4);
      expect(existsSync(join(dir, `waiting-${synack}`))).toBe(false);
      // the job handed over at once: synack skips it at its ACK; without it, it runs and its result is ignored
      expect(existsSync(join(dir, `handed-${synack}`))).toBe(!synack);
      expect(called).toEqual([]);
      expect(handed.ready()).toBe(false);
    }
  });

  test("an AbortSignal: a waiting job is dropped, a running one is told (soft) and its worker reused, a synchronous one's worker is killed", async () => {
    await using pool = new Pool({ processes: 1 });
    const worker = await pool.apply(pid);
    const running = new AbortController();
    const queued = new AbortController();
    const r1 = pool.applyAsync(cleanUpOnSoftLimit, [10_000], { signal: running.signal });
    const r2 = pool.applyAsync(square, [2], { signal: queued.signal });
    queued.abort();
    await expect(r2.get(5)).rejects.toMatchObject({ name: 'AbortError' });
    expect(await until(() => r1.accepted())).toBe(true);
    running.abort(new Error('not needed any more'));
    await expect(r1.get(5)).rejects.toThrow('not needed any more');
    expect(await pool.apply(pid)).toBe(worker);
    const spinning = new AbortController();
    const r3 = pool.applyAsync(spinForever, [], { signal: spinning.signal });
    expect(await until(() => r3.accepted())).toBe(true);
    spinning.abort();
    await expect(r3.get(5)).rejects.toMatchObject({ name: 'AbortError' });
    expect(await until(() => !alive(worker))).toBe(true);
    expect(await pool.apply(square, [6])).toBe(36);
    const already = AbortSignal.abort();
    await expect(pool.applyAsync(square, [1], { signal: already }).get(5)).rejects.toMatchObject({ name: 'AbortError' });
  });

  test('maxQueue: past it a submission throws Full; drain fires when the queue empties; waitForSlot waits for a free worker', async () => {
    await using pool = new Pool({ processes: 1, maxQueue: 1, prefetch: 1 });
    expect(await until(() => pool.stats().idle === 1)).toBe(true);
    const a = pool.applyAsync(sleepThen, [1, 300]);
    const b = pool.applyAsync(sleepThen, [2, 10]);
    expect(pool.needsDrain).toBe(true);
    expect(() => pool.applyAsync(square, [3])).toThrow(Full);
    let drained = 0;
    pool.on('drain', () => drained++);
    let slot = false;
    const waiting = pool.waitForSlot().then(() => (slot = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(slot).toBe(false);
    expect(await a).toBe(1);
    expect(drained).toBe(1);
    expect(pool.needsDrain).toBe(false);
    expect(await b).toBe(2);
    await waiting;
    expect(slot).toBe(true);
  });

  test('stats(): workers, idle, running, queued, completed, run and wait times', async () => {
    await using pool = new Pool({ processes: 2, prefetch: 1 });
    expect(await until(() => pool.stats().idle === 2)).toBe(true);
    const jobs = [0, 1, 2, 3].map((k) => pool.applyAsync(sleepThen, [k, 200]));
    const busy = pool.stats();
    expect(busy).toMatchObject({ processes: 2, workers: 2, idle: 0, running: 2, queued: 2, completed: 0, started: 2 });
    await Promise.all(jobs);
    const s = pool.stats();
    expect(s).toMatchObject({ workers: 2, idle: 2, running: 0, queued: 0, completed: 4 });
    expect(s.runTime.count).toBe(4);
    expect(s.runTime.p50).toBeGreaterThanOrEqual(190);
    expect(s.runTime.max).toBeGreaterThanOrEqual(s.runTime.p50);
    expect(s.waitTime.count).toBe(4);
    expect(s.waitTime.max).toBeGreaterThanOrEqual(190); // the last two waited for the first two
    expect(s.utilisation).toBeGreaterThan(0);
    expect(s.utilisation).toBeLessThanOrEqual(1);
  });
});

describe('Pool failures and signals', () => {
  test('a worker ignores SIGINT (Ctrl-C reaches the process group); a task that exits its process fails with WorkerLostError and its exit code', async () => {
    await using pool = new Pool({ processes: 1 });
    const worker = await pool.apply(pid);
    process.kill(worker, 'SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    expect(await pool.apply(pid)).toBe(worker);
    const err = await pool
      .applyAsync(exitWith, [3])
      .get(20)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerLostError);
    expect((err as Error).message).toMatch(/^Worker exited prematurely: exitcode 3 Job: \d+\.$/);
    expect(await pool.apply(square, [2])).toBe(4);
  });

  test('a result that cannot be pickled: get() throws MaybeEncodingError, errorCallback gets it, the worker goes on', async () => {
    await using pool = new Pool({ processes: 1 });
    const worker = await pool.apply(pid);
    const errors: unknown[] = [];
    const r = pool.applyAsync(unpicklable, [], { errorCallback: (einfo) => errors.push(einfo.exception) });
    const err = await r.get(20).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MaybeEncodingError);
    expect((err as Error).message).toMatch(/^Error sending result: '.*'\. Reason: '.*'\.$/);
    expect(errors).toEqual([err]);
    expect(await pool.apply(pid)).toBe(worker);
  });

  test('callbacksPropagate: a callback error of a listed class is thrown on the event loop; others are warnings', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/pool-propagate.ts'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const seen = JSON.parse(r.stdout.trim().split('\n').pop()!) as string[];
    expect(seen).toEqual(['warning Pool callback raised exception: Error: plain', 'uncaught Fatal: listed']);
  });
});

describe('V8 tier-up in pool workers', () => {
  const run = (budget: string | undefined, flags: string[] = []): { worker: number; here: number } => {
    const env = { ...process.env };
    if (budget === undefined) delete env.BILLIARD_TS_INTERRUPT_BUDGET;
    else env.BILLIARD_TS_INTERRUPT_BUDGET = budget;
    const args = ['--allow-natives-syntax', '--no-concurrent-recompilation', ...flags, '--import', 'tsx', 'test/fixtures/pool-tierup.ts'];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000, env });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { worker: number; here: number };
  };

  test('a worker optimizes hot code after less bytecode than V8 by default; the pool process is left alone; 0 and a flag of its own leave V8 as it is', () => {
    const quick = run(undefined);
    expect(quick.here).toBeGreaterThan(0);
    expect(quick.worker).toBeGreaterThan(0);
    // The default budget is a seventh of V8's: at least three times fewer calls before the function is optimized.
    expect(quick.worker * 3).toBeLessThan(quick.here);
    expect(run('0')).toEqual({ worker: quick.here, here: quick.here });
    // A budget of its own in the worker's flags wins (the worker inherits the pool process's flags).
    const own = run(undefined, ['--interrupt-budget=135168']);
    expect(own.worker).toBe(own.here);
  });
});

describe("billiard's override points", () => {
  test('onGrow, onShrink and onJobReady are called as billiard calls them; markAsWorkerLost fails a job with WorkerLostError; cpuCount', async () => {
    const calls: string[] = [];
    class Hooked extends Pool {
      override onGrow(n: number): void {
        calls.push(`grow ${n}`);
      }
      override onShrink(n: number): void {
        calls.push(`shrink ${n}`);
      }
      override onJobReady(job: number, i: number | null, obj: unknown[], inqWFd: unknown): void {
        calls.push(`ready ${typeof job} ${i} ${JSON.stringify([...obj])} ${typeof inqWFd}`);
      }
    }
    await using pool = new Hooked({ processes: 1 });
    expect(await pool.apply(square, [7])).toBe(49);
    expect(calls).toEqual(['ready number null [true,49] number']);
    pool.grow(2);
    expect(await until(() => pool.stats().idle === 3, 30)).toBe(true);
    pool.shrink(2);
    expect(calls.slice(1)).toEqual(['grow 2', 'shrink 1', 'shrink 1']);
    // A job a worker hangs on, failed by hand as billiard's Celery-side code does it.
    const stuck = pool.applyAsync(hang);
    expect(await until(() => stuck.accepted(), 30)).toBe(true);
    pool.markAsWorkerLost(stuck, -9);
    const err = await stuck.get(5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerLostError);
    expect((err as Error).message).toBe(`Worker exited prematurely: signal 9 (SIGKILL) Job: ${stuck.job}.`);
    // And one still waiting for a worker.
    const waiting = pool.applyAsync(square, [2]);
    pool.markAsWorkerLost(waiting, 1);
    await expect(waiting.get(5)).rejects.toBeInstanceOf(WorkerLostError);
    expect(pool.cpuCount()).toBe(availableParallelism());
  });
  test('getProcessQueues, sendAck, processFlushQueues, onJobProcessDown, onPartialRead and onJobProcessLost are called as billiard calls them; processSentinels', async () => {
    const calls: string[] = [];
    let keepLost = false;
    class Hooked extends Pool {
      override getProcessQueues(): ReturnType<Pool['getProcessQueues']> {
        calls.push('queues');
        return super.getProcessQueues();
      }
      override sendAck(response: number, job: number, i: number | null, fd: number): void {
        calls.push(`ack ${response} ${job} ${i} ${fd > 2}`);
        super.sendAck(response, job, i, fd);
      }
      override processFlushQueues(worker: Process): void {
        calls.push(`flush ${worker.pid}`);
      }
      override onJobProcessDown(job: { job: number }, pidGone: number): void {
        calls.push(`down ${job.job} ${pidGone}`);
      }
      override onPartialRead(job: { job: number }, worker: Process): void {
        calls.push(`partial ${job.job} ${worker.pid}`);
      }
      override onJobProcessLost(job: Parameters<Pool['onJobProcessLost']>[0], pid: number, exitcode: number): void {
        calls.push(`lost ${job.job} ${pid} ${exitcode}`);
        if (!keepLost) super.onJobProcessLost(job, pid, exitcode);
      }
    }
    await using pool = new Hooked({ processes: 1, synack: true, prefetch: 2 });
    const first = pool.applyAsync(square, [7]);
    expect(await first).toBe(49);
    // ACK is 0: the syn pipe's write end is a descriptor of this process
    expect(calls).toEqual(['queues', `ack 0 ${first.job} null true`]);
    calls.length = 0;

    // A worker killed while it runs one job (lost) and holds the next in its pipe (written, never accepted).
    const sentinels = pool.processSentinels;
    expect(sentinels).toHaveLength(1);
    const running = pool.applyAsync(hang);
    expect(await until(() => running.accepted(), 30)).toBe(true);
    const waiting = pool.applyAsync(square, [3]);
    expect(pool.stats()).toMatchObject({ queued: 0, running: 1 });
    const [victim] = running.workerPids();
    process.kill(victim!, 'SIGKILL');
    expect(await wait(sentinels, 20)).toEqual(sentinels);
    await expect(running.get(20)).rejects.toBeInstanceOf(WorkerLostError);
    expect(await waiting.get(20)).toBe(9); // run by the replacement
    expect(calls.slice(0, 6)).toEqual([
      `ack 0 ${running.job} null true`,
      `flush ${victim}`,
      `down ${running.job} ${victim}`,
      `down ${waiting.job} ${victim}`,
      `partial ${waiting.job} ${victim}`,
      `lost ${running.job} ${victim} -9`,
    ]);
    expect(calls.slice(6)).toEqual(['queues', `ack 0 ${waiting.job} null true`]);

    // An override that does not fail a lost job leaves it pending until markAsWorkerLost.
    keepLost = true;
    const kept = pool.applyAsync(hang);
    expect(await until(() => kept.accepted(), 30)).toBe(true);
    process.kill(kept.workerPids()[0]!, 'SIGKILL');
    expect(await until(() => calls.some((c) => c.startsWith(`lost ${kept.job} `)), 30)).toBe(true);
    expect(kept.ready()).toBe(false);
    pool.markAsWorkerLost(kept, -9);
    await expect(kept.get(5)).rejects.toBeInstanceOf(WorkerLostError);
  });
});

describe('Pool prefetch', () => {
  test('a busy worker holds its next part; a worker killed with parts it had not accepted: they run elsewhere, only its running part is lost', async () => {
    await using pool = new Pool({ processes: 2, prefetch: 2 });
    expect(await until(() => pool.stats().idle === 2)).toBe(true);
    const a = pool.applyAsync(hang);
    const b = pool.applyAsync(sleepThen, [2, 300]);
    expect(await until(() => a.accepted() && b.accepted())).toBe(true);
    // both workers busy: the next parts are handed over (held), none waits in the pool
    const next = [pool.applyAsync(square, [3]), pool.applyAsync(square, [4])];
    expect(pool.stats()).toMatchObject({ queued: 0, running: 2 });
    const [victim] = a.workerPids();
    process.kill(victim!, 'SIGKILL');
    await expect(a.get(20)).rejects.toBeInstanceOf(WorkerLostError);
    expect(await Promise.all(next)).toEqual([9, 16]);
    expect(await b).toBe(2);
    for (const r of next) expect(r.workerPids()[0]).not.toBe(victim);
  });

  test("the default prefetch, 'auto', follows the parts' run time: deep for tiny parts, 2 for long ones (one part at most waits behind a long one)", async () => {
    await using pool = new Pool({ processes: 1 });
    expect(pool.prefetch).toBe(2); // nothing run yet
    // The mean is a moving average of measured run times: a part the machine delayed near the end
    // (a collection, a descheduling) can hold it up for a while, so a few maps may be needed.
    for (let round = 0; round < 10; round++) {
      await pool.map(square, Array.from({ length: 300 }, (_, k) => k), { chunksize: 1 });
      if (pool.prefetch > 4) break;
    }
    expect(pool.prefetch).toBeGreaterThan(4);
    expect(pool.prefetch).toBeLessThanOrEqual(32);
    for (let k = 0; k < 6; k++) await pool.apply(sleepThen, [k, 30]);
    expect(pool.prefetch).toBe(2);
    // One worker busy with a long part: one more part is handed to it, the rest wait in the pool.
    const parts = Array.from({ length: 6 }, (_, k) => pool.applyAsync(sleepThen, [k, 150]));
    expect(await until(() => parts[0]!.accepted())).toBe(true);
    expect(pool.stats()).toMatchObject({ running: 1, queued: 4 });
    expect(await Promise.all(parts)).toEqual([0, 1, 2, 3, 4, 5]);
    // A number is kept as given; 'auto' may be asked for by name; anything else is refused.
    await using fixed = new Pool({ processes: 1, prefetch: 3 });
    await fixed.map(square, [1, 2, 3], { chunksize: 1 });
    expect(fixed.prefetch).toBe(3);
    await using auto = new Pool({ processes: 1, prefetch: 'auto' });
    expect(auto.prefetch).toBe(2);
    expect(() => new Pool({ processes: 1, prefetch: 0 })).toThrow(ValueError);
    expect(() => new Pool({ processes: 1, prefetch: 'deep' as never })).toThrow(ValueError);
  });

  test('prefetch 1: a part waits in the pool until a worker is free', async () => {
    await using pool = new Pool({ processes: 1, prefetch: 1 });
    expect(await until(() => pool.stats().idle === 1)).toBe(true);
    const a = pool.applyAsync(sleepThen, [1, 200]);
    const b = pool.applyAsync(square, [5]);
    expect(pool.stats()).toMatchObject({ queued: 1 });
    expect(await a).toBe(1);
    expect(await b).toBe(25);
  });
});
