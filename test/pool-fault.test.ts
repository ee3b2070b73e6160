/**
 * The pool while its workers are SIGKILLed (test/helpers/pool-soak.ts; the
 * long run is `npm run soak:pool`): every task ends exactly once, with its
 * value or a typed error, and the pool is back to full size. Then terminate()
 * with tasks in flight: every result settles and no worker process is left.
 */
import { describe, expect, test } from 'vitest';

import { Pool, RestartFreqExceeded, Terminated } from '../src/index.js';
import { isLiveChild, liveChildren, nodeChildren, runSoak, soakSleepSquare, workerChildren } from './helpers/pool-soak.js';

describe('Pool under SIGKILL', () => {
  test('300 tasks on 3 workers, a worker SIGKILLed every 30 settled tasks: each task settles once, with its value or a typed error; the pool ends with 3 live workers', async () => {
    // Deadlines for a broken pool (lost tasks, a pool that does not refill), within the test's timeout.
    const r = await runSoak({ tasks: 300, killEvery: 30, processes: 3, settleTimeout: 40, refillTimeout: 20 });
    expect(r.lost).toBe(0);
    expect(r.duplicates).toBe(0);
    expect(r.getMismatch).toEqual([]);
    expect(r.wrong).toEqual([]);
    expect(r.kills).toBe(9);
    // One job per worker at a time: a kill fails at most the one job its worker held. Every other
    // kill hits a worker running an acknowledged job, so some jobs did fail with WorkerLostError.
    expect(r.workerLost).toBeLessThanOrEqual(r.kills);
    expect(r.workerLost).toBeGreaterThanOrEqual(1);
    expect(r.finalPids).toHaveLength(3);
    expect(r.finalLive.sort()).toEqual([...r.finalPids].sort());
    expect(r.killedLeft).toEqual([]);
    expect(r.leftAfterTerminate).toEqual([]);
  }, 90_000);

  test('terminate() with tasks in flight and queued: every result settles with its value or Terminated; no worker process is left', async () => {
    const pool = new Pool({ processes: 3 });
    const calls = new Map<number, number>();
    // The first 9 take 10 ms, the others 5 s: terminate() comes while 3 of those run and the rest wait.
    const results = Array.from({ length: 60 }, (_, i) => {
      const count = (): void => void calls.set(i, (calls.get(i) ?? 0) + 1);
      return pool.applyAsync(soakSleepSquare, [i, i < 9 ? 10 : 5000], { callback: count, errorCallback: count });
    });
    const start = Date.now();
    const inFlight = (): number => results.filter((r) => r.accepted() && !r.ready()).length;
    while (!(results.slice(0, 9).every((r) => r.ready()) && inFlight() === 3) && Date.now() - start < 30_000) await new Promise((res) => setTimeout(res, 10));
    const running = results.filter((r) => r.accepted() && !r.ready());
    expect(running).toHaveLength(3);
    const pids = pool.pids;
    expect(pids).toHaveLength(3);
    expect(liveChildren(pids).sort()).toEqual([...pids].sort());

    await pool.terminate();

    const outcomes = await Promise.all(results.map((r) => r.get(5).then((v) => ({ v }), (e: unknown) => ({ e }))));
    outcomes.forEach((o, i) => {
      if (i < 9) expect(o).toEqual({ v: i * i });
      else expect((o as { e: unknown }).e).toBeInstanceOf(Terminated);
    });
    expect([...calls.keys()].sort((a, b) => a - b)).toEqual(results.map((_, i) => i));
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    // No worker left: neither the pids the pool had (ps -p, node children of this process, alive or
    // zombie: a pid may have been reused elsewhere) nor any child running the worker entry (ps -eo).
    expect(nodeChildren([...new Set([...pids, ...results.flatMap((r) => r.workerPids())])])).toEqual([]);
    expect(workerChildren()).toEqual([]);
    expect(pool.pids).toEqual([]);
  });

  // Workers SIGKILLed from outside before their first job, while another worker accepts and finishes
  // jobs all along, are not "start failures in a row": the count restarts at every ACK. (It used to
  // restart only when a worker that had accepted a job died: then every waiting job failed with
  // RestartFreqExceeded after 5 such kills.)
  test('5 young workers SIGKILLed before their first job while another worker runs jobs: no job fails with RestartFreqExceeded', async () => {
    await using pool = new Pool({ processes: 2 });
    const results = Array.from({ length: 300 }, (_, i) => pool.applyAsync(soakSleepSquare, [i, 20]));
    const ackedBy = (): Set<number> => new Set(results.flatMap((r) => r.workerPids()));
    // Both workers have taken jobs: they started well.
    const start = Date.now();
    while (!(pool.pids.length === 2 && pool.pids.every((p) => ackedBy().has(p))) && Date.now() - start < 30_000) await new Promise((r) => setTimeout(r, 5));
    const [veteran, survivor] = pool.pids as [number, number];
    expect(ackedBy().has(survivor)).toBe(true);
    const jobsOfSurvivor = (): number => results.filter((r) => r.workerPids().includes(survivor)).length;
    const before = jobsOfSurvivor();
    const killed = new Set<number>([veteran]);
    process.kill(veteran, 'SIGKILL'); // a worker that had taken jobs: the count starts from 0
    // Its replacements are killed as soon as they exist, long before they can load the worker and take a job.
    while (killed.size < 6 && Date.now() - start < 60_000) {
      const acked = ackedBy();
      for (const p of pool.pids.filter((q) => q !== survivor && !acked.has(q) && !killed.has(q) && isLiveChild(q))) {
        process.kill(p, 'SIGKILL');
        killed.add(p);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(killed.size).toBe(6);
    // The other worker took jobs meanwhile, and still runs: the pool was never failing to start workers.
    expect(jobsOfSurvivor()).toBeGreaterThan(before);
    expect(isLiveChild(survivor)).toBe(true);
    const outcomes = await Promise.all(results.map((r) => r.get(60).then(() => null, (e: unknown) => e)));
    expect(outcomes.filter((e) => e instanceof RestartFreqExceeded)).toEqual([]);
  });
});
