/**
 * A billiard-ts Pool whose workers are Python processes running billiard's
 * own `Worker` (compat/billiard_ts_worker.py), driven by the same pool logic
 * as Node workers (issue 11, spec/pool.md section 8b). Tasks are Python
 * functions: the standard library's and compat/peers/pool_tasks.py's.
 */
import { spawnSync } from 'node:child_process';

import { describe, expect, test } from 'vitest';

import { ExceptionInfo, MaybeEncodingError, Pool, pyfunc, PythonNotFoundError, PythonException, RemoteTraceback, SoftTimeLimitExceeded, Terminated, TimeLimitExceeded, ValueError, WorkerLostError, type Process } from '../src/index.js';
import { square } from './fixtures/pool-targets.js';
import { PEER_DIR, pythonFor } from './helpers/peers.js';
import { until } from './helpers/until.js';

const task = (name: string) => pyfunc(`pool_tasks.${name}`);

function pythonPool(options: ConstructorParameters<typeof Pool>[0] = {}): Pool {
  return new Pool({ processes: 2, ...options, python: { executable: pythonFor('3.11'), path: [PEER_DIR] } });
}

describe('a Pool of Python workers', () => {
  test('apply, map (chunked, through billiard.pool.mapstar), starmap, imap and kwargs run Python functions', async () => {
    await using pool = pythonPool();
    expect(await pool.apply(pyfunc('operator.mul'), [6, 7])).toBe(42);
    expect(await pool.apply(pyfunc('builtins.int'), ['ff'], { kwds: { base: 16 } })).toBe(255);
    expect(await pool.map(pyfunc('operator.neg'), [1, 2, 3, 4, 5], { chunksize: 2 })).toEqual([-1, -2, -3, -4, -5]);
    expect(await pool.starmap(pyfunc('builtins.pow'), [[2, 3], [3, 2], [10, 0]])).toEqual([8, 9, 1]);
    const seen: unknown[] = [];
    for await (const v of pool.imap(task('scale'), [1, 2, 3])) seen.push(v);
    expect(seen).toEqual([1, 2, 3]);
    expect(await pool.apply(task('scale'), ['ab'], { kwds: { factor: 3 } })).toBe('ababab');
    const pids = await pool.map(task('pid'), [0, 1, 2, 3, 4, 5, 6, 7], { chunksize: 1 });
    expect(new Set(pids).size).toBeLessThanOrEqual(2);
    for (const pid of pids) expect(pid).not.toBe(process.pid);
  });

  test("a Python exception arrives typed: instanceof the class it mirrors, with Python's type name, args and the worker's traceback", async () => {
    await using pool = pythonPool();
    const einfos: ExceptionInfo[] = [];
    const err = (await pool.applyAsync(pyfunc('builtins.int'), ['x'], { errorCallback: (e) => einfos.push(e) }).get().catch((e: unknown) => e)) as PythonException;
    expect(err).toBeInstanceOf(PythonException);
    expect(err).toBeInstanceOf(ValueError);
    expect(err.pyModule).toBe('builtins');
    expect(err.pyName).toBe('ValueError');
    expect([...(err.args as unknown[])]).toEqual(["invalid literal for int() with base 10: 'x'"]);
    const text = /Traceback \(most recent call last\):[\s\S]*billiard\/pool\.py[\s\S]*ValueError: invalid literal for int\(\) with base 10: 'x'/;
    expect(err.cause).toBeInstanceOf(RemoteTraceback);
    expect((err.cause as Error).message).toMatch(text);
    expect(einfos).toHaveLength(1);
    expect(einfos[0]!.exception).toBe(err);
    expect(einfos[0]!.traceback).toMatch(text);
    // the worker goes on
    expect(await pool.apply(pyfunc('operator.add'), [1, 2])).toBe(3);
  });

  test('the soft limit is SIGUSR1 into billiard\'s handler: an uncaught one fails the task with SoftTimeLimitExceeded, a caught one lets it clean up; the worker survives both', async () => {
    await using pool = pythonPool({ processes: 1 });
    const before = await pool.apply(task('pid'), []);
    await expect(pool.applyAsync(pyfunc('time.sleep'), [30], { softTimeout: 0.3 }).get()).rejects.toBeInstanceOf(SoftTimeLimitExceeded);
    expect(await pool.applyAsync(task('sleep_and_clean_up'), [30], { softTimeout: 0.3 }).get()).toBe('cleaned up');
    expect(await pool.apply(task('pid'), [])).toBe(before);
  });

  test('the hard limit kills the worker: TimeLimitExceeded, and a new worker takes the next task', async () => {
    await using pool = pythonPool({ processes: 1 });
    const before = await pool.apply(task('pid'), []);
    await expect(pool.applyAsync(pyfunc('time.sleep'), [30], { timeout: 0.3 }).get()).rejects.toBeInstanceOf(TimeLimitExceeded);
    const after = await pool.apply(task('pid'), []);
    expect(after).not.toBe(before);
  });

  test('a worker that dies in a task: WorkerLostError, and the pool keeps its size', async () => {
    await using pool = pythonPool({ processes: 1 });
    const err = await pool.apply(task('die'), [3]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerLostError);
    expect(String((err as Error).message)).toMatch(/exitcode 3/);
    expect(await pool.apply(pyfunc('operator.mul'), [2, 21])).toBe(42);
  });

  test('maxtasksperchild: billiard\'s worker exits 155 after N tasks and is replaced; maxMemoryPerChild recycles a worker past its peak RSS', async () => {
    const exits: Array<number | null> = [];
    {
      await using pool = pythonPool({ processes: 1, maxtasksperchild: 2, onProcessDown: (p: Process) => exits.push(p.exitcode) });
      const pids: number[] = [];
      for (let i = 0; i < 5; i++) pids.push((await pool.apply(task('pid'), [])) as number);
      expect(new Set(pids).size).toBe(3);
      expect(pids[0]).toBe(pids[1]);
      expect(pids[2]).toBe(pids[3]);
    }
    expect(exits.slice(0, 2)).toEqual([155, 155]);
    {
      await using pool = pythonPool({ processes: 1, maxMemoryPerChild: 150 * 1024 });
      const first = await pool.apply(task('pid'), []);
      expect(await pool.apply(task('pid'), [])).toBe(first);
      expect(await pool.apply(task('hog'), [300])).toBe(300);
      expect(await pool.apply(task('pid'), [])).not.toBe(first);
    }
  });

  test('terminateJob, an AbortSignal (soft, then hard) and synack work on Python workers as on Node ones', async () => {
    await using pool = pythonPool({ processes: 1, synack: true });
    const first = (await pool.apply(task('pid'), [])) as number;
    // terminateJob: SIGTERM to the worker running the job; it fails with Terminated(15)
    const r = pool.applyAsync(pyfunc('time.sleep'), [30]);
    expect(await until(() => r.accepted())).toBe(true);
    pool.terminateJob(r.workerPids()[0]!);
    // billiard's Worker turns SIGTERM into an exit (code 15, so Terminated(-15)); a Node worker dies of it (Terminated(15))
    expect(await r.get(20).catch((e: unknown) => e)).toEqual(new Terminated(-15));
    const second = (await pool.apply(task('pid'), [])) as number;
    expect(second).not.toBe(first);
    // an abort while running: SIGUSR1 first; the task cleans up and the worker is kept
    const running = new AbortController();
    const r2 = pool.applyAsync(task('sleep_and_clean_up'), [30], { signal: running.signal });
    expect(await until(() => r2.accepted())).toBe(true);
    running.abort(new Error('not needed any more'));
    await expect(r2.get(10)).rejects.toThrow('not needed any more');
    expect(await pool.apply(task('pid'), [])).toBe(second);
  });

  test('the initializer is a Python function, run with initargs in every worker before its first task', async () => {
    await using pool = pythonPool({ initializer: task('init'), initargs: ['ready'] });
    expect(await pool.map(task('initialized'), [0, 1, 2, 3], { chunksize: 1 })).toEqual(['ready', 'ready', 'ready', 'ready']);
  });

  test('routing is explicit: a Node function to a Python pool, and a Python function to a Node pool, are refused when submitted', async () => {
    await using py = pythonPool({ processes: 1 });
    expect(() => py.applyAsync(square, [3])).toThrow(/a Python pool runs Python functions/);
    await expect(py.map(square, [1, 2])).rejects.toThrow(/a Python pool runs Python functions/);
    expect(() => new Pool({ processes: 1, python: true, initializer: square })).toThrow(/must be a Python function/);
    await using node = new Pool({ processes: 1 });
    expect(() => node.applyAsync(pyfunc('operator.mul'), [6, 7])).toThrow(/operator\.mul is a Python function: run it in a Python pool/);
    expect(await node.apply(square, [3])).toBe(9);
    expect(await py.apply(pyfunc('operator.mul'), [6, 7])).toBe(42);
  });

  test("faults: a task whose module does not import, or whose function is missing, fails that job typed (ACK first, the worker lives); a result pickle cannot write is MaybeEncodingError", async () => {
    await using pool = pythonPool({ processes: 1 });
    let downs = 0;
    pool.on('processDown', () => void downs++);
    const first = await pool.apply(task('pid'));
    const missing = (await pool.apply(pyfunc('no_such_module.f'), [1]).catch((e: unknown) => e)) as PythonException;
    expect(missing).toBeInstanceOf(PythonException);
    expect(missing.pyName).toBe('ModuleNotFoundError');
    expect(missing.message).toMatch(/No module named 'no_such_module'/);
    expect(missing.cause).toBeInstanceOf(RemoteTraceback);
    const noAttr = (await pool.apply(task('no_such_function')).catch((e: unknown) => e)) as PythonException;
    expect(noAttr.pyName).toBe('AttributeError');
    expect(noAttr.message).toMatch(/no_such_function/);
    const unpicklable = await pool.apply(task('unpicklable')).catch((e: unknown) => e);
    expect(unpicklable).toBeInstanceOf(MaybeEncodingError);
    expect((unpicklable as MaybeEncodingError).exc).toMatch(/Can't pickle local object/);
    // the same worker served all of it
    expect(await pool.apply(task('pid'))).toBe(first);
    expect(downs).toBe(0);
  });

  test('Python missing, or without billiard, is a clear PythonNotFoundError at new Pool', () => {
    expect(() => new Pool({ processes: 1, python: { executable: '/nonexistent/python3' } })).toThrow(PythonNotFoundError);
    expect(() => new Pool({ processes: 1, python: { executable: '/nonexistent/python3' } })).toThrow(/cannot be run.*apt-get install -y python3-billiard/);
    // python3.12 has the standard library only
    expect(() => new Pool({ processes: 1, python: { executable: pythonFor('3.12') } })).toThrow(/cannot import billiard \(ModuleNotFoundError: No module named 'billiard'\).*apt-get install/);
  });

  test('examples/pool-python.ts: Python functions from Node, a typed Python error', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/pool-python.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(
      'operator.mul(6, 7) = 42\nscore = 80\nsquares = [ 1, 4, 9, 16, 25 ]\n' +
        "a Python error came back, typed (ValueError): ValueError: invalid literal for int() with base 10: 'not a number'\n",
    );
    expect(r.status).toBe(0);
  });
});
