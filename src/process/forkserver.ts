/**
 * The `'forkserver'` start method. Node cannot fork, so instead of a server
 * that forks, billiard-ts keeps a few Node children started ahead of time
 * ("warm"): each has loaded the child entry point and imported the modules
 * named by `setForkserverPreload`, and waits on its IPC channel. `start()`
 * hands one of them its target, its arguments and the sockets of the
 * Connections among them; a new warm child is started in the background. So
 * a child is still a fresh process that ran nothing of the parent's, with the
 * preload modules imported, as Python users of forkserver rely on.
 *
 * Warm children are spawned by the launcher thread (launcher.ts), which
 * also holds their IPC channels; they do not keep the parent alive and exit
 * when it goes away.
 */

import { availableParallelism } from 'node:os';

import { FROM_SOURCE } from '../native/index.js';
import { closeLater, launch, type RemoteChild } from './launcher.js';
import { Connection } from '../connection/index.js';
import { bootstrapPickles, childCommand, copyDescriptors, getNodeExecutable, IPC_VARIABLES, isTypeScriptSpec, launchNode, type Launched, type PrepData, type ProcessSpec } from './spawn.js';

interface WarmChild {
  child: RemoteChild;
  /** Resolves true once the child has imported its preload modules and waits, false if it died first. */
  warm: Promise<boolean>;
  /** Set once `warm` resolved true: messages for the child can go at once. */
  isWarm: boolean;
  ts: boolean;
}

/** The pool of warm children behind the `'forkserver'` context. */
export class ForkServer {
  #preload: string[] = [];
  #size = Math.min(4, availableParallelism());
  readonly #pool: WarmChild[] = [];
  #ts = FROM_SOURCE;
  /** Children are warmed only once this process starts one (or asks for ready()), as Python starts its server lazily. */
  #inUse = false;

  /** Modules (specifiers or URLs) every warm child imports before it waits. */
  setPreload(modules: readonly string[]): void {
    if (!Array.isArray(modules) || !modules.every((m) => typeof m === 'string')) throw new TypeError('module_names must be a list of strings');
    this.#preload = [...modules];
    if (modules.some((m) => /\.(c|m)?ts$/.test(m))) this.#ts = true;
    // Children warmed with the old list would not have the new modules: start over.
    this.#drain();
    if (this.#inUse) this.fill();
  }

  get preload(): readonly string[] {
    return this.#preload;
  }

  /** The pids of the warm children waiting now (those whose spawn has been reported). */
  get pids(): number[] {
    return this.#pool.map((w) => w.child.pid).filter((pid): pid is number => pid !== undefined);
  }

  /** How many warm children are kept. */
  get size(): number {
    return this.#size;
  }

  set size(n: number) {
    if (!Number.isInteger(n) || n < 0) throw new RangeError('the fork server pool size must be a non-negative integer');
    this.#size = n;
    while (this.#pool.length > n) this.#kill(this.#pool.pop()!);
    if (this.#inUse) this.fill();
  }

  /** Starts warm children up to the pool size. */
  fill(): void {
    this.#inUse = true;
    while (this.#pool.length < this.#size) this.#pool.push(this.#warmOne());
  }

  /** Resolves once every pooled child is warm. */
  async ready(): Promise<void> {
    this.fill();
    // Warm children are unreferenced; hold the event loop open while waiting for them.
    const hold = setInterval(() => {}, 1 << 30);
    try {
      await Promise.all(this.#pool.map((w) => w.warm));
    } finally {
      clearInterval(hold);
    }
  }

  #warmOne(): WarmChild {
    const { script, execArgv } = childCommand(this.#ts);
    const child = launch({
      file: getNodeExecutable(),
      args: [...execArgv, script, '--billiard-ts-warm'],
      env: null,
      set: { BILLIARD_TS_PRELOAD: JSON.stringify(this.#preload) },
      unset: IPC_VARIABLES,
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    child.unref();
    const warm = new Promise<boolean>((resolve) => {
      child.once('message', (m) => resolve(Array.isArray(m) && m[0] === 'warm'));
      child.once('exit', () => resolve(false));
      child.once('error', () => resolve(false));
    });
    const entry: WarmChild = { child, warm, isWarm: false, ts: this.#ts };
    void warm.then((ok) => {
      entry.isWarm = ok;
    });
    const leave = (): void => {
      const i = this.#pool.indexOf(entry);
      if (i >= 0) this.#pool.splice(i, 1);
    };
    child.once('exit', leave);
    child.once('error', leave);
    return entry;
  }

  #kill(w: WarmChild): void {
    w.child.disconnect();
    w.child.kill();
  }

  #drain(): void {
    for (const w of this.#pool.splice(0)) this.#kill(w);
  }

  /**
   * Starts a child from a warm one (or a cold spawn when none is usable).
   * The bootstrap pickles are made first, so that an argument that cannot
   * be pickled leaves the pool as it was; then the sockets of the
   * Connections in the arguments go over the IPC channel, then the pickles.
   */
  launch(prep: PrepData, spec: ProcessSpec, options: { env?: NodeJS.ProcessEnv }): Launched {
    const needsTs = isTypeScriptSpec(spec);
    const index = options.env === undefined ? this.#pool.findIndex((w) => w.child.connected && (w.ts || !needsTs)) : -1;
    if (index < 0) {
      this.fill();
      return launchNode(prep, spec, options);
    }
    const { prepBytes, specBytes, plan } = bootstrapPickles(prep, spec);
    // Node's IPC channel passes sockets only: a child that needs a pipe or
    // shared memory (a Queue, a Value) starts cold, with its descriptors inherited.
    if (plan.fds.some((f) => !(f.owner instanceof Connection))) return launchNode(prep, spec, options);
    // Copies of the descriptors, taken now: the caller may close its ends as soon as start() returns.
    const copies = copyDescriptors(plan);
    // Nothing can fail any more: the warm child is taken.
    const w = this.#pool.splice(index, 1)[0]!;
    setImmediate(() => this.fill());
    const child = w.child;
    child.ref();
    const report = new Promise<unknown[] | null>((resolve) => {
      const onMessage = (m: unknown): void => {
        if (Array.isArray(m) && m[0] !== 'warm') {
          child.off('message', onMessage);
          resolve(m as unknown[]);
        }
      };
      child.on('message', onMessage);
      child.once('disconnect', () => resolve(null));
      child.once('exit', () => resolve(null));
      child.once('error', () => resolve(null));
    });
    // A warm child listens once it said so: what came earlier would be lost.
    // When it has, the messages go now, in this turn (a caller may block the
    // thread next, in acquireSync(), waiting for the child).
    const send = (ok: boolean): void => {
      if (!ok || !child.connected) {
        closeLater(copies.map((c) => c.fd));
        return;
      }
      for (const c of copies) child.send({ t: 'fd', fd: c.childFd }, c.fd);
      child.send({ t: 'start', prep: prepBytes, spec: specBytes });
    };
    if (w.isWarm) send(true);
    else void w.warm.then(send);
    return {
      child,
      report,
      release: () => child.disconnect(),
      unref: () => undefined,
    };
  }
}

/** The fork server of this process, made on first use. */
let server: ForkServer | undefined;

export function forkServer(): ForkServer {
  server ??= new ForkServer();
  return server;
}
