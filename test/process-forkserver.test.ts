/**
 * The 'forkserver' start method: children are handed their targets by Node
 * processes started ahead of time, which have imported the preload modules.
 * The same Process semantics as 'spawn' (exit codes, Connections in the
 * arguments, start-up errors), no descriptor left behind in the parent.
 */
import { readdirSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { forkserver, getAllStartMethods, getContext, getStartMethod, Pipe, ProcessStartupError, setForkserverPreload, setStartMethod, type Process } from '../src/index.js';
import { forkServer } from '../src/process/forkserver.js';
import { never } from './fixtures/crash-on-import.js';
import { boom, exitWith, greet, preloadReport, relay, sleepForever } from './fixtures/targets.js';

const PRELOAD = new URL('./fixtures/preload-marker.ts', import.meta.url).href;
const ctx = getContext('forkserver');

beforeAll(async () => {
  setForkserverPreload([PRELOAD]);
  await forkserver.ensureRunning();
});

afterAll(() => {
  forkserver.setPoolSize(0);
});

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

describe('start methods', () => {
  test("'spawn' and 'forkserver' exist, 'spawn' is the default; 'fork' is refused with the reason", () => {
    expect(getAllStartMethods()).toEqual(['spawn', 'forkserver']);
    expect(getStartMethod()).toBe('spawn');
    expect(ctx.startMethod).toBe('forkserver');
    expect(ctx.getStartMethod()).toBe('forkserver');
    expect(new ctx.Process({ target: boom }).name).toMatch(/^ForkServerProcess-\d+$/);
    expect(new (getContext('spawn').Process)({ target: boom }).name).toMatch(/^SpawnProcess-\d+$/);
    expect(() => getContext('fork')).toThrow(/cannot fork/);
    expect(() => setForkserverPreload('x' as never)).toThrow(TypeError);
    expect(forkserver.setForkserverPreload).toBe(setForkserverPreload);
    expect(() => forkserver.setPoolSize(-1)).toThrow(RangeError);
  });
});

describe('forkserver children', () => {
  test('a child was started before start() and had imported the preload module; its default start method is forkserver', async () => {
    const waiting = forkServer().pids;
    expect(waiting.length).toBeGreaterThan(0);
    const before = Date.now();
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: preloadReport, args: [b] });
    p.start();
    b.close();
    const [marker, method, pid] = (await a.recv()) as [[number, number] | null, string, number];
    await p.join();
    expect(p.exitcode).toBe(0);
    expect(waiting).toContain(pid);
    expect(p.pid).toBe(pid);
    expect(marker).not.toBeNull();
    expect(marker![1]).toBe(pid);
    expect(marker![0]).toBeLessThanOrEqual(before);
    expect(method).toBe('forkserver');
    a.close();
  });

  test('exit codes as with spawn: 0, 1 for a throw, n for process.exit(n), -15 and -9 for signals', async () => {
    const procs = [new ctx.Process({ target: greet, args: [Pipe()[1], 'x'] }), new ctx.Process({ target: boom }), new ctx.Process({ target: exitWith, args: [5] })];
    for (const p of procs) p.start();
    for (const p of procs) await p.join();
    expect(procs.map((p) => p.exitcode)).toEqual([0, 1, 5]);
    for (const [how, code] of [['terminate', -15], ['kill', -9]] as const) {
      const [a, b] = Pipe();
      const p = new ctx.Process({ target: sleepForever, args: [b] });
      p.start();
      expect(await a.recv()).toBe('sleeping');
      p[how]();
      await p.join();
      expect(p.exitcode).toBe(code);
    }
  });

  test('Connections in the arguments reach the child even when the parent closes its copies at once; no descriptor is left behind', async () => {
    const baseline = openFds();
    const procs: Process[] = [];
    const outs = [];
    for (let i = 0; i < 6; i++) {
      const [inRead, inWrite] = Pipe({ duplex: false });
      const [outA, outB] = Pipe();
      const p = new ctx.Process({ target: relay, args: [inRead, outB] });
      p.start();
      inRead.close();
      outB.close();
      await inWrite.send({ __proto__: null, i, big: 'x'.repeat(100_000 * (i % 2)) });
      inWrite.close();
      procs.push(p);
      outs.push(outA);
    }
    const got = (await Promise.all(outs.map((c) => c.recv()))) as Array<{ i: number; big: string }>;
    for (const p of procs) await p.join();
    expect(got.map((m) => m.i)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(got.map((m) => m.big.length)).toEqual([0, 100_000, 0, 100_000, 0, 100_000]);
    expect(procs.map((p) => p.exitcode)).toEqual([0, 0, 0, 0, 0, 0]);
    for (const c of outs) c.close();
    for (const p of procs) p.close();
    await forkserver.ensureRunning();
    // The pool is full again, as it was at the baseline: the same number of IPC descriptors.
    expect(openFds()).toBe(baseline);
  });

  test('a target module that fails to import: join() resolves, startupError is a ProcessStartupError, and the pool is refilled', async () => {
    const p = new ctx.Process({ target: never });
    p.start();
    await p.join();
    expect(p.startupError).toBeInstanceOf(ProcessStartupError);
    expect(p.startupError!.message).toContain('cannot be imported in a child');
    expect(p.exitcode).toBe(1);
    await forkserver.ensureRunning();
    expect(forkServer().pids.length).toBe(forkServer().size);
  });

  test("with setStartMethod('forkserver'), a plain Process uses the fork server", async () => {
    setStartMethod('forkserver', { force: true });
    try {
      const { Process } = await import('../src/index.js');
      const waiting = forkServer().pids;
      const [a, b] = Pipe();
      const p = new Process({ target: preloadReport, args: [b] });
      p.start();
      b.close();
      const [, method, pid] = (await a.recv()) as [unknown, string, number];
      await p.join();
      expect(p.name).toMatch(/^Process-\d+$/);
      expect(waiting).toContain(pid);
      expect(method).toBe('forkserver');
      a.close();
    } finally {
      setStartMethod('spawn', { force: true });
    }
  });

  test('changing the preload list replaces the waiting children', async () => {
    const old = forkServer().pids;
    setForkserverPreload([]);
    await forkserver.ensureRunning();
    expect(forkServer().pids.some((pid) => old.includes(pid))).toBe(false);
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: preloadReport, args: [b] });
    p.start();
    b.close();
    const [marker] = (await a.recv()) as [unknown];
    await p.join();
    expect(marker).toBeNull();
    a.close();
  });
});
