/**
 * The Node side of the manager interop tests: a manager class whose server
 * runs in a child (`start()` imports this module there), Node objects it
 * serves, and the targets of Node child processes that use a manager.
 */
import { BaseManager, DictProxy, ManagedDict, ManagedQueue, QueueProxy, SyncManager, type Address } from '../../src/index.js';

/** A Node class served to Node and Python clients alike: its public methods are exposed. */
export class Counter {
  #n = 0;
  #waiters: Array<() => void> = [];
  inc(by = 1): number {
    this.#n += by;
    for (const w of this.#waiters.splice(0)) w();
    return this.#n;
  }
  value(): number {
    return this.#n;
  }
  /** Waits (asynchronously) until the count reaches `n`; false after `timeout` seconds. */
  async wait_for(n: number, timeout = 10): Promise<boolean> {
    const deadline = Date.now() + timeout * 1000;
    while (this.#n < n) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
    return true;
  }
  _hidden(): string {
    return 'not exposed';
  }
}

const queue = new ManagedQueue();
const jobs = new ManagedQueue();
const results = new ManagedQueue();
const dict = new ManagedDict();
const counter = new Counter();

/** The Node counterpart of compat/peers/manager_peer.py's PeerManager. */
export class PeerManager extends SyncManager {
  declare get_queue: () => Promise<QueueProxy>;
  declare get_jobs: () => Promise<QueueProxy>;
  declare get_results: () => Promise<QueueProxy>;
  declare get_dict: () => Promise<DictProxy>;
  declare get_counter: () => Promise<import('../../src/index.js').BaseProxy & { inc(by?: number): Promise<number>; value(): Promise<number>; waitFor(n: number, timeout?: number): Promise<boolean> }>;
  declare Counter: () => Promise<import('../../src/index.js').BaseProxy & { inc(by?: number): Promise<number>; value(): Promise<number> }>;
}
PeerManager.register('get_queue', { callable: () => queue });
PeerManager.register('get_jobs', { callable: () => jobs });
PeerManager.register('get_results', { callable: () => results });
PeerManager.register('get_dict', { callable: () => dict, proxytype: DictProxy });
PeerManager.register('get_counter', { callable: () => counter });
PeerManager.register('Counter', { callable: Counter });

/** A client-side manager for the job queues (the classic `register('get_jobs')` with no callable). */
export class JobsManager extends BaseManager {
  declare get_jobs: () => Promise<QueueProxy>;
  declare get_results: () => Promise<QueueProxy>;
}
JobsManager.register('get_jobs');
JobsManager.register('get_results');

/** A Node consumer of the mixed fleet: takes jobs until None, puts (job, name, job*job) on results. */
export async function nodeConsumer(address: Address, authkey: Uint8Array, name: string): Promise<number> {
  const m = new JobsManager({ address, authkey });
  await m.connect();
  const jobsQ = await m.get_jobs();
  const resultsQ = await m.get_results();
  let n = 0;
  for (;;) {
    const job = await jobsQ.get();
    if (job === null) break;
    await resultsQ.put([job, name, (job as number) * (job as number)]);
    n++;
  }
  await jobsQ._decref();
  await resultsQ._decref();
  return n;
}

/** A Node child handed a dict proxy (pickled with its manager's key, as Python does while spawning). */
export async function childUsesProxy(d: DictProxy): Promise<void> {
  await d.setItem('from_child', process.pid);
  const seen = await d.getItem('from_parent');
  if (seen !== 'hello') throw new Error(`the child read ${String(seen)}`);
}

/** Creates `n` dicts on the manager and returns without releasing them: its exit releases them, as Python's finalizers do. */
export async function childCreates(address: Address, authkey: Uint8Array, n: number, hold: { send(v: unknown): Promise<void> } | null): Promise<void> {
  const m = new SyncManager({ address, authkey });
  await m.connect();
  const kept: unknown[] = [];
  for (let i = 0; i < n; i++) kept.push(await m.dict({ i }));
  (globalThis as Record<string, unknown>).keptProxies = kept;
  if (hold !== null) {
    await hold.send('created');
    // Wait to be killed. A pending promise alone does not keep Node running (nor do idle connections): a timer does.
    await new Promise(() => setInterval(() => undefined, 60_000));
  }
}

/** A task for a Node manager's Pool. */
export function square(x: number): number {
  return x * x;
}

/** A task that fails. */
export function failTask(x: number): never {
  throw new RangeError(`bad ${x}`);
}
