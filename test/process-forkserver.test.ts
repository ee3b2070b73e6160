/**
 * The 'forkserver' start method: children are handed their targets by Node
 * processes started ahead of time, which have imported the preload modules.
 * The same Process semantics as 'spawn' (exit codes, Connections in the
 * arguments, start-up errors), no descriptor left behind in the parent.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { EOFError, forkserver, getAllStartMethods, getContext, getStartMethod, Pipe, ProcessStartupError, setForkserverPreload, setStartMethod, type Process } from '../src/index.js';
import { forkServer } from '../src/process/forkserver.js';
import { never } from './fixtures/crash-on-import.js';
import { unreachable } from './fixtures/hang-on-import.js';
import { fdFlags, markerAndPid, O_NONBLOCK, queueFlags, useAll } from './fixtures/forkserver-targets.js';
import { boom, exitWith, greet, preloadReport, relay, report, sleepForever } from './fixtures/targets.js';

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

/**
 * Blocks this thread (the event loop too: no exit of a child is reported
 * meanwhile) until `pid` has died and been reaped (by the launcher thread).
 * A zombie is not enough: its leader thread shows 'Z' while the others may
 * still be exiting, holding its descriptors open.
 */
function blockUntilReaped(pid: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const t0 = Date.now();
  while (existsSync(`/proc/${pid}`)) {
    if (Date.now() - t0 > 10_000) throw new Error(`process ${pid} not reaped`);
    Atomics.wait(cell, 0, 0, 5);
  }
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
    // A fixed pool: an adaptive one would grow for this burst, and hold more descriptors at the end by design.
    forkserver.setPoolSize(forkServer().size);
    await forkserver.ensureRunning();
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
    forkserver.setPoolSize(null);
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

describe('what a warm child is handed', () => {
  test('a warm child gets a Queue, a Value, an Array, a Lock and a Connection, and uses them all', async () => {
    await forkserver.ensureRunning();
    const waiting = forkServer().pids;
    const q = ctx.Queue();
    const v = ctx.Value('i', 0);
    const arr = ctx.Array('d', [1, 1, 1]);
    const lock = ctx.Lock();
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: useAll, args: [q, v, arr, lock, b] });
    p.start();
    b.close();
    const [hello, pid] = (await q.get({ timeout: 30 })) as [string, number];
    expect(hello).toBe('hello');
    expect(waiting).toContain(pid);
    expect(p.pid).toBe(pid);
    // The child's writes to shared memory, seen here.
    expect(v.value).toBe(42);
    expect(arr.toArray()).toEqual([1, 2.5, 1]);
    // The child holds the Lock until told to release it.
    expect(await lock.acquire({ block: false })).toBe(false);
    await a.send('release');
    expect(await lock.acquire({ timeout: 30 })).toBe(true);
    lock.release();
    await q.put('from the parent');
    expect(await a.recv()).toEqual(['got', 'from the parent']);
    await p.join();
    expect(p.exitcode).toBe(0);
    expect(p.startupError).toBeNull();
    a.close();
    q.close();
  });

  test("a queue's pipe stays blocking in a warm child (and so in the parent, which shares its open files)", async () => {
    await forkserver.ensureRunning();
    const waiting = forkServer().pids;
    const q = ctx.Queue();
    const ends = [q.reader.fileno(), q.writer.fileno()];
    expect(ends.map((fd) => fdFlags(fd) & O_NONBLOCK)).toEqual([0, 0]);
    await q.put('ping');
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: queueFlags, args: [q, b] });
    p.start();
    b.close();
    const [item, readerFlags, writerFlags, pid] = (await a.recv()) as [string, number, number, number];
    expect(item).toBe('ping');
    expect(waiting).toContain(pid);
    expect(await q.get({ timeout: 30 })).toBe('pong');
    await p.join();
    expect(p.exitcode).toBe(0);
    expect([readerFlags & O_NONBLOCK, writerFlags & O_NONBLOCK]).toEqual([0, 0]);
    expect(ends.map((fd) => fdFlags(fd) & O_NONBLOCK)).toEqual([0, 0]);
    a.close();
    q.close();
  });

  test.each([
    ['close', /the descriptor channel holds 0 bytes where the header takes 4/],
    ['drop-descriptor', /the parent announced 3 descriptors, a message carried 2 where 3 were due/],
    ['wrong-numbers', /the bootstrap data names descriptor \d+, which the parent did not send \(it sent 100\d, 100\d, 100\d\)/],
  ] as const)('a descriptor channel that breaks (%s): the warm child exits 1 and its Process reports a failed start', async (fault, message) => {
    await forkserver.ensureRunning();
    const waiting = forkServer().pids;
    const q = ctx.Queue();
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: report, args: [b, q] });
    forkServer().channelFault = fault;
    try {
      p.start();
    } finally {
      forkServer().channelFault = null;
    }
    expect(waiting).toContain(p.pid);
    b.close();
    await p.join();
    expect(p.exitcode).toBe(1);
    expect(p.startupError).toBeInstanceOf(ProcessStartupError);
    expect(p.startupError!.message).toMatch(message);
    // The target never ran: the other end of the Pipe is closed everywhere, unused.
    await expect(a.poll(10)).resolves.toBe(true);
    await expect(a.recv()).rejects.toThrow(EOFError);
    a.close();
    q.close();
  });

  test('a warm child that died while it waited (its exit not yet reported): the start goes to the next one', async () => {
    await forkserver.ensureRunning();
    const waiting = forkServer().pids;
    expect(waiting.length).toBeGreaterThan(1);
    const victim = waiting[0]!;
    process.kill(victim, 'SIGKILL');
    // The event loop does not turn before start(): the pool still lists the dead child.
    blockUntilReaped(victim);
    expect(forkServer().pids).toContain(victim);
    const q = ctx.Queue();
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: markerAndPid, args: [b, q] });
    p.start();
    b.close();
    const [, pid] = (await a.recv()) as [unknown, number];
    await p.join();
    expect(pid).not.toBe(victim);
    expect(waiting).toContain(pid);
    expect(p.exitcode).toBe(0);
    expect(p.startupError).toBeNull();
    a.close();
    q.close();
  });

  test('a child still warming that dies before it took its start: the start goes to the next one', async () => {
    setForkserverPreload([new URL('./fixtures/slow-preload.ts', import.meta.url).href, PRELOAD]);
    try {
      forkServer().fill();
      // Wait for their pids, not for them to be warm (each takes 1.5 s importing the slow module).
      while (forkServer().pids.length < forkServer().size) await new Promise((r) => setTimeout(r, 10));
      const waiting = forkServer().pids;
      expect(waiting.length).toBeGreaterThan(1);
      const q = ctx.Queue();
      const [a, b] = Pipe();
      const p = new ctx.Process({ target: markerAndPid, args: [b, q] });
      p.start();
      b.close();
      // The start waits for the first of them: it dies first.
      expect(forkServer().pids).not.toContain(waiting[0]);
      process.kill(waiting[0]!, 'SIGKILL');
      const [marker, pid] = (await a.recv()) as [[number, number] | null, number];
      await p.join();
      expect(pid).not.toBe(waiting[0]);
      expect(waiting).toContain(pid);
      expect(marker![1]).toBe(pid);
      expect(p.exitcode).toBe(0);
      expect(p.startupError).toBeNull();
      a.close();
      q.close();
    } finally {
      setForkserverPreload([PRELOAD]);
      await forkserver.ensureRunning();
    }
  });
});

describe('preload modules', () => {
  test('a cold child (no warm one usable: another environment) imports the preload modules too', async () => {
    setForkserverPreload([PRELOAD]);
    await forkserver.ensureRunning();
    const waiting = forkServer().pids;
    const [a, b] = Pipe();
    const p = new ctx.Process({ target: preloadReport, args: [b], env: { ...process.env } });
    p.start();
    b.close();
    const [marker, method, pid] = (await a.recv()) as [[number, number] | null, string, number];
    await p.join();
    expect(waiting).not.toContain(pid);
    expect(marker).not.toBeNull();
    expect(marker![1]).toBe(pid);
    expect(method).toBe('forkserver');
    a.close();
  });

  test('a preload module that cannot be imported is skipped with a warning, in warm and cold children, as Python skips an ImportError', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/forkserver-preload.ts'], { cwd: new URL('..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(stderr).toMatch(/the fork server preload module \S*no-such-preload-module\.ts could not be imported, and is skipped: /);
    expect(code).toBe(0);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({
      waiting: 1,
      warm: { preloaded: true, warm: true, exitcode: 0 },
      cold: { preloaded: true, warm: false, exitcode: 0 },
    });
  });
});

describe('the refill', () => {
  test('the pool refills once the starts it served have reported, not while their children start', async () => {
    const { afterSlowImport } = await import('./fixtures/slow-target.js');
    forkserver.setPoolSize(1);
    forkServer().refillSeconds = 30;
    try {
      await forkserver.ensureRunning();
      const [first] = forkServer().pids;
      expect(first).toBeDefined();
      const p = new ctx.Process({ target: afterSlowImport });
      p.start(); // takes the warm child, which reports once the target module has imported (1.5 s)
      await new Promise((r) => setTimeout(r, 600));
      expect(forkServer().pids).toEqual([]);
      await p.join(60);
      expect(p.exitcode).toBe(0);
      const deadline = Date.now() + 15_000;
      while (forkServer().pids.length === 0) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(forkServer().pids).not.toContain(first);
    } finally {
      forkServer().refillSeconds = 0.25;
      forkserver.setPoolSize(null);
    }
  });
});

describe('the adaptive pool', () => {
  /** Starts `n` children at once (exitWith(0)); resolves with their pids once all have exited. */
  async function burst(n: number): Promise<number[]> {
    const procs: Process[] = [];
    for (let i = 0; i < n; i++) {
      const p = new ctx.Process({ target: exitWith, args: [0] });
      p.start();
      procs.push(p);
    }
    for (const p of procs) await p.join(60);
    for (const p of procs) expect(p.exitcode).toBe(0);
    return procs.map((p) => p.pid!);
  }

  /**
   * Runs `body` once every warm child of an adaptive pool is taken by a
   * child that sleeps (so a start finds none ready, as in a burst), then a
   * burst of base + 3, and checks that the pool grew and filled; kills the
   * sleepers and whatever `body` added to `held`.
   */
  async function afterEmptyPool(body: (held: Process[]) => Promise<void>): Promise<void> {
    forkserver.setPoolSize(null);
    const held: Process[] = [];
    try {
      await forkserver.ensureRunning();
      const base = forkServer().size;
      for (let i = 0; i < base; i++) {
        const p = new ctx.Process({ target: sleepForever });
        p.start();
        held.push(p);
      }
      await body(held);
      await burst(Math.min(base + 3, 8));
      await forkserver.ensureRunning();
      expect(forkServer().size).toBeGreaterThan(base);
      expect(forkServer().pids.length).toBe(forkServer().size);
    } finally {
      for (const p of held) p.kill();
      for (const p of held) await p.join(30);
      forkserver.setPoolSize(null);
    }
  }

  test('a burst that empties the pool grows it by its cold starts; the next burst of that size is served warm; idle, it shrinks back', async () => {
    forkserver.setPoolSize(null);
    // Long enough that a loaded machine's slow cold starts and growth do not reach it before the second burst.
    forkServer().idleSeconds = 10;
    try {
      await forkserver.ensureRunning();
      const base = forkServer().size;
      expect(forkServer().adaptive).toBe(true);
      const n = Math.min(base + 3, 8);
      await burst(n);
      expect(forkServer().size).toBe(n);
      await forkserver.ensureRunning();
      const warm = new Set(forkServer().pids);
      expect(warm.size).toBe(n);
      const second = await burst(n);
      for (const pid of second) expect(warm.has(pid)).toBe(true);
      // No start for idleSeconds: back to the base size, the extra children retired.
      const deadline = Date.now() + 30_000;
      while (forkServer().size !== base || forkServer().pids.length > base) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      forkServer().idleSeconds = 30;
      forkserver.setPoolSize(null);
    }
  }, 120_000);

  test('ensureRunning() during a burst resolves once the pool the burst grew is warm: it waits for the cold starts to report, then for the growth', async () => {
    forkserver.setPoolSize(null);
    const procs: Process[] = [];
    try {
      await forkserver.ensureRunning();
      const base = forkServer().size;
      const n = Math.min(base + 3, 8);
      for (let i = 0; i < n; i++) {
        const p = new ctx.Process({ target: exitWith, args: [0] });
        p.start();
        procs.push(p);
      }
      // The last 3 starts found no warm child: cold ones, which grow the pool once they report.
      await forkserver.ensureRunning();
      expect(forkServer().size).toBe(n);
      expect(forkServer().pids.length).toBe(n);
    } finally {
      for (const p of procs) await p.join(60);
      forkserver.setPoolSize(null);
    }
  }, 120_000);

  test('a start whose arguments cannot be pickled does not hold back the growth of later bursts', async () => {
    await afterEmptyPool(async () => {
      let refused: unknown = null;
      try {
        await new ctx.Process({ target: exitWith, args: [Symbol('not picklable') as never] }).start();
      } catch (e) {
        refused = e;
      }
      expect(refused).toBeInstanceOf(Error);
    });
  }, 120_000);

  test('a cold start that never reports holds back the growth for coldReportSeconds only', async () => {
    forkServer().coldReportSeconds = 1;
    try {
      await afterEmptyPool(async (held) => {
        // No warm child ready: a start that counts as cold, whose child hangs importing its target.
        const hung = new ctx.Process({ target: unreachable });
        hung.start();
        held.push(hung);
      });
    } finally {
      forkServer().coldReportSeconds = 10;
    }
  }, 120_000);

  test('a fixed size does not grow', async () => {
    forkserver.setPoolSize(2);
    try {
      await forkserver.ensureRunning();
      await burst(5);
      expect(forkServer().size).toBe(2);
      expect(forkServer().adaptive).toBe(false);
      expect(() => forkserver.setPoolSize(1.5)).toThrow(RangeError);
    } finally {
      forkserver.setPoolSize(null);
    }
  }, 120_000);
});

describe('the end of the program', () => {
  test('a program that exits while the fork server warms children: they end quietly (no ERR_IPC_CHANNEL_CLOSED on its stderr)', () => {
    // spawnSync reads stderr until its last holder, the last warm child, has closed it.
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/forkserver-quick-exit.ts'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout.trim()).toBe('done');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
