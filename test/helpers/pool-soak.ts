/**
 * The pool under fire, shared by test/pool-fault.test.ts (300 tasks, a kill
 * every 30) and bench/soak-pool.ts (10,000 tasks, a kill every 100): a pool
 * runs small tasks, some synchronous, some awaiting a short sleep, some
 * throwing a ValueError on purpose, while a worker is SIGKILLed every
 * `killEvery` settled tasks. It records, per task, every callback and
 * errorCallback call and what get() gives; the caller asserts on the report.
 *
 * This module is also what the workers import to find the task functions:
 * it does nothing on import.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { Pool, ValueError, WorkerLostError, type ApplyResult, type ExceptionInfo } from '../../src/index.js';

/** i * i, at once. */
export function soakSquare(i: number): number {
  return i * i;
}

/** i * i after `ms` milliseconds: the task is in flight across event-loop turns. */
export async function soakSleepSquare(i: number, ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return i * i;
}

/** Fails on purpose with a ValueError naming the task. */
export function soakFail(i: number): never {
  throw new ValueError(`task ${i} fails on purpose`);
}

/**
 * What task i does: every 37th fails on purpose, every 20th sleeps 200 ms (long enough that a
 * worker killed while it runs has not answered yet, even on a loaded machine), half the rest
 * 1 to 5 ms, the others return at once.
 */
export function plan(i: number): { fn: typeof soakSquare | typeof soakSleepSquare | typeof soakFail; args: number[]; fails: boolean } {
  if (i % 37 === 5) return { fn: soakFail, args: [i], fails: true };
  if (i % 20 === 3) return { fn: soakSleepSquare, args: [i, 200], fails: false };
  if (i % 2 === 1) return { fn: soakSleepSquare, args: [i, 1 + (i % 5)], fails: false };
  return { fn: soakSquare, args: [i], fails: false };
}

export interface SoakOptions {
  tasks: number;
  /** A worker is SIGKILLed each time this many more tasks have settled. */
  killEvery: number;
  processes: number;
  /** Seconds to wait for every task to settle before counting the rest as lost. */
  settleTimeout: number;
  /** Seconds to wait for the pool to be back to `processes` live workers. */
  refillTimeout: number;
  /**
   * Also kill workers that have not finished a job yet. Off by default: five such deaths
   * without a death of a worker that had taken a job make the pool fail every waiting job with
   * RestartFreqExceeded, even while other workers take jobs (the `test.fails` case of
   * test/pool-fault.test.ts).
   */
  killYoung?: boolean;
}

/** A process as `ps` shows it. */
export interface PsEntry {
  pid: number;
  ppid: number;
  stat: string;
  /** The command name: `node` for a worker, alive or zombie (`ps` itself is `ps`). */
  comm: string;
}

/**
 * `ps -o pid=,ppid=,stat=,comm= -p <pids>`: the ones that exist (zombies
 * included, stat Z). pids wrap around (pid_max is 32768 here): filter on
 * ppid and comm before concluding that a pid is still the same process.
 */
export function psEntries(pids: readonly number[]): PsEntry[] {
  if (pids.length === 0) return [];
  let out: string;
  try {
    out = execFileSync('ps', ['-o', 'pid=,ppid=,stat=,comm=', '-p', pids.join(',')], { encoding: 'utf8' });
  } catch (e) {
    // ps exits 1 when none of them exists.
    const err = e as { status?: number; stdout?: string };
    if (err.status === 1) out = err.stdout ?? '';
    else throw e;
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 4)
    .map(([pid, ppid, stat, comm]) => ({ pid: Number(pid), ppid: Number(ppid), stat: stat!, comm: comm! }));
}

/** Node children of this process among `pids`, zombies included: workers not yet reaped, or alive. */
export function nodeChildren(pids: readonly number[]): PsEntry[] {
  return psEntries(pids).filter((p) => p.ppid === process.pid && p.comm === 'node');
}

/** Live (not zombie) children of this process among `pids`. */
export function liveChildren(pids: readonly number[]): number[] {
  return psEntries(pids)
    .filter((p) => p.ppid === process.pid && !p.stat.startsWith('Z'))
    .map((p) => p.pid);
}

/**
 * Whether `pid` is a live (not zombie) child of this process, from
 * /proc/<pid>/stat: fast enough to call between two pool events (ps takes
 * milliseconds, during which the tasks in flight would finish).
 */
export function isLiveChild(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ')'.
  const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return state !== 'Z' && state !== 'X' && Number(ppid) === process.pid;
}

/** Children of this process running the worker entry (src/process/child.ts), found by scanning `ps -eo`. */
export function workerChildren(): PsEntry[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,stat=,comm=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5 && Number(f[1]) === process.pid && f.slice(4).some((a) => a.endsWith('/src/process/child.ts') || a.endsWith('/dist/process/child.js')))
    .map(([pid, ppid, stat, comm]) => ({ pid: Number(pid), ppid: Number(ppid), stat: stat!, comm: comm! }));
}

export interface TaskRecord {
  i: number;
  fails: boolean;
  result: ApplyResult<number>;
  callbacks: number;
  errorCallbacks: number;
  value?: number;
  einfo?: ExceptionInfo;
}

export interface SoakReport {
  tasks: number;
  /** Tasks that ended with the right value. */
  values: number;
  /** Tasks that failed on purpose with their own ValueError. */
  expectedErrors: number;
  /** WorkerLostError('... signal 9 (SIGKILL) Job: <its job>.') of a task whose worker was one we killed. */
  workerLost: number;
  /** Anything else: a wrong value, a value for a task that must fail, another error, a WorkerLostError that does not fit. */
  wrong: string[];
  /** Tasks whose get() disagrees with what their callback or errorCallback was given. */
  getMismatch: string[];
  kills: number;
  killedPids: number[];
  /** Callback + errorCallback calls beyond the first, over every task. */
  duplicates: number;
  /** Tasks never settled (not ready, or no callback) within settleTimeout. */
  lost: number;
  /** pool.pids once the pool was refilled (or refillTimeout passed). */
  finalPids: number[];
  /** Those of finalPids that are live children of this process (ps). */
  finalLive: number[];
  /** Killed pids still in the process table as children of this process (not reaped). */
  killedLeft: number[];
  /** Worker processes (ps) still there after terminate(). */
  leftAfterTerminate: number[];
  /** Every task submitted -> every task settled. */
  seconds: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the soak; `onProgress` is told each time a worker is killed. */
export async function runSoak(options: SoakOptions, onProgress?: (settled: number, kills: number) => void): Promise<SoakReport> {
  const { tasks, killEvery, processes } = options;
  const pool = new Pool({ processes });
  const records: TaskRecord[] = [];
  /** Submitted, not settled: the first ones in it are the ones the workers hold. */
  const inFlight = new Set<TaskRecord>();
  /** Workers that have finished a job (the pids of settled results). */
  const worked = new Set<number>();
  const killed = new Set<number>();
  let settled = 0;
  /** A kill that found no worker to kill waits for the next settled task. */
  let killDue = false;

  const killOne = (): void => {
    // Only a worker this pool has now, not killed yet, and still a live child of this process:
    // never a pid that could have been reaped and reused by someone else.
    const pids = pool.pids.filter((p) => !killed.has(p) && (options.killYoung || worked.has(p)) && isLiveChild(p));
    if (pids.length === 0) return void (killDue = true);
    killDue = false;
    // Every other kill hits the worker running the longest task in flight (acknowledged, so that it
    // must fail with WorkerLostError); the others hit any of them: busy, idle, or just handed a job
    // it has not acknowledged yet (which must run on another worker).
    let pid = pids[Math.floor(Math.random() * pids.length)]!;
    if (killed.size % 2 === 0) {
      let longest = -1;
      let scanned = 0;
      for (const rec of inFlight) {
        if (++scanned > 50) break; // the jobs the workers hold are among the oldest unsettled ones
        const p = rec.result.workerPids()[0];
        const ms = plan(rec.i).args[1] ?? 0;
        if (p !== undefined && pids.includes(p) && rec.result.accepted() && !rec.result.ready() && ms > longest) {
          longest = ms;
          pid = p;
        }
      }
    }
    process.kill(pid, 'SIGKILL');
    killed.add(pid);
    onProgress?.(settled, killed.size);
  };

  const onSettled = (rec: TaskRecord): void => {
    inFlight.delete(rec);
    for (const p of rec.result.workerPids()) worked.add(p);
    settled++;
    if ((killDue || settled % killEvery === 0) && settled < tasks) killOne();
  };

  await pool.apply(soakSquare, [0]); // the workers are up before the clock starts
  const start = performance.now();
  for (let i = 0; i < tasks; i++) {
    const { fn, args, fails } = plan(i);
    const rec = { i, fails, callbacks: 0, errorCallbacks: 0 } as TaskRecord;
    rec.result = pool.applyAsync(fn as (...a: number[]) => number | Promise<number>, args, {
      callback: (v) => {
        rec.callbacks++;
        rec.value = v;
        onSettled(rec);
      },
      errorCallback: (einfo) => {
        rec.errorCallbacks++;
        rec.einfo = einfo;
        onSettled(rec);
      },
    });
    records.push(rec);
    inFlight.add(rec);
  }

  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(records.map((r) => r.result.wait())), new Promise((r) => (timer = setTimeout(r, options.settleTimeout * 1000)))]);
  clearTimeout(timer);
  const seconds = (performance.now() - start) / 1000;

  // The pool is back to full size: `processes` pids, each a live child.
  const refillEnd = Date.now() + options.refillTimeout * 1000;
  let finalPids = pool.pids;
  let finalLive = liveChildren(finalPids);
  while ((finalPids.length !== processes || finalLive.length !== finalPids.length) && Date.now() < refillEnd) {
    await sleep(50);
    finalPids = pool.pids;
    finalLive = liveChildren(finalPids);
  }
  // A late duplicate (a READY after a WorkerLostError...) would have arrived by now.
  await sleep(100);

  const wrong: string[] = [];
  const getMismatch: string[] = [];
  let values = 0;
  let expectedErrors = 0;
  let workerLost = 0;
  let duplicates = 0;
  let lost = 0;
  for (const rec of records) {
    const calls = rec.callbacks + rec.errorCallbacks;
    duplicates += Math.max(0, calls - 1);
    if (calls === 0 || !rec.result.ready()) {
      lost++;
      continue;
    }
    const got = await rec.result.get(0).then(
      (v) => ({ ok: true as const, v }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    if (got.ok ? rec.callbacks !== 1 || got.v !== rec.value : rec.errorCallbacks !== 1 || got.e !== rec.einfo?.exception) {
      getMismatch.push(`task ${rec.i}: get() ${got.ok ? `= ${String(got.v)}` : `threw ${String(got.e)}`}, callbacks ${rec.callbacks}, errorCallbacks ${rec.errorCallbacks}`);
    }
    // Acknowledged by exactly one worker: a job is never run again after a worker took it.
    const ackedBy = rec.result.workerPids();
    if (ackedBy.length !== 1) wrong.push(`task ${rec.i}: acknowledged by ${ackedBy.length} workers (${ackedBy.join(', ')})`);
    if (rec.callbacks > 0) {
      if (!rec.fails && rec.value === rec.i * rec.i) values++;
      else wrong.push(`task ${rec.i}: value ${String(rec.value)}${rec.fails ? ', must fail' : ''}`);
      continue;
    }
    const exc = rec.einfo?.exception;
    if (exc instanceof WorkerLostError) {
      const pid = rec.result.workerPids()[0];
      const fits = pid !== undefined && killed.has(pid) && exc.message === `Worker exited prematurely: signal 9 (SIGKILL) Job: ${rec.result.job}.`;
      if (fits) workerLost++;
      else wrong.push(`task ${rec.i}: ${String(exc)} (its worker ${String(pid)}${pid !== undefined && killed.has(pid) ? ' was' : ' was not'} killed)`);
    } else if (rec.fails && exc instanceof ValueError && exc.message.endsWith(`task ${rec.i} fails on purpose`)) {
      expectedErrors++;
    } else {
      wrong.push(`task ${rec.i}: ${exc instanceof Error ? `${exc.constructor.name}: ${exc.message}` : String(exc)}`);
    }
  }

  const killedPids = [...killed];
  const killedLeft = nodeChildren(killedPids)
    .filter((p) => !finalPids.includes(p.pid))
    .map((p) => p.pid);

  const seen = new Set([...finalPids, ...killedPids, ...records.flatMap((r) => r.result.workerPids())]);
  await pool.terminate();
  const leftAfterTerminate = [...new Set([...nodeChildren([...seen]).map((p) => p.pid), ...workerChildren().map((p) => p.pid)])];

  return {
    tasks,
    values,
    expectedErrors,
    workerLost,
    wrong,
    getMismatch,
    kills: killed.size,
    killedPids,
    duplicates,
    lost,
    finalPids,
    finalLive,
    killedLeft,
    leftAfterTerminate,
    seconds,
  };
}
