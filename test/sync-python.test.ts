/**
 * Node and Python processes sharing the sync layer's objects: a Node parent
 * hands Queue, SimpleQueue, JoinableQueue, Lock, RLock, Semaphore,
 * BoundedSemaphore, Condition, Event, Barrier, Value and Array to Python
 * children, and each side sees the other's puts, lock holds, event sets,
 * notifies and shared writes.
 *
 * Each scenario is the parent half of a protocol whose child half is a
 * function of compat/peers/sync_peer.py (test/peers/sync-child.ts has the
 * same functions for Node children, which pytests/test_sync_node_child.py
 * drives from a billiard parent). The Python children are:
 *
 * - billiard's (the interpreter with billiard), started by `Process` with a
 *   `pyfunc` target through billiard's own spawn entry point;
 * - python3.12 and python3.13 with the standard library alone: billiard-ts's
 *   spawn pickle of the arguments (the bytes a billiard child gets, from the
 *   same spawn registry), loaded by `sync_peer.py child` with `billiard.*`
 *   globals taken from `multiprocessing.*`, the descriptors passed under the
 *   numbers the pickle names. billiard's spawn entry point cannot run there.
 *
 * The other direction under python3.12/3.13 (a multiprocessing parent, Node
 * children) runs `sync_peer.py parent`, whose scenarios pytests/ runs under
 * billiard. Last, examples/queue-greetings-python.ts runs.
 */
import { execFile, spawn, type StdioOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, test } from 'vitest';

import {
  Array as SharedArray,
  Barrier,
  BoundedSemaphore,
  Condition,
  dumps,
  Empty,
  Event,
  JoinableQueue,
  Lock,
  Process,
  pyfunc,
  Queue,
  RLock,
  Semaphore,
  SimpleQueue,
  tuple,
  Value,
  ValueError,
} from '../src/index.js';
import { whileSpawning } from '../src/process/authkey.js';
import { spawnRegistry, type FdPlan } from '../src/process/reduction.js';
import { PEER_DIR, pythonFor, type PyVersion } from './helpers/peers.js';
import { increment } from './peers/sync-child.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Seconds to wait for what must happen; seconds of a wait that must time out. */
const T = 30;
const SHORT = 0.1;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A started Python child: resolves with its exit code (stderr in the failure message). */
interface PyChild {
  join(): Promise<number | null>;
}
/** Starts a Python child running `sync_peer.<name>(*args)`. */
type Start = (name: string, args: unknown[]) => PyChild;

/** billiard's child: Process with a pyfunc target, through billiard's spawn_main. */
const startBilliard: Start = (name, args) => {
  const p = new Process({ target: pyfunc(`sync_peer.${name}`), args, pythonPath: [PEER_DIR], python: pythonFor('3.11') });
  p.start();
  return {
    join: async () => {
      await p.join();
      return p.exitcode;
    },
  };
};

/**
 * A standard-library child: the arguments pickled by the spawn registry a
 * Node or billiard child gets them from (while spawning, descriptors
 * numbered from 3), on its stdin; each descriptor at its number.
 */
function stdlibStarter(version: PyVersion): Start {
  return (name, args) => {
    const plan: FdPlan = { next: 3, fds: [], modules: new Set() };
    const registry = spawnRegistry(plan);
    const payload = whileSpawning(() => dumps(tuple(name, tuple(...args)), { registry }));
    const stdio: StdioOptions = ['pipe', 'inherit', 'pipe'];
    for (const f of plan.fds) {
      while (stdio.length < f.childFd) stdio.push('ignore');
      stdio[f.childFd] = f.parentFd;
    }
    const proc = spawn(pythonFor(version), [PEER_DIR + 'sync_peer.py', 'child'], { stdio });
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdin!.end(payload);
    const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
    return {
      join: async () => {
        const code = await exited;
        if (code !== 0) throw new Error(`python ${version} child ${name} exited ${code}:\n${err}`);
        return code;
      },
    };
  };
}

/** Values that come back equal from a Python echo (null ends one). */
const ECHO: unknown[] = [
  'hello',
  '',
  'ü€\u{1d11e}',
  Uint8Array.of(98, 0, 255),
  2n ** 70n,
  -(2n ** 63n),
  12345,
  -1.5,
  1e-300, // an integral float (1e300) would come back as a PyFloat box
  true,
  false,
  tuple(1, 'two', tuple(3.5, null)),
  [1, [2, [3, [4]]]],
  { a: 1, b: [bytes('x'), 'y'] },
  'x'.repeat(200_000), // more than a pipe's buffer
];

function equalItem(a: unknown, b: unknown): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return a.length === b.length && a.every((x, i) => x === b[i]);
  return a === b;
}

/** Resolves 'pending' if `p` has not settled within `seconds`. */
function stillPending(p: Promise<unknown>, seconds: number): Promise<unknown> {
  return Promise.race([p, new Promise((resolve) => setTimeout(() => resolve('pending'), seconds * 1000))]);
}

interface Sizes {
  counter: number;
  bulk: number;
}

function scenarios(start: Start, sizes: Sizes): void {
  test('Queue: what Node puts, the Python child gets and puts back, equal', async () => {
    const inq = new Queue();
    const outq = new Queue();
    const p = start('echo', [inq, outq]);
    for (const v of [...ECHO, null]) await inq.put(v);
    const got: unknown[] = [];
    for (let i = 0; i <= ECHO.length; i++) got.push(await outq.get({ timeout: T }));
    expect(got).toEqual([...ECHO, null]);
    expect(await p.join()).toBe(0);
  });

  test('a burst of puts of mixed sizes in one turn (small frames packed, large ones apart, written early and by the feeder) comes back from the Python child whole and in order', async () => {
    const inq = new Queue();
    const outq = new Queue();
    const p = start('echo', [inq, outq]);
    const items: unknown[] = [];
    for (let i = 0; i < 3000; i++) {
      if (i % 101 === 50) items.push(`${i}:`.padEnd(100_000, "x"));
      else if (i % 7 === 0) items.push(new Uint8Array(8188 + (i % 9)).fill(i & 0xff));
      else items.push(i % 2 ? i : `item-${i}`);
    }
    for (const v of items) inq.putNowait(v);
    inq.putNowait(null);
    const got: unknown[] = [];
    for (let i = 0; i <= items.length; i++) got.push(await outq.get({ timeout: T }));
    expect(got.length).toBe(items.length + 1);
    const firstBad = got.findIndex((v, i) => (i === items.length ? v !== null : !equalItem(v, items[i])));
    expect(firstBad).toBe(-1);
    expect(await p.join()).toBe(0);
  });

  test('SimpleQueue: both ways', async () => {
    const inq = new SimpleQueue();
    const outq = new SimpleQueue();
    const p = start('simple_echo', [inq, outq]);
    for (const v of [...ECHO, null]) await inq.put(v);
    const got: unknown[] = [];
    for (let i = 0; i <= ECHO.length; i++) got.push(await outq.get());
    expect(got).toEqual([...ECHO, null]);
    expect(await p.join()).toBe(0);
  });

  test('Lock and RLock: held in Python, Node times out; released, Node takes them; then the reverse', async () => {
    const lock = new Lock();
    const rlock = new RLock();
    const cmd = new Queue();
    const out = new Queue();
    const p = start('lock_steps', [lock, rlock, cmd, out]);
    expect(await out.get({ timeout: T })).toBe('held');
    expect(String(lock)).toBe('<Lock(owner=SomeOtherProcess)>');
    expect(await lock.acquire({ timeout: SHORT })).toBe(false);
    expect(await lock.acquire({ block: false })).toBe(false);
    expect(await rlock.acquire({ block: false })).toBe(false);
    await cmd.put('release');
    expect(await out.get({ timeout: T })).toBe('released once');
    expect(await lock.acquire({ timeout: T })).toBe(true);
    expect(await rlock.acquire({ block: false })).toBe(false); // the child still holds it once
    await cmd.put('release rlock');
    expect(await out.get({ timeout: T })).toEqual(tuple('timed', false));
    expect(await rlock.acquire({ timeout: T })).toBe(true);
    rlock.release();
    lock.release();
    await cmd.put('parent released');
    expect(await out.get({ timeout: T })).toEqual(tuple('acquired', true));
    expect(await out.get({ timeout: T })).toBe('done');
    expect(await p.join()).toBe(0);
  });

  test("a Python child asleep in sem_timedwait on a Lock is woken by Node's release (Node posts with Atomics, then FUTEX_WAKE)", async () => {
    const lock = new Lock();
    const out = new Queue();
    expect(await lock.acquire()).toBe(true);
    const p = start('sleep_on_lock', [lock, out]);
    expect(await out.get({ timeout: T })).toBe('waiting');
    // Let the child fall asleep in the kernel (it waits up to 10 s; a missed wake-up would show as false).
    await new Promise((r) => setTimeout(r, 300));
    lock.release();
    expect(await out.get({ timeout: T })).toEqual(tuple('acquired', true));
    expect(await p.join()).toBe(0);
  });

  test('Event: Node sets, the Python child wakes; it sets, Node wakes', async () => {
    const toChild = new Event();
    const toParent = new Event();
    const out = new Queue();
    const p = start('event_steps', [toChild, toParent, out]);
    expect(await out.get({ timeout: T })).toEqual(tuple('is_set', false));
    expect(await toParent.wait(SHORT)).toBe(false);
    await toChild.set();
    expect(await out.get({ timeout: T })).toEqual(tuple('waited', true));
    expect(await toParent.wait(T)).toBe(true);
    expect(await toParent.isSet()).toBe(true);
    await toParent.clear();
    expect(await toParent.isSet()).toBe(false);
    expect(await p.join()).toBe(0);
  });

  test("Value and Array: Node's writes after the start are seen in Python, and Python's here", async () => {
    const vi = Value('i', 42);
    const vd = Value('d', 1.5);
    const vl = Value('l', 2n ** 40n + 3n);
    const ai = SharedArray('i', [1, -2, 3]);
    const ad = SharedArray('d', [0.5, -0.25, 3.25]);
    const ac = SharedArray('c', 16);
    const cmd = new Queue();
    const out = new Queue();
    const p = start('shared_steps', [vi, vd, vl, ai, ad, ac, cmd, out]);
    expect(await out.get({ timeout: T })).toBe('ready');
    vi.value = 7;
    ai.set(0, 9);
    ac.value = bytes('node bytes');
    await cmd.put('read');
    expect(await out.get({ timeout: T })).toEqual(tuple('seen', 7, 1.5, 2 ** 40 + 3, [9, -2, 3], [0.5, -0.25, 3.25], bytes('node bytes')));
    expect(await out.get({ timeout: T })).toBe('written');
    expect([vi.value, vd.value, vl.value]).toEqual([-123456, 0.1, -(2n ** 62n) - 5n]);
    expect([ai.toArray(), ad.toArray(), ac.value]).toEqual([[10, 20, 30], [0.5, 1e300, 3.25], bytes('from python')]);
    expect(await p.join()).toBe(0);
  });

  test(`a counter incremented ${sizes.counter} times by each of 2 Node and 2 Python children under one Lock ends exact`, async () => {
    const lock = new Lock();
    const counter = Value('i', 0);
    const counter2 = Value('i', 0); // under its own RLock
    const go = new Event();
    const args: [Lock, typeof counter, typeof counter2, number, Event] = [lock, counter, counter2, sizes.counter, go];
    const nodes = [0, 1].map(() => new Process({ target: increment, args }));
    for (const n of nodes) n.start();
    const pythons = [0, 1].map(() => start('increment', args));
    await go.set();
    expect(await Promise.all(pythons.map((p) => p.join()))).toEqual([0, 0]);
    for (const n of nodes) await n.join();
    expect(nodes.map((n) => n.exitcode)).toEqual([0, 0]);
    expect([counter.value, counter2.value]).toEqual([4 * sizes.counter, 4 * sizes.counter]);
  });

  test(`${sizes.bulk} items from the Python child arrive complete and in order`, async () => {
    const q = new Queue();
    const p = start('put_many', [q, sizes.bulk]);
    let bad: unknown = null;
    for (let i = 0; i < sizes.bulk; i++) {
      const item = await q.get({ timeout: T });
      if (item !== i && bad === null) bad = [i, item];
    }
    expect(bad).toBeNull();
    expect(q.empty()).toBe(true);
    expect(await p.join()).toBe(0);
  });

  test(`${sizes.bulk} items from Node arrive in the Python child complete and in order`, async () => {
    const q = new Queue();
    const out = new Queue();
    const p = start('get_many', [q, sizes.bulk, out]);
    for (let i = 0; i < sizes.bulk; i++) await q.put(i);
    expect(await out.get({ timeout: T })).toEqual(tuple('got', sizes.bulk, null));
    expect(await p.join()).toBe(0);
  });

  test("JoinableQueue: Node's join() returns only after the Python consumer's last task_done()", async () => {
    const n = 50;
    const jq = new JoinableQueue();
    const go = new Event();
    const done = Value('i', 0);
    for (let i = 0; i < n; i++) await jq.put(i);
    const p = start('consume_joinable', [jq, n, go, done]);
    const joined = jq.join().then(() => 'joined');
    expect(await stillPending(joined, SHORT * 3)).toBe('pending');
    expect(done.value).toBe(0);
    await go.set();
    expect(await joined).toBe('joined');
    expect(done.value).toBe(n);
    expect(await p.join()).toBe(0);
  });

  test("JoinableQueue: the Python producer's join() returns only after Node's last taskDone()", async () => {
    const n = 50;
    const jq = new JoinableQueue();
    const out = new Queue();
    const p = start('produce_joinable', [jq, n, out]);
    const got: unknown[] = [];
    for (let i = 0; i < n; i++) got.push(await jq.get({ timeout: T }));
    expect(got).toEqual([...Array(n).keys()]);
    for (let i = 0; i < n - 1; i++) await jq.taskDone();
    await expect(out.get({ timeout: SHORT * 3 })).rejects.toBeInstanceOf(Empty);
    await jq.taskDone();
    expect(await out.get({ timeout: T })).toBe('joined');
    expect(await p.join()).toBe(0);
  });

  test('Semaphore and BoundedSemaphore: counts seen both ways, the bound enforced in Python', async () => {
    const sem = new Semaphore(2);
    const bsem = new BoundedSemaphore(1);
    const cmd = new Queue();
    const out = new Queue();
    expect(await bsem.acquire({ block: false })).toBe(true);
    const p = start('semaphore_steps', [sem, bsem, cmd, out]);
    expect(await out.get({ timeout: T })).toEqual(tuple('took', [true, true, false], 0));
    expect(sem.getValue()).toBe(0);
    expect(await sem.acquire({ block: false })).toBe(false);
    await cmd.put('release');
    expect(await out.get({ timeout: T })).toEqual(tuple('bounded', false));
    expect(sem.getValue()).toBe(3);
    bsem.release();
    await cmd.put('bsem released');
    expect(await out.get({ timeout: T })).toEqual(tuple('over-release', 'ValueError', 'semaphore or lock released too many times'));
    expect(() => bsem.release()).toThrow(ValueError);
    expect(await p.join()).toBe(0);
  });

  test('Condition: Node notifies the waiting Python child, then the child notifies Node', async () => {
    const cond = new Condition();
    const cmd = new Queue();
    const out = new Queue();
    const p = start('condition_steps', [cond, cmd, out]);
    expect(await out.get({ timeout: T })).toBe('waiting');
    expect(await cond.acquire({ timeout: T })).toBe(true); // free once the child waits
    await cond.notify(); // resolves once the child woke
    cond.release();
    expect(await out.get({ timeout: T })).toEqual(tuple('woken', true));
    await cond.acquire();
    await cmd.put('notify me');
    expect(await cond.wait(T)).toBe(true);
    cond.release();
    expect(await out.get({ timeout: T })).toBe('notified');
    expect(await p.join()).toBe(0);
  });

  test('Barrier: Node and the Python child pass it together, indices 0 and 1', async () => {
    const barrier = new Barrier(2);
    const out = new Queue();
    const p = start('barrier_wait', [barrier, out]);
    const mine = await barrier.wait(T);
    const [kind, theirs] = (await out.get({ timeout: T })) as [string, number];
    expect(kind).toBe('index');
    expect([mine, theirs].sort()).toEqual([0, 1]);
    expect(await p.join()).toBe(0);
  });
}

/** The child says which classes it rebuilt the objects as (`<pkg>.synchronize.Lock`...). */
async function rebuildsClasses(start: Start, pkg: string): Promise<void> {
  const q = new Queue();
  const objs = [new Lock(), new RLock(), new Semaphore(3), new BoundedSemaphore(2), new Condition(), new Event(), new Barrier(2), Value('i', 1), SharedArray('d', 2), new Queue(), new JoinableQueue(), new SimpleQueue()];
  const p = start('describe', [q, ...objs]);
  expect(await q.get({ timeout: T })).toEqual([
    ...['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier'].map((c) => `${pkg}.synchronize.${c}`),
    `${pkg}.sharedctypes.Synchronized`,
    `${pkg}.sharedctypes.SynchronizedArray`,
    ...['Queue', 'JoinableQueue', 'SimpleQueue'].map((c) => `${pkg}.queues.${c}`),
  ]);
  expect(await p.join()).toBe(0);
}

describe("billiard's Python child (Process with a pyfunc target)", () => {
  scenarios(startBilliard, { counter: 10_000, bulk: 100_000 });

  test("the child rebuilds billiard's own classes", () => rebuildsClasses(startBilliard, 'billiard'));
});

for (const version of ['3.12', '3.13'] as const) {
  describe(`CPython ${version}'s multiprocessing, no billiard`, () => {
    describe('a Python child loading the spawn pickle under multiprocessing names', () => {
      scenarios(stdlibStarter(version), { counter: 2000, bulk: 10_000 });
      test("the child rebuilds multiprocessing's own classes", () => rebuildsClasses(stdlibStarter(version), 'multiprocessing'));
    });

  });
}

/**
 * What a 3.12/3.13 parent adds to the pytest runs (billiard and 3.11's
 * multiprocessing, every scenario): its own classes' pickles (3.12's
 * fork-context check, arenas in /dev/shm) rebuilt by Node children.
 */
const PARENT_SCENARIOS = ['barrier', 'condition', 'event', 'joinable_node_consumes', 'lock', 'queue_echo', 'semaphores', 'shared', 'simple_queue_echo'];

describe.concurrent('a multiprocessing parent (python3.12/3.13) hands its own objects to Node children: sync_peer.py parent', () => {
  for (const version of ['3.12', '3.13'] as const) {
    test(`CPython ${version}`, async () => {
      let stdout: string;
      try {
        ({ stdout } = await promisify(execFile)(pythonFor(version), [PEER_DIR + 'sync_peer.py', 'parent', ...PARENT_SCENARIOS], { cwd: ROOT, timeout: 120_000 }));
      } catch (e) {
        const err = e as { stdout?: string; stderr?: string };
        stdout = err.stdout ?? '';
        if (!stdout) throw new Error(`sync_peer.py parent failed: ${err.stderr}`);
      }
      const results = stdout.trim().split('\n').map((l) => JSON.parse(l) as { scenario: string; ok: boolean; error?: string });
      expect(results.filter((r) => !r.ok)).toEqual([]);
      expect(results.map((r) => r.scenario)).toEqual(PARENT_SCENARIOS);
    });
  }
});

test('examples/queue-greetings-python.ts: three Python workers greet through one Queue', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/queue-greetings-python.ts'], { cwd: ROOT, timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  expect(lines).toHaveLength(4);
  const greetings = lines.slice(0, 3).map((l) => /^Hello, (\w+)! \(from Python process (\d+)\)$/.exec(l));
  expect(greetings.every((m) => m !== null)).toBe(true);
  expect(greetings.map((m) => m![1]).sort()).toEqual(['Alice', 'Bob', 'Charlie']);
  expect(new Set(greetings.map((m) => m![2])).size).toBe(3);
  expect(lines[3]).toBe('exit codes: 0 0 0');
});
