/**
 * Process: start, join, exit codes as CPython gives them, names, the child's
 * view of itself, subclasses, and the errors of misuse and failed start-ups.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { describe, expect, test } from 'vitest';

import {
  activeChildren,
  allowConnectionPickling,
  AssertionError,
  AuthenticationError,
  BufferTooShort,
  cpuCount,
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
  type Connection,
  Process,
  ProcessStartupError,
  registerModule,
  setExecutable,
  setStartMethod,
  ValueError,
  wait,
} from '../src/index.js';
import { never } from './fixtures/crash-on-import.js';
import { boom, exitWith, greet, report, sendEnv, sleepForever, startGrandchild, whoami, Worker } from './fixtures/targets.js';

/** Starts `target(conn, ...args)` in a child, returns the first message it sends, and checks it exits 0. */
async function firstMessage(target: (...a: never[]) => unknown, args: unknown[]): Promise<unknown> {
  const [a, b] = Pipe();
  const p = new Process({ target, args: [b, ...args] });
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

describe('what the child knows', () => {
  test('its name, the parent authkey, its identity and its parent', async () => {
    const [a, b] = Pipe();
    const p = new Process({ target: whoami, args: [b] });
    p.start();
    const me = (await a.recv()) as Record<string, unknown>;
    await p.join();
    expect(me.name).toBe(p.name);
    expect(p.name).toMatch(/^Process-\d+$/);
    expect(Buffer.from(me.authkey as Uint8Array).equals(Buffer.from(currentProcess().authkey))).toBe(true);
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

  test('registerModule: an anonymous default export and a renamed export are found by identity', async () => {
    const url = new URL('./fixtures/registered.ts', import.meta.url).href;
    const ns = (await import(url)) as { default: (c: Connection) => Promise<void>; outer: (c: Connection) => Promise<void> };
    // Unregistered, the renamed export travels under its function's name, which the module does not export.
    const [a0, b0] = Pipe();
    const lost = new Process({ target: ns.outer, args: [b0] });
    lost.start();
    b0.close();
    expect(((await lost.join().catch((e: unknown) => e)) as Error).message).toContain("has no export 'inner'");
    a0.close();
    registerModule(url, ns);
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

  test('a target that cannot travel is an error at start(), with no child left behind', () => {
    const before = activeChildren().length;
    expect(() => new Process({ target: () => 1 }).start()).toThrow(PicklingError);
    const local = function localHelper(): void {};
    expect(() => new Process({ target: local }).start()).toThrow(/localHelper|not defined in a module|named export/);
    expect(activeChildren().length).toBe(before);
  });

  test('an argument that cannot be pickled is an error at start(), with no child left behind', () => {
    const before = activeChildren().length;
    const p = new Process({ target: report, args: [Pipe()[1], () => 'a function'] });
    expect(() => p.start()).toThrow(PicklingError);
    expect(p.pid).toBeNull();
    expect(activeChildren().length).toBe(before);
  });

  test('a child whose target module fails to import: ProcessStartupError, no hang', async () => {
    const p = new Process({ target: never });
    p.start();
    const e = await p.join().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProcessStartupError);
    expect((e as ProcessStartupError).message).toContain('cannot be imported in a child');
    expect(p.exitcode).toBe(1);
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
      expect(new (getContext().Process)({ target: sendEnv }).constructor.name).toBe('ForkServerProcess');
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
