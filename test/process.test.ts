/**
 * Process: start, join, exit codes as CPython gives them, names, the child's
 * view of itself, subclasses, and the errors of misuse and failed start-ups.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { describe, expect, test } from 'vitest';

import {
  activeChildren,
  allowConnectionPickling,
  AssertionError,
  AuthenticationError,
  AuthenticationString,
  BufferTooShort,
  cpuCount,
  dumps,
  forkserver,
  ForkServerProcess,
  ProcessError,
  RuntimeError,
  TimeoutError,
  forkingEnable,
  forkingIsEnabled,
  freezeSupport,
  currentProcess,
  getAllStartMethods,
  getContext,
  getStartMethod,
  Pipe,
  PicklingError,
  pyfunc,
  PythonNotFoundError,
  type Connection,
  Process,
  ProcessStartupError,
  type ProcessTarget,
  registerModule,
  setExecutable,
  setStartMethod,
  ValueError,
  wait,
} from '../src/index.js';
import { sleep } from '../src/connection/timers.js';
import { whileSpawning } from '../src/process/authkey.js';
import { launcherUp } from '../src/process/launcher.js';
import { locateFunction } from '../src/process/locate.js';
import { pythonFor } from './helpers/peers.js';
import { never } from './fixtures/crash-on-import.js';
import { exposeHidden } from './fixtures/unexported.js';
import { boom, describeKey, exitWith, greet, report, sendAuthkey, sendEnv, sleepForever, startGrandchild, whoami, Worker } from './fixtures/targets.js';

/** Starts `target(conn, ...args)` in a child, returns the first message it sends, and checks it exits 0. */
async function firstMessage(target: ProcessTarget, args: unknown[], ctx = getContext('spawn')): Promise<unknown> {
  const [a, b] = Pipe();
  const p = new ctx.Process({ target, args: [b, ...args] });
  p.start();
  b.close();
  const message = await a.recv();
  await p.join();
  expect(p.exitcode).toBe(0);
  a.close();
  return message;
}

describe('starting, joining and exit codes', () => {
  test('three children each send a greeting over their own Pipe', async () => {
    const procs: Process[] = [];
    const ends = [];
    for (const who of ['a', 'b', 'c']) {
      const [parent, child] = Pipe();
      const p = new Process({ target: greet, args: [child, who] });
      p.start();
      child.close();
      procs.push(p);
      ends.push(parent);
    }
    const got = await Promise.all(ends.map((c) => c.recv()));
    for (const p of procs) await p.join();
    expect(got.map((g) => (g as unknown[])[0])).toEqual(['hello a', 'hello b', 'hello c']);
    expect(got.map((g) => (g as unknown[])[1])).toEqual(procs.map((p) => p.name));
    expect(got.map((g) => (g as unknown[])[2])).toEqual(procs.map((p) => p.pid));
    expect(procs.map((p) => p.exitcode)).toEqual([0, 0, 0]);
    for (const c of ends) c.close();
  });

  test('exit codes: returns 0, throws 1 with the traceback on stderr, process.exit(n) n, SIGTERM -15, SIGKILL -9', async () => {
    const ok = new Process({ target: greet, args: [Pipe()[1], 'x'] });
    const thrown = new Process({ target: boom });
    const exited = new Process({ target: exitWith, args: [7] });
    for (const p of [ok, thrown, exited]) p.start();
    for (const p of [ok, thrown, exited]) await p.join();
    expect([ok.exitcode, thrown.exitcode, exited.exitcode]).toEqual([0, 1, 7]);

    for (const [sig, code] of [['terminate', -15], ['kill', -9]] as const) {
      const [a, b] = Pipe();
      const p = new Process({ target: sleepForever, args: [b] });
      p.start();
      expect(await a.recv()).toBe('sleeping');
      expect(p.isAlive()).toBe(true);
      p[sig]();
      await p.join();
      expect(p.exitcode).toBe(code);
      expect(p.isAlive()).toBe(false);
      a.close();
    }
  });

  test('the traceback of a thrown error goes to stderr as "Process <name>:"', () => {
    const script = `
      import { Process } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href.replace('.js', '.ts'))};
      import { boom } from ${JSON.stringify(new URL('./fixtures/targets.ts', import.meta.url).href)};
      const p = new Process({ target: boom, name: 'Boomer' });
      p.start();
      await p.join();
      console.log('exitcode', p.exitcode);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname });
    expect(r.stdout.trim()).toBe('exitcode 1');
    expect(r.stderr).toContain('Process Boomer:\nError: boom from the child');
  });

  test('join(timeout) returns on time with the child still alive', async () => {
    const [a, b] = Pipe();
    const p = new Process({ target: sleepForever, args: [b] });
    p.start();
    await a.recv();
    const t0 = Date.now();
    await p.join(0.2);
    expect(Date.now() - t0).toBeLessThan(5000); // a hang guard, not a timing assertion
    expect(p.isAlive()).toBe(true);
    expect(p.exitcode).toBeNull();
    expect(activeChildren()).toContain(p);
    p.kill();
    await p.join();
    expect(activeChildren()).not.toContain(p);
    a.close();
  });

  test('wait() on sentinels', async () => {
    const p = new Process({ target: exitWith, args: [0] });
    p.start();
    expect(await wait([p.sentinel], 30)).toEqual([p.sentinel]);
    await p.join();
  });
});

describe('locating a target without the debugger domain', () => {
  test("a plain JavaScript module's functions are found from V8's coverage and the module's file: no Debugger.enable (30 ms in a fresh process)", () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/locate-fast.ts'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(out.alpha).toEqual(['locate-targets.mjs', 'alpha']);
    expect(out.gamma).toEqual(['locate-targets.mjs', 'delta']);
    expect(out.beta).toBe('TARGET_NOT_IMPORTABLE');
    expect(out.methods).not.toContain('Debugger.enable');
    expect(out.methods).toContain('Profiler.getBestEffortCoverage');
  });
});

describe('start() does not block the event loop', () => {
  /**
   * Counts the calls of node:child_process made on this thread while `body`
   * runs: spawning (a fork, which holds the thread for milliseconds) belongs
   * to the launcher thread.
   */
  async function childProcessCalls(body: () => Promise<void>): Promise<string[]> {
    const cp = process.getBuiltinModule('node:child_process') as unknown as Record<string, (...a: unknown[]) => unknown>;
    const names = ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork'];
    const saved = names.map((n) => [n, cp[n]!] as const);
    const calls: string[] = [];
    for (const [n, f] of saved) {
      cp[n] = function (this: unknown, ...a: unknown[]) {
        calls.push(n);
        return f.apply(this, a);
      };
    }
    try {
      await body();
    } finally {
      for (const [n, f] of saved) cp[n] = f;
    }
    return calls;
  }

  test.each(['spawn', 'forkserver'] as const)('under %s, once the launcher thread is up no child_process call happens on the main thread, and the pid comes with spawned', async (method) => {
    const ctx = getContext(method);
    await launcherUp();
    if (method === 'forkserver') await forkserver.ensureRunning();
    const calls = await childProcessCalls(async () => {
      const procs: Process[] = [];
      const ends: Connection[] = [];
      for (const who of ['a', 'b', 'c']) {
        const [a, b] = Pipe();
        const p = new ctx.Process({ target: greet, args: [b, who] });
        p.start();
        b.close();
        expect(p.isAlive()).toBe(true);
        procs.push(p);
        ends.push(a);
      }
      const got = (await Promise.all(ends.map((c) => c.recv()))) as Array<[string, string, number]>;
      for (const p of procs) await p.join();
      expect(got.map((g) => g[2])).toEqual(procs.map((p) => p.pid));
      expect(await Promise.all(procs.map((p) => p.spawned))).toEqual(procs.map((p) => p.pid));
      expect(procs.map((p) => p.exitcode)).toEqual([0, 0, 0]);
      for (const c of ends) c.close();
      // The fork server's replacements are spawned meanwhile.
      if (method === 'forkserver') await forkserver.ensureRunning();
    });
    expect(calls).toEqual([]);
  });

  test('before the launcher thread is up, a turn spawns at most 4 children on the main thread (after start() returned) and the thread the rest; a referenced child keeps the process alive', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/launcher-cold.ts'], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({
      duringStart: 0,
      firstTurn: 4,
      exits: [0, 0, 0, 0, 0, 0],
      pids: 6,
      later: 0,
      laterExit: 7,
    });
    // Two children alone, before any thread: the process still waits for them.
    const here = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/launcher-cold.ts', 'here'], { encoding: 'utf8', timeout: 60_000 });
    expect(here.status, here.stderr).toBe(0);
    expect(JSON.parse(here.stdout.trim().split('\n').pop()!)).toEqual({ exits: [0, 3], calls: 2 });
  });

  test('a Python target whose interpreter is not known yet: start() returns at once and the child starts once it is found', async () => {
    const billiardPython = pythonFor('3.11');
    const saved = process.env.BILLIARD_PYTHON;
    // Another spelling of the same interpreter: a question findPython has not answered yet.
    process.env.BILLIARD_PYTHON = billiardPython.replace(/\/([^/]+)$/, '/./$1');
    try {
      const [a, b] = Pipe();
      let p!: Process;
      const calls = await childProcessCalls(async () => {
        p = new Process({ target: pyfunc('py_targets.whoami'), args: [b], pythonPath: [fileURLToPath(new URL('./fixtures/', import.meta.url))], name: 'PyLater' });
        p.start();
        b.close();
        expect(p.isAlive()).toBe(true);
        const [name] = (await a.recv()) as [string];
        expect(name).toBe('PyLater');
        await p.join();
      });
      expect(calls).toEqual([]);
      expect(p.exitcode).toBe(0);
      a.close();
    } finally {
      if (saved === undefined) delete process.env.BILLIARD_PYTHON;
      else process.env.BILLIARD_PYTHON = saved;
    }
  });

  test('a Python target with no interpreter to be found: start() returns, join() resolves, exitcode 1 and startupError name the cause', async () => {
    const saved = process.env.BILLIARD_PYTHON;
    process.env.BILLIARD_PYTHON = '/nonexistent/python3';
    try {
      const p = new Process({ target: pyfunc('py_targets.boom') });
      p.start();
      await p.join();
      expect(p.exitcode).toBe(1);
      expect(p.startupError).toBeInstanceOf(ProcessStartupError);
      expect(p.startupError!.cause).toBeInstanceOf(PythonNotFoundError);
      expect(p.startupError!.message).toContain('BILLIARD_PYTHON=/nonexistent/python3');
    } finally {
      if (saved === undefined) delete process.env.BILLIARD_PYTHON;
      else process.env.BILLIARD_PYTHON = saved;
    }
  });

  test('terminate() right after start(), before the spawn was reported: the child ends with -15', async () => {
    const p = new Process({ target: sleepForever });
    p.start();
    p.terminate();
    await p.join();
    expect(p.exitcode).toBe(-15);
    expect(p.startupError).toBeNull();
  });
});

describe('join, exited and await using', () => {
  test("join(timeout) past setTimeout's cap (3e6 s), Infinity and null wait, with no TimeoutOverflowWarning; an AbortSignal gives up the wait", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const [a, b] = Pipe();
    const p = new Process({ target: sleepForever, args: [b] });
    p.start();
    b.close();
    try {
      expect(await a.recv()).toBe('sleeping');
      for (const timeout of [3e6, Infinity, null]) {
        const outcome = await Promise.race([p.join(timeout).then(() => 'returned'), sleep(0.5).then(() => 'still waiting')]);
        expect(outcome, `join(${timeout})`).toBe('still waiting');
      }
      const ac = new AbortController();
      const joining = p.join(3e6, { signal: ac.signal });
      ac.abort();
      await expect(joining).rejects.toThrow(/abort/i);
      expect(p.isAlive()).toBe(true);
      await expect(p.join('1' as never)).rejects.toThrow(TypeError);
    } finally {
      p.kill();
      await p.join();
      a.close();
      await sleep(0);
      process.off('warning', onWarning);
    }
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  });

  test('reading exited or spawned before start() creates no rejected promise; both settle once the child has run', async () => {
    const rejections: unknown[] = [];
    const onRejection = (r: unknown): void => void rejections.push(r);
    process.on('unhandledRejection', onRejection);
    try {
      const p = new Process({ target: exitWith, args: [3] });
      const exited = p.exited;
      const spawned = p.spawned;
      void new Process({ target: exitWith, args: [0] }).exited; // never started
      await sleep(0.1);
      p.start();
      expect(await exited).toBe(3);
      expect(await spawned).toBe(p.pid);
      expect(p.exitcode).toBe(3);
    } finally {
      await sleep(0.1);
      process.off('unhandledRejection', onRejection);
    }
    expect(rejections).toEqual([]);
  });

  test('await using: the end of the scope terminates a child still running, waits for it and closes the object', async () => {
    const [a, b] = Pipe();
    let p!: Process;
    {
      await using q = new Process({ target: sleepForever, args: [b] });
      p = q;
      q.start();
      b.close();
      expect(await a.recv()).toBe('sleeping');
    }
    expect(await p.exited).toBe(-15);
    expect(() => p.isAlive()).toThrow('process object is closed');
    {
      await using done = new Process({ target: exitWith, args: [0] });
      done.start();
      await done.join();
      p = done;
    }
    expect(await p.exited).toBe(0);
    expect(() => p.exitcode).toThrow(ValueError);
    a.close();
  });
});

describe('the authkey', () => {
  const MESSAGE = 'Pickling an AuthenticationString object is disallowed for security reasons';

  test('is an AuthenticationString: pickling it (dumps, Connection.send) is refused, as CPython refuses; a plain copy travels', async () => {
    const key = currentProcess().authkey;
    expect(key).toBeInstanceOf(AuthenticationString);
    expect(key).toBeInstanceOf(Uint8Array);
    expect(() => dumps(key)).toThrow(PicklingError);
    expect(() => dumps(key)).toThrow(MESSAGE);
    expect(() => dumps({ nested: [1, key] })).toThrow(MESSAGE);
    const [a, b] = Pipe();
    await expect(a.send(key)).rejects.toThrow(MESSAGE);
    await a.send(new Uint8Array(key));
    expect(Buffer.from((await b.recv()) as Uint8Array).equals(Buffer.from(key))).toBe(true);
    // Slices are plain bytes, as slicing a Python AuthenticationString gives bytes.
    expect(key.slice(0, 4)).not.toBeInstanceOf(AuthenticationString);
    const p = new Process({ target: exitWith, args: [0] });
    expect(p.authkey).toBeInstanceOf(AuthenticationString);
    p.authkey = new Uint8Array([1, 2, 3]);
    expect(p.authkey).toBeInstanceOf(AuthenticationString);
    expect(Array.from(p.authkey)).toEqual([1, 2, 3]);
    expect(() => (p.authkey = 'abc' as never)).toThrow(TypeError);
    a.close();
    b.close();
  });

  test("while a child is being spawned it pickles as billiard.process.AuthenticationString(bytes), byte for byte what billiard writes", () => {
    const key = new AuthenticationString(Uint8Array.from({ length: 32 }, (_, i) => i * 7));
    const script = [
      'import pickle, sys',
      'from billiard import context',
      'from billiard.process import AuthenticationString',
      'context.set_spawning_popen(object())',
      'sys.stdout.write(pickle.dumps(AuthenticationString(bytes.fromhex(sys.argv[1])), 4).hex())',
    ].join('\n');
    const r = spawnSync(pythonFor('3.11'), ['-c', script, Buffer.from(key).toString('hex')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(Buffer.from(whileSpawning(() => dumps(key))).toString('hex')).toBe(r.stdout);
  });

  test.each(['spawn', 'forkserver'] as const)("under %s the child gets the key (also as an argument) as an AuthenticationString, and its own send of the key is refused", async (method) => {
    const ctx = getContext(method);
    expect(await firstMessage(sendAuthkey, [], ctx)).toEqual(['refused', 'PicklingError', MESSAGE]);
    const [type, bytes] = (await firstMessage(describeKey, [currentProcess().authkey], ctx)) as [string, Uint8Array];
    expect(type).toBe('AuthenticationString');
    expect(Buffer.from(bytes).equals(Buffer.from(currentProcess().authkey))).toBe(true);
  });
});

describe('what the child knows', () => {
  test('its name, the parent authkey (an AuthenticationString), its identity and its parent', async () => {
    const [a, b] = Pipe();
    const p = new Process({ target: whoami, args: [b] });
    p.start();
    b.close();
    const me = (await a.recv()) as Record<string, unknown>;
    await p.join();
    expect(me.name).toBe(p.name);
    expect(p.name).toMatch(/^Process-\d+$/);
    expect(Buffer.from(me.authkey as Uint8Array).equals(Buffer.from(currentProcess().authkey))).toBe(true);
    expect(me.authkeyType).toBe('AuthenticationString');
    expect(currentProcess().authkey.length).toBe(32);
    expect(me.daemon).toBe(false);
    expect(me.parent).toBe(process.pid);
    a.close();
  });

  test('a grandchild is named Process-N:1', async () => {
    const [a, b] = Pipe();
    const p = new Process({ target: startGrandchild, args: [b] });
    p.start();
    const [, name] = (await a.recv()) as [string, string];
    await p.join();
    expect(name).toBe(`${p.name}:1`);
    a.close();
  });

  test('targets in .js (ESM) and .cjs modules, declared or assigned to exports', async () => {
    const cjs = createRequire(import.meta.url)('./fixtures/cjs-targets.cjs') as Record<string, (...a: never[]) => Promise<void>>;
    const js = (await import(new URL('./fixtures/js-targets.js', import.meta.url).href)) as Record<string, (...a: never[]) => Promise<void>>;
    const cases: Array<[(...a: never[]) => Promise<void>, unknown[], unknown]> = [
      [js.jsReport!, ['esm'], ['js', 'esm']],
      [cjs.cjsReport!, ['decl'], ['cjs', 'decl', 'function']],
      [cjs.cjsAssigned!, [], ['cjs', 'assigned']],
      [cjs.cjsHidden!, [], ['cjs', 'hidden']],
    ];
    for (const [target, args, want] of cases) expect(await firstMessage(target, args)).toEqual(want);
  });

  test('a renamed export (export { inner as outer }) and an anonymous default export are found under their exported names', async () => {
    const url = new URL('./fixtures/registered.ts', import.meta.url).href;
    const ns = (await import(url)) as { default: (c: Connection) => Promise<void>; outer: (c: Connection) => Promise<void> };
    expect(await firstMessage(ns.outer, [])).toBe('renamed');
    expect(await firstMessage(ns.default, [])).toBe('anonymous default');
  });

  test('the same lookups in a real ES module graph (node --import tsx, not Vite): renamed and anonymous default exports travel, a non-exported function is refused', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/locate-check.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ renamed: ['renamed', 0], anonymousDefault: ['anonymous default', 0], hidden: ['PicklingError', 'TARGET_NOT_IMPORTABLE'] });
  });

  test('registerModule: a registered namespace is searched first, by identity, under the URL it was given', async () => {
    const url = `${new URL('./fixtures/registered.ts', import.meta.url).href}?registered`;
    const ns = (await import(new URL('./fixtures/registered.ts', import.meta.url).href)) as { default: (c: Connection) => Promise<void>; outer: (c: Connection) => Promise<void> };
    registerModule(url, ns);
    expect(locateFunction(ns.outer)).toEqual({ url, name: 'outer' });
    expect(locateFunction(ns.default)).toEqual({ url, name: 'default' });
    expect(await firstMessage(ns.default, [])).toBe('anonymous default');
    expect(await firstMessage(ns.outer, [])).toBe('renamed');
  });

  test('positional and keyword arguments', async () => {
    const [a, b] = Pipe();
    const p = new Process({ target: report, args: [b, 1, 'two'], kwargs: { three: 3 } });
    p.start();
    expect(await a.recv()).toEqual([1, 'two', { __proto__: null, three: 3 }]);
    await p.join();
    a.close();
  });

  test('a Process subclass runs its own run() with its fields', async () => {
    const [a, b] = Pipe();
    const w = new Worker({ name: 'custom' });
    w.greeting = 'bonjour';
    w.conn = b;
    w.start();
    expect(await a.recv()).toEqual(['bonjour', 'custom']);
    await w.join();
    expect(w.exitcode).toBe(0);
    a.close();
  });
});

describe('misuse and failures', () => {
  test.each(['spawn', 'forkserver'])('%s: a main module that starts a child without the isMainProcess guard gets a RuntimeError in the child (the start at its top level), not a child of every child', (method) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/unguarded-main.ts'], {
      encoding: 'utf8',
      cwd: new URL('..', import.meta.url).pathname,
      env: { ...process.env, UNGUARDED_METHOD: method },
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1); // no child got past its import to print
    const out = JSON.parse(lines[0]!) as { exitcode: number; name: string; remote: string };
    expect(out.name).toBe('ProcessStartupError');
    expect(out.exitcode).toBe(1);
    expect(out.remote).toMatch(/^RuntimeError: An attempt has been made to start a new process before the current process has finished its bootstrapping phase/);
    expect(out.remote).toContain('isMainProcess(import.meta)');
  });

  test('start twice, join before start, close while running, use after close', async () => {
    const p = new Process({ target: sleepForever });
    await expect(p.join()).rejects.toBeInstanceOf(AssertionError);
    await expect(p.join()).rejects.toThrow('can only join a started process');
    p.start();
    expect(() => p.start()).toThrow(AssertionError);
    expect(() => p.start()).toThrow('cannot start a process twice');
    expect(() => p.close()).toThrow(ValueError);
    p.kill();
    await p.join();
    p.close();
    expect(() => p.isAlive()).toThrow('process object is closed');
    expect(() => p.exitcode).toThrow(ValueError);
  });

  test('a function declared at the top level of its module but not exported is an error at start() that says how to fix it', () => {
    const [, b] = Pipe();
    const p = new Process({ target: exposeHidden(), args: [b] });
    const e = (() => {
      try {
        p.start();
      } catch (x) {
        return x;
      }
      return null;
    })() as PicklingError | null;
    b.close();
    expect(e).toBeInstanceOf(PicklingError);
    expect(e!.code).toBe('TARGET_NOT_IMPORTABLE');
    expect(e!.message).toContain("cannot send 'hidden'");
    expect(e!.message).toContain('export function hidden');
    expect(e!.message).toContain('registerModule');
    expect(p.pid).toBeNull();
  });

  test('a child whose target module fails to import: join() resolves, exitcode 1, startupError says why', async () => {
    const p = new Process({ target: never });
    p.start();
    await p.join();
    expect(p.exitcode).toBe(1);
    expect(p.startupError).toBeInstanceOf(ProcessStartupError);
    expect(p.startupError!.message).toContain('cannot be imported in a child');
    expect(await p.exited).toBe(1);
  });

  test('a child that cannot be spawned at all (no such executable): join() resolves, exitcode 1, startupError has the cause', async () => {
    setExecutable('/nonexistent/node');
    try {
      const p = new Process({ target: exitWith, args: [0] });
      p.start();
      expect(p.isAlive()).toBe(true);
      await p.join();
      expect(p.exitcode).toBe(1);
      expect(p.startupError).toBeInstanceOf(ProcessStartupError);
      expect((p.startupError!.cause as { code?: string }).code).toBe('ENOENT');
      expect(await p.spawned).toBeNull();
      expect(p.pid).toBeNull();
    } finally {
      setExecutable(process.execPath);
    }
  });
});

/** This process's children as the OS sees them (not zombies), whatever the library thinks. */
function childPids(): Set<number> {
  const out = new Set<number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z') out.add(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

describe.each(['spawn', 'forkserver'] as const)('failed starts under %s', (method) => {
  const ctx = getContext(method);
  /** Lets the machinery settle: the fork server's pool full and warm, and the launcher's work done. */
  async function settle(): Promise<void> {
    if (method === 'forkserver') await forkserver.ensureRunning();
    await new Promise((r) => setTimeout(r, 200));
    if (method === 'forkserver') await forkserver.ensureRunning();
  }

  test('a target that cannot travel, a non-exported function, an argument that cannot be pickled: errors at start(), and no process is left behind', async () => {
    await settle();
    const before = childPids();
    const active = activeChildren().length;
    for (let i = 0; i < 5; i++) {
      const [a, b] = Pipe();
      expect(() => new ctx.Process({ target: () => 1 }).start()).toThrow(PicklingError);
      const local = function localHelper(): void {};
      expect(() => new ctx.Process({ target: local }).start()).toThrow(/localHelper|not defined in a module|named export/);
      expect(() => new ctx.Process({ target: exposeHidden(), args: [b] }).start()).toThrow(PicklingError);
      const p = new ctx.Process({ target: report, args: [b, () => 'a function'] });
      expect(() => p.start()).toThrow(PicklingError);
      expect(p.pid).toBeNull();
      a.close();
      b.close();
    }
    await settle();
    expect([...childPids()].filter((pid) => !before.has(pid))).toEqual([]);
    expect(activeChildren().length).toBe(active);
  });
});

describe('contexts and start methods', () => {
  test("'spawn' is the default method; 'fork' is refused with the reason", () => {
    expect(getAllStartMethods()).toEqual(['spawn', 'forkserver']);
    expect(getStartMethod()).toBe('spawn');
    expect(getContext('spawn').startMethod).toBe('spawn');
    expect(() => getContext('fork')).toThrow(/cannot fork|use 'spawn'/);
    expect(() => getContext('nope')).toThrow(ValueError);
    expect(() => setStartMethod('spawn')).toThrow(RuntimeError);
    expect(() => setStartMethod('spawn')).toThrow('context has already been set');
    setStartMethod('spawn', { force: true });
  });

  test('unsetting and setting the start method, as billiard does', () => {
    try {
      setStartMethod(null, { force: true });
      expect(getStartMethod({ allowNone: true })).toBeNull();
      setStartMethod(null); // without force, null fixes the default
      expect(getStartMethod({ allowNone: true })).toBe('spawn');
      setStartMethod('forkserver', { force: true });
      expect(getStartMethod()).toBe('forkserver');
      expect(getContext().startMethod).toBe('forkserver');
      expect(new (getContext().Process)({ target: boom }).constructor.name).toBe('ForkServerProcess');
    } finally {
      setStartMethod('spawn', { force: true });
    }
  });

  test('a context carries the factories, the exception classes and its own Process', async () => {
    const spawn = getContext('spawn');
    const fs = getContext('forkserver');
    expect(getContext('spawn')).toBe(spawn);
    expect(spawn.getContext()).toBe(spawn);
    expect(spawn.getContext('forkserver')).toBe(fs);
    expect(fs.getStartMethod()).toBe('forkserver');
    expect(() => spawn.setStartMethod('forkserver')).toThrow(ValueError);
    expect(() => spawn.setStartMethod('forkserver')).toThrow('cannot set start method of concrete context');
    expect(() => spawn.getContext('fork')).toThrow(ValueError);
    expect(spawn.getAllStartMethods()).toEqual(getAllStartMethods());
    expect([spawn.ProcessError, spawn.BufferTooShort, spawn.TimeoutError, spawn.AuthenticationError]).toEqual([
      ProcessError,
      BufferTooShort,
      TimeoutError,
      AuthenticationError,
    ]);
    expect(spawn.currentProcess()).toBe(currentProcess());
    expect(spawn.parentProcess()).toBeNull();
    expect(spawn.activeChildren()).toEqual(activeChildren());
    expect(spawn.cpuCount()).toBe(cpuCount());
    expect(spawn.forkingIsEnabled()).toBe(false);
    const [a, b] = fs.Pipe();
    const p = new fs.Process({ target: sendEnv, args: [b, 'BILLIARD_TS_NOT_SET'] });
    expect(p).toBeInstanceOf(ForkServerProcess);
    p.start();
    b.close();
    expect(await a.recv()).toBeNull();
    await p.join();
    expect(p.exitcode).toBe(0);
    a.close();
  });
});

describe('the rest of the top level', () => {
  test('setExecutable: children run the given node binary', async () => {
    process.env.BILLIARD_TS_REAL_NODE = process.execPath;
    setExecutable(fileURLToPath(new URL('./fixtures/node-wrapper.sh', import.meta.url)));
    try {
      const [a, b] = Pipe();
      const p = new Process({ target: sendEnv, args: [b, 'BILLIARD_TS_WRAPPED'] });
      p.start();
      b.close();
      expect(await a.recv()).toBe('1');
      await p.join();
      expect(p.exitcode).toBe(0);
      a.close();
    } finally {
      setExecutable(process.execPath);
    }
    expect(() => setExecutable('')).toThrow(TypeError);
  });

  test('parity no-ops: freezeSupport, allowConnectionPickling, forkingIsEnabled, forkingEnable warns', () => {
    expect(freezeSupport()).toBeUndefined();
    expect(allowConnectionPickling()).toBeUndefined();
    expect(forkingIsEnabled()).toBe(false);
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    forkingEnable(true);
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        process.off('warning', onWarning);
        expect(warnings).toEqual(['DeprecationWarning: forkingEnable(true) has no effect: Node.js cannot fork']);
        resolve();
      }),
    );
  });
});

describe('the child entry point run by hand', () => {
  test('says what it is and exits 1, instead of failing on descriptor 3', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/process/child.ts'], {
      encoding: 'utf8',
      cwd: new URL('..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('descriptor 3 is not a bootstrap channel');
    expect(r.stderr).toContain('it cannot be run directly');
  });
});

describe('the example', () => {
  test('examples/greetings.ts prints three greetings and joins its children', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/greetings.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.startsWith('hello'))).toHaveLength(3);
    expect(lines.at(-1)).toMatch(/exit codes: 0,0,0/);
    expect(readFileSync(new URL('../examples/greetings.ts', import.meta.url), 'utf8')).toContain('isMainProcess(import.meta)');
  });
});
