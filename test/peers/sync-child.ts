/**
 * Node children of the sync-layer interop tests: each export is the Node
 * side of one protocol of compat/peers/sync_peer.py (same steps, camelCase
 * names), run in a child whose parent is Python (pytests/
 * test_sync_node_child.py through NodeProcess; `sync_peer.py parent` under
 * python3.12/3.13) or Node (test/sync-python.test.ts, next to Python
 * children). Each uses only what it was handed; a broken expectation throws
 * (exit code 1 and a stack on stderr).
 */
import type {
  Barrier,
  BoundedSemaphore,
  Condition,
  Event,
  JoinableQueue,
  Lock,
  Queue,
  RLock,
  Semaphore,
  SimpleQueue,
  Synchronized,
  SynchronizedArray,
  SynchronizedString,
} from '../../src/index.js';
import { tuple, ValueError } from '../../src/index.js';

/** Seconds to wait for what must happen; seconds of a wait that must time out. */
const TIMEOUT = 30;
const SHORT = 0.1;

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  const e = JSON.stringify(expected, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Puts on `outq` every item got from `inq`, up to and including null (None). */
export async function echo(inq: Queue, outq: Queue): Promise<void> {
  for (;;) {
    const item = await inq.get({ timeout: TIMEOUT });
    await outq.put(item);
    if (item === null) break;
  }
}

/** echo() for SimpleQueues. */
export async function simpleEcho(inq: SimpleQueue, outq: SimpleQueue): Promise<void> {
  for (;;) {
    const item = await inq.get();
    await outq.put(item);
    if (item === null) break;
  }
}

/** Holds `lock` and `rlock` (twice) while the parent tries them, then tries `lock` while the parent holds it. */
export async function lockSteps(lock: Lock, rlock: RLock, cmd: Queue, out: Queue): Promise<void> {
  await lock.acquire();
  await rlock.acquire();
  await rlock.acquire();
  await out.put('held');
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'release', 'command');
  lock.release();
  rlock.release();
  await out.put('released once');
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'release rlock', 'command');
  rlock.release();
  await out.put(tuple('timed', await lock.acquire({ timeout: SHORT })));
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'parent released', 'command');
  await out.put(tuple('acquired', await lock.acquire({ timeout: TIMEOUT })));
  lock.release();
  await out.put('done');
}

/** Reports `toChild` unset, waits for the parent to set it, sets `toParent`. */
export async function eventSteps(toChild: Event, toParent: Event, out: Queue): Promise<void> {
  await out.put(tuple('is_set', await toChild.isSet()));
  await out.put(tuple('waited', await toChild.wait(TIMEOUT)));
  await toParent.set();
}

/** Reports the shared values as the parent wrote them after the start, then writes its own. */
export async function sharedSteps(
  vi: Synchronized<'i'>,
  vd: Synchronized<'d'>,
  vl: Synchronized<'l'>,
  ai: SynchronizedArray<'i'>,
  ad: SynchronizedArray<'d'>,
  ac: SynchronizedString,
  cmd: Queue,
  out: Queue,
): Promise<void> {
  await out.put('ready');
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'read', 'command');
  await out.put(tuple('seen', vi.value, vd.value, vl.value, ai.toArray(), ad.toArray(), ac.value));
  vi.value = -123456;
  vd.value = 0.1;
  vl.value = -(2n ** 62n) - 5n;
  ai.setSlice(null, null, [10, 20, 30]);
  ad.set(1, 1e300);
  ac.value = new TextEncoder().encode('from node');
  await out.put('written');
}

/** Adds 1 to `counter` n times under `lock`, and to `counter2` under its own lock (a read then a write each). */
export async function increment(lock: Lock, counter: Synchronized<'i'>, counter2: Synchronized<'i'>, n: number, go: Event): Promise<void> {
  if (!(await go.wait(TIMEOUT))) throw new Error('the go event was never set');
  const lock2 = counter2.getLock();
  for (let i = 0; i < n; i++) {
    lock.acquireSync();
    counter.value = counter.value + 1;
    lock.release();
    lock2.acquireSync();
    counter2.value = counter2.value + 1;
    lock2.release();
  }
}

export async function putMany(q: Queue, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await q.put(i);
}

/** Gets n items; reports the count and the first one out of order (or None). */
export async function getMany(q: Queue, n: number, out: Queue): Promise<void> {
  let bad: unknown = null;
  for (let i = 0; i < n; i++) {
    const item = await q.get({ timeout: TIMEOUT });
    if (item !== i && bad === null) bad = tuple(i, item);
  }
  await out.put(tuple('got', n, bad));
}

/** Gets n items, then (once `go` is set: the parent is in join()) marks each done, counting in `done` first. */
export async function consumeJoinable(jq: JoinableQueue, n: number, go: Event, done: Synchronized<'i'>): Promise<void> {
  const items: unknown[] = [];
  for (let i = 0; i < n; i++) items.push(await jq.get({ timeout: TIMEOUT }));
  if (!(await go.wait(TIMEOUT))) throw new Error('the go event was never set');
  for (const _ of items) {
    await done.withLock(() => {
      done.value = done.value + 1;
    });
    await jq.taskDone();
  }
}

/** Puts n items, waits in join() until the parent marked them all done. */
export async function produceJoinable(jq: JoinableQueue, n: number, out: Queue): Promise<void> {
  for (let i = 0; i < n; i++) await jq.put(i);
  await jq.join();
  await out.put('joined');
}

/** Takes the parent's Semaphore(2) dry; tries the BoundedSemaphore the parent holds; over-releases it once released. */
export async function semaphoreSteps(sem: Semaphore, bsem: BoundedSemaphore, cmd: Queue, out: Queue): Promise<void> {
  const took: boolean[] = [];
  for (let i = 0; i < 3; i++) took.push(await sem.acquire({ block: false }));
  await out.put(tuple('took', took, sem.getValue()));
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'release', 'command');
  for (let i = 0; i < 3; i++) sem.release();
  await out.put(tuple('bounded', await bsem.acquire({ timeout: SHORT })));
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'bsem released', 'command');
  try {
    bsem.release();
    await out.put(tuple('over-release', null, null));
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    await out.put(tuple('over-release', 'ValueError', e.message));
  }
}

/** Waits on `cond` for the parent's notify; then notifies the parent. */
export async function conditionSteps(cond: Condition, cmd: Queue, out: Queue): Promise<void> {
  await cond.withLock(async () => {
    await out.put('waiting');
    await out.put(tuple('woken', await cond.wait(TIMEOUT)));
  });
  expectEqual(await cmd.get({ timeout: TIMEOUT }), 'notify me', 'command');
  // Taken once the parent waits (its wait() released it).
  await cond.withLock(() => cond.notify());
  await out.put('notified');
}

export async function barrierWait(barrier: Barrier, out: Queue): Promise<void> {
  await out.put(tuple('index', await barrier.wait(TIMEOUT)));
}

/** Puts on `q` the class name of each other argument (what the child rebuilt them as). */
export async function describe(q: Queue, ...objs: unknown[]): Promise<void> {
  await q.put(objs.map((o) => (o as object | null)?.constructor?.name ?? String(o)));
}
