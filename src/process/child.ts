/**
 * The entry point of a billiard-ts child process (the counterpart of
 * billiard's `spawn_main`). It reads two pickles from the bootstrap channel
 * (descriptor 3, or `--billiard-ts-fd N`):
 *
 *   1. the preparation data, a dict: name, authkey, identity, daemon,
 *      parent_pid, parent_name, dir, start_method, log_to_stderr and
 *      log_level (the parent's logging, see spawn.ts);
 *   2. the process description, a dict: target (`'url#export'` or None),
 *      cls (`'url#export'` of a Process subclass or None), args, kwargs,
 *      state (own fields of the subclass instance).
 *
 * It imports the target's module, answers `('ready',)` (or `('error', kind,
 * message, stack)` and exits 1), then runs the target: exit code 0 when it
 * returns, 1 when it throws (after printing `Process <name>:` and the stack
 * to stderr, as Python prints the traceback), n for `process.exit(n)`.
 */

import { Connection, flushConnections } from '../connection/connection.js';
import { setParentDeathSignal, parentPid } from '../native/index.js';

import { dumps, loads, PyTuple, tuple, type PickleRegistry } from '../pickle/index.js';
import { becomeChild, importUserModule } from './current.js';
import { parseRef } from './locate.js';
import { DESCRIPTOR_CHANNEL_FD, ReceivedDescriptors, receiveDescriptors } from './fd-channel.js';
import { error, getLogger, info, logToStderr } from './logger.js';
import { childRegistry } from './reduction.js';
import { runExitHooks } from './exit-hooks.js';
import { setStartMethod, START_METHODS, type StartMethod } from './start-method.js';

/** The bootstrap descriptor: `--billiard-ts-fd N`, else 3. */
function bootstrapFd(): number {
  const i = process.argv.indexOf('--billiard-ts-fd');
  return i >= 0 ? Number(process.argv[i + 1]) : 3;
}

function field(d: unknown, key: string): unknown {
  if (d instanceof Map) return d.get(key);
  return (d as Record<string, unknown> | null)?.[key];
}

async function importExport(spec: string): Promise<unknown> {
  const { url, name } = parseRef(spec);
  const ns = await importUserModule(url);
  if (name in ns) return ns[name];
  const def = ns.default as { name?: string } | Record<string, unknown> | undefined;
  if (typeof def === 'function' && def.name === name) return def;
  // A CommonJS module whose exports Node's static analysis did not list: its module.exports.
  if (def !== null && typeof def === 'object' && Object.hasOwn(def, name)) return (def as Record<string, unknown>)[name];
  throw Object.assign(
    new Error(`module ${url} has no export '${name}' (a function exported under another name, or as an anonymous default, needs registerModule in the parent)`),
    { kind: 'TARGET_NOT_FOUND' },
  );
}

/**
 * With BILLIARD_TS_TRACE_STARTUP set, the milestones of the start-up go to
 * stderr in milliseconds since this process began (bench/process.ts).
 */
const TRACE = process.env.BILLIARD_TS_TRACE_STARTUP !== undefined;

function mark(what: string): void {
  if (TRACE) process.stderr.write(`billiard-ts child ${process.pid}: ${what} at ${performance.now().toFixed(1)} ms\n`);
}

/** How the child reports to its parent: over the bootstrap channel, or the IPC channel of a warm child. */
interface Reporter {
  send(message: unknown[]): Promise<void>;
  close(): void;
}

/** Reports a start-up failure to the parent (its `startupError`), prints it as Python would, and exits 1. */
async function failStart(e: unknown, heading: string, reporter: Reporter): Promise<never> {
  const err = e as Error & { kind?: string };
  await reporter.send(['error', err.kind ?? err.name ?? 'Error', err.message, err.stack ?? String(err)]).catch(() => undefined);
  reporter.close();
  process.stderr.write(`${heading}\n${err.stack ?? String(err)}\n`);
  return exit(1);
}

/**
 * Runs a child from its two bootstrap pickles (see the top of this file).
 * `loaded` runs once both are loaded (a warm child then closes the
 * descriptors nobody asked for).
 */
async function run(prepBytes: Uint8Array, specBytes: Uint8Array, makeRegistry: () => PickleRegistry, reporter: Reporter, loaded?: () => void): Promise<never | void> {
  const prep = loads(prepBytes, { registry: makeRegistry() });
  mark('preparation data loaded');
  const name = String(field(prep, 'name'));
  let spec: unknown;
  try {
    // The layers whose objects are among the arguments register how to rebuild them.
    const modules = field(prep, 'modules');
    if (Array.isArray(modules)) for (const m of modules) if (typeof m === 'string') await import(m);
    mark(`modules imported (${Array.isArray(modules) ? modules.length : 0})`);
    spec = loads(specBytes, { registry: makeRegistry() });
  } catch (e) {
    return failStart(e, `Process ${name}:`, reporter);
  }
  loaded?.();
  mark('arguments loaded');
  const daemon = field(prep, 'daemon') === true;
  const parentPidExpected = Number(field(prep, 'parent_pid'));
  if (daemon) {
    // A daemonic child dies with its parent, even when the parent is killed (SIGKILL).
    setParentDeathSignal(9);
    if (parentPid() !== parentPidExpected) process.exit(1);
  }
  const identity = field(prep, 'identity');
  becomeChild({
    name,
    authkey: field(prep, 'authkey') as Uint8Array,
    daemon,
    identity: identity instanceof PyTuple || Array.isArray(identity) ? (identity as number[]).map(Number) : [],
    parent: { name: String(field(prep, 'parent_name') ?? 'MainProcess'), pid: parentPidExpected },
  });
  const dir = field(prep, 'dir');
  if (typeof dir === 'string' && dir !== process.cwd()) process.chdir(dir);
  // The child's default start method is its parent's, as billiard's spawn.prepare sets it.
  const method = field(prep, 'start_method');
  if (typeof method === 'string' && START_METHODS.includes(method as StartMethod)) setStartMethod(method, { force: true });
  // The parent's logging, as billiard's spawn.prepare takes it over: the stderr handler and the level.
  if (field(prep, 'log_to_stderr') === true) logToStderr();
  const logLevel = field(prep, 'log_level');
  if (typeof logLevel === 'number') getLogger().setLevel(logLevel);

  let body: () => unknown;
  try {
    const args = Array.from((field(spec, 'args') as unknown[]) ?? []);
    const kwargs = field(spec, 'kwargs');
    const kwargsEntries = kwargs instanceof Map ? [...kwargs.entries()] : Object.entries((kwargs as object) ?? {});
    const kw = kwargsEntries.length > 0 ? Object.fromEntries(kwargsEntries as Array<[string, unknown]>) : undefined;
    const cls = field(spec, 'cls');
    const target = field(spec, 'target');
    const targetFn = typeof target === 'string' ? await importExport(target) : null;
    mark('target imported');
    if (targetFn !== null && typeof targetFn !== 'function') throw Object.assign(new Error(`${String(target)} is not a function`), { kind: 'TARGET_NOT_FOUND' });
    if (typeof cls === 'string') {
      const Cls = (await importExport(cls)) as { prototype: { run?: () => unknown } };
      // The instance is rebuilt without running its constructor, as Python unpickles a Process.
      const self = Object.create(Cls.prototype) as Record<string, unknown> & { run?: () => unknown };
      const state = field(spec, 'state');
      Object.assign(self, state instanceof Map ? Object.fromEntries(state) : (state as object));
      self.__billiardTarget = targetFn;
      self.__billiardArgs = args;
      self.__billiardKwargs = kw;
      if (typeof self.run !== 'function') throw Object.assign(new Error(`${cls} has no run() method`), { kind: 'TARGET_NOT_FOUND' });
      body = () => self.run!();
    } else if (targetFn !== null) {
      const fn = targetFn as (...a: unknown[]) => unknown;
      body = () => (kw === undefined ? fn(...args) : fn(...args, kw));
    } else {
      body = () => undefined;
    }
  } catch (e) {
    return failStart(e, `Process ${name}:`, reporter);
  }
  // The parent may be gone already (killed): the target still runs, as a Python child's does.
  await reporter.send(['ready']).catch(() => undefined);
  reporter.close();
  mark('ready sent');
  let code = 0;
  // billiard's Process._bootstrap logs these two lines (at INFO, when the logger exists).
  info('child process %s calling self.run()', process.pid);
  try {
    await body();
  } catch (e) {
    const stack = (e as Error)?.stack ?? String(e);
    // billiard logs util.error('Process %s', name, exc_info=True), then prints the traceback all the same.
    error('Process %s\n%s', name, stack);
    process.stderr.write(`Process ${name}:\n${stack}\n`);
    code = 1;
  }
  info('process %s exiting with exitcode %d', process.pid, code);
  await exit(code);
}

/**
 * Ends the process when its target does, as in Python, whatever handles are
 * still open; queued writes are flushed first.
 */
async function exit(code: number): Promise<never> {
  await runExitHooks();
  await flushConnections();
  await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
  await new Promise<void>((resolve) => process.stderr.write('', () => resolve()));
  process.exit(code);
}

/** Exits with a clear message when `fd` cannot be a bootstrap channel (this file was run by hand, say). */
function checkChannel(fd: number): void {
  let ok = false;
  try {
    const st = process.getBuiltinModule('node:fs').fstatSync(fd);
    ok = st.isSocket() || st.isFIFO();
  } catch {
    // Not open.
  }
  if (!ok) {
    process.stderr.write(
      `billiard-ts child: descriptor ${fd} is not a bootstrap channel (a socket or pipe from the parent): this is billiard-ts's child entry point, ` +
        "which Process.start() (or compat/billiard_ts.py's NodeProcess) runs; it cannot be run directly\n",
    );
    process.exit(1);
  }
}

/**
 * Imports the fork server's preload modules (`setForkserverPreload`), named
 * by `BILLIARD_TS_PRELOAD`, which the child's own children do not inherit.
 * One that fails to import is skipped with a warning on stderr, as Python's
 * forkserver skips a preload module that raises ImportError.
 */
async function importPreload(): Promise<void> {
  const raw = process.env.BILLIARD_TS_PRELOAD;
  delete process.env.BILLIARD_TS_PRELOAD;
  if (raw === undefined) return;
  for (const spec of JSON.parse(raw) as string[]) {
    try {
      await import(spec);
    } catch (e) {
      process.stderr.write(`billiard-ts child ${process.pid}: the fork server preload module ${spec} could not be imported, and is skipped: ${(e as Error)?.message ?? String(e)}\n`);
    }
  }
}

/**
 * Reads `count` frames from a blocking descriptor synchronously, or returns
 * null having read nothing when that cannot be done: the descriptor is
 * non-blocking (nothing there yet) or not readable that way. Once a frame
 * is begun it is finished (the parent writes each frame whole).
 */
function readFramesSync(fd: number, count: number): Uint8Array[] | null {
  const fs = process.getBuiltinModule('node:fs');
  const readFully = (buf: Uint8Array, first: boolean): boolean => {
    let at = 0;
    while (at < buf.length) {
      let n: number;
      try {
        n = fs.readSync(fd, buf, at, buf.length - at, null);
      } catch (e) {
        if (first && at === 0) return false;
        const code = (e as { code?: string }).code;
        if (code !== 'EAGAIN' && code !== 'EINTR') throw e;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
        continue;
      }
      if (n === 0) {
        // End of file before anything was read: the usual path reports it (EOFError).
        if (first && at === 0) return false;
        throw new Error('the parent closed the bootstrap channel part-way through a frame');
      }
      at += n;
    }
    return true;
  };
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const header = new Uint8Array(4);
    if (!readFully(header, i === 0)) return null;
    const length = new DataView(header.buffer).getInt32(0);
    if (length < 0) throw new Error('a bootstrap frame with a negative length');
    const body = new Uint8Array(length);
    readFully(body, false);
    frames.push(body);
  }
  return frames;
}

/** A spawned child: the bootstrap pickles come on descriptor 3 (or --billiard-ts-fd); a cold fork server child imports the preload modules first. */
async function spawned(): Promise<void> {
  mark('entry loaded');
  checkChannel(bootstrapFd());
  await importPreload();
  const fd = bootstrapFd();
  // The parent wrote both frames before the child began: read them at once, without a socket or an event-loop turn.
  const early = readFramesSync(fd, 2);
  const channel = Connection.fromFd(fd);
  const prepBytes = early?.[0] ?? (await channel.recvBytes());
  const specBytes = early?.[1] ?? (await channel.recvBytes());
  mark('bootstrap read');
  await run(prepBytes, specBytes, () => childRegistry(), { send: (m) => channel.send(m), close: () => channel.close() });
}

/**
 * A warm child of the fork server: imports the preload modules, says
 * `['warm']` on its IPC channel, then waits. At start the parent writes the
 * descriptors of the arguments on the descriptor channel (fd-channel.ts),
 * then sends `{ t: 'start', prep, spec }` on the IPC channel. The child
 * takes the descriptors (all of them, as announced, or it fails its start),
 * closes the channel, and runs. It exits if the parent goes away first.
 */
async function warm(): Promise<void> {
  await importPreload();
  // The package's own layers, which a start would otherwise import to rebuild its arguments (queues,
  // locks, the pool's worker...): loaded while the child waits, not while its parent waits for it.
  // (A load at run time, for its side effects only: the process layer does not depend on the facade.)
  const packageEntry = new URL('../index.js', import.meta.url).href;
  await import(packageEntry);
  // And a first run of the code a start runs (compiled on first use): pickling both ways.
  loads(dumps(new Map<string, unknown>([['name', 'warm'], ['authkey', new Uint8Array(32)], ['sys_path', ['a', 'b']], ['flag', true], ['n', 1.5], ['t', tuple(1, null)]])));
  // The fork server may be gone by now (its parent exited while this child warmed up): end quietly.
  const onDisconnect = (): void => process.exit(0);
  process.on('disconnect', onDisconnect);
  if (!process.connected) process.exit(0);
  const start = await new Promise<{ prep: Uint8Array; spec: Uint8Array }>((resolve) => {
    process.on('message', (m: { t: string; prep?: Uint8Array; spec?: Uint8Array }) => {
      if (m.t === 'start') resolve({ prep: m.prep!, spec: m.spec! });
    });
    // With a callback a closed channel is reported to it, not thrown as an 'error' event.
    process.send!(['warm'], undefined, undefined, (e: Error | null) => {
      if (e) process.exit(0);
    });
  });
  mark('start received');
  process.off('disconnect', onDisconnect);
  process.removeAllListeners('message');
  const reporter: Reporter = {
    send: (m) => new Promise<void>((resolve) => (process.connected ? process.send!(m, undefined, undefined, () => resolve()) : resolve())),
    close: () => {
      if (process.connected) process.disconnect();
    },
  };
  let received: ReceivedDescriptors;
  try {
    received = new ReceivedDescriptors(receiveDescriptors(DESCRIPTOR_CHANNEL_FD));
  } catch (e) {
    return failStart(e, `billiard-ts fork server child ${process.pid}: its start failed:`, reporter);
  } finally {
    try {
      process.getBuiltinModule('node:fs').closeSync(DESCRIPTOR_CHANNEL_FD);
    } catch {
      // Not open (this file run by hand with --billiard-ts-warm).
    }
  }
  await run(start.prep, start.spec, () => childRegistry((n) => received.get(n)), reporter, () => received.closeUnused());
}

(process.argv.includes('--billiard-ts-warm') ? warm() : spawned()).catch((e: unknown) => {
  process.stderr.write(`billiard-ts child bootstrap failed: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(1);
});
