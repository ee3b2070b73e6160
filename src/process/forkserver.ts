/**
 * The `'forkserver'` start method. Node cannot fork, so instead of a server
 * that forks, billiard-ts keeps a few Node children started ahead of time
 * ("warm"): each has loaded the child entry point and imported the modules
 * named by `setForkserverPreload`, and waits on its IPC channel. So a child
 * is still a fresh process that ran nothing of the parent's, with the
 * preload modules imported, as Python users of forkserver rely on.
 *
 * Each warm child also has a descriptor channel: one end of a socket pair
 * as its descriptor {@link DESCRIPTOR_CHANNEL_FD}, the other end kept here.
 * `start()` takes a warm child and writes on that channel every descriptor
 * of the arguments (a Connection's socket, a queue's pipe, a Value's or
 * Array's shared memory) with `SCM_RIGHTS`, with the numbers the pickles
 * know them by (fd-channel.ts), then sends the two bootstrap pickles on the
 * IPC channel; a new warm child is started in the background. The
 * descriptors keep their flags (a queue's pipe stays blocking, as the
 * Python processes sharing it expect). When the warm child is already warm
 * all of it goes out in the same turn as `start()`: a caller may block the
 * thread next (`acquireSync()`), waiting for the child.
 *
 * A warm child that died while it waited is passed over for the next one
 * (its channel refuses the descriptors), and a child still warming that
 * dies before it could take its start hands the start on to the next one,
 * or to a cold child. A cold child (no warm one usable: none left, another
 * environment, a TypeScript target for JavaScript-only children) is spawned
 * as under `'spawn'`, and imports the preload modules first as well.
 *
 * Warm children are spawned by the launcher thread (launcher.ts), which
 * also holds their IPC channels; they do not keep the parent alive and exit
 * when it goes away.
 */

import { EventEmitter } from 'node:events';
import { closeSync } from 'node:fs';
import { availableParallelism } from 'node:os';

import { FROM_SOURCE, setBlocking, socketpair } from '../native/index.js';
import { DESCRIPTOR_CHANNEL_FD, sendDescriptors, writeDescriptors, writeHeader } from './fd-channel.js';
import { launch, type RemoteChild, type StdioEntry } from './launcher.js';
import {
  bootstrapPickles,
  childCommand,
  copyDescriptors,
  getNodeExecutable,
  IPC_VARIABLES,
  isTypeScriptModule,
  isTypeScriptSpec,
  launchNode,
  launchPickled,
  PRELOAD_VARIABLE,
  type Launched,
  type PickledStart,
  type PrepData,
  type ProcessSpec,
} from './spawn.js';
import type { FdPlan } from './reduction.js';

export { DESCRIPTOR_CHANNEL_FD } from './fd-channel.js';

interface WarmChild {
  child: RemoteChild;
  /** This process's end of the child's descriptor channel; -1 once closed. */
  channel: number;
  /** Resolves true once the child has imported its preload modules and waits, false if it died first. */
  warm: Promise<boolean>;
  /** Set once `warm` resolved true: messages for the child can go at once. */
  isWarm: boolean;
  ts: boolean;
}

/**
 * How a test breaks the descriptor channel of the next starts: closed with
 * nothing written, one descriptor fewer than announced, or numbers the
 * pickles do not name. @internal
 */
export type ChannelFault = 'close' | 'drop-descriptor' | 'wrong-numbers';

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed.
  }
}

/**
 * The child of one forkserver start, as its Process sees it: the warm child
 * that took the start, or, when the one taken died before it could, the
 * next one or a cold child. `pid` and the `spawn` event come once the start
 * went to a live child; `exit` and `error` are that child's.
 */
class ForkServerChild extends EventEmitter {
  pid: number | undefined = undefined;
  /** The child the start went to. */
  #child: RemoteChild | null = null;
  /** A warming child taken for this start, until it takes it. */
  #waiting: RemoteChild | null = null;
  /** A signal sent before the start went to a child: the start goes nowhere else then. */
  #signal: NodeJS.Signals | null = null;
  #referenced = true;

  get killed(): boolean {
    return this.#signal !== null;
  }

  /** A warming child was taken: it dies if this start is killed meanwhile, and keeps the parent alive. */
  wait(child: RemoteChild): void {
    this.#waiting = child;
    if (this.#referenced) child.ref();
  }

  /** The start went to `child` (or it is the one killed while warming): its events are this start's. */
  commit(child: RemoteChild): void {
    this.#waiting = null;
    this.#child = child;
    if (this.#referenced) child.ref();
    else child.unref();
    const spawned = (): void => {
      this.pid = child.pid;
      this.emit('spawn');
    };
    if (child.pid !== undefined) spawned();
    else child.once('spawn', spawned);
    child.on('error', (e: Error) => this.emit('error', e));
    if (child.exitCode !== null || child.signalCode !== null) {
      process.nextTick(() => this.emit('exit', child.exitCode, child.signalCode));
    } else {
      child.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.emit('exit', code, signal));
    }
    if (this.#signal !== null) child.kill(this.#signal);
  }

  /** The start could not go anywhere (a cold spawn failed): an `error`, as a failed spawn's. */
  fail(e: Error): void {
    this.#waiting = null;
    process.nextTick(() => this.emit('error', e));
  }

  /** Killed while its warming child could not be spawned: the end of the start is the kill's. */
  endKilled(): void {
    this.#waiting = null;
    process.nextTick(() => this.emit('exit', null, this.#signal));
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.#child !== null) return this.#child.kill(signal);
    this.#signal ??= signal;
    this.#waiting?.kill(signal);
    return true;
  }

  unref(): void {
    this.#referenced = false;
    (this.#child ?? this.#waiting)?.unref();
  }
}

/** One start on its way to a child (see {@link ForkServer.launch}). */
interface Handoff {
  readonly facade: ForkServerChild;
  readonly start: PickledStart;
  /** The descriptors of the arguments: `childFd` is the number the pickles name, `parentFd` the caller's, open only during `start()`. */
  readonly plan: FdPlan;
  /** Copies of them, taken when the start has to wait (a warming child); the cold spawn or the hand-off closes them. */
  copies: Array<{ childFd: number; fd: number }> | null;
  /** Tells the Launched how the start-up ends, once the start went somewhere. */
  settle(how: Ending): void;
}

/** The part of a Launched that depends on the child the start went to. */
type Ending = Pick<Launched, 'report' | 'release' | 'unref'>;

const NO_ENDING: Ending = { report: null, release: () => undefined, unref: () => undefined };

/** The most warm children an adaptive pool grows to (or its base size, if larger). */
export const ADAPTIVE_POOL_MAX = 8;
/** Seconds without a start after which an adaptive pool that grew returns to its base size. */
const ADAPTIVE_IDLE_SECONDS = 30;
/** Seconds a cold start may take to report before the pool's growth stops waiting for it. */
const COLD_REPORT_WAIT = 10;
/** Seconds warm starts in flight may take to report before the pool refills anyway. */
const REFILL_WAIT = 0.25;

/**
 * The pool of warm children behind the `'forkserver'` context.
 *
 * By default the pool adapts: it keeps its base size (the number of CPUs,
 * at most 4) until starts find it empty. Each start that has to spawn a
 * cold child then grows it by one, up to {@link ADAPTIVE_POOL_MAX}, so the
 * next burst of that size finds its children warm. The extra children are
 * started once the cold ones of the burst have reported (not while they
 * compete for the CPUs), and retired after {@link ADAPTIVE_IDLE_SECONDS}
 * without a start. `size = n` fixes the size; `size = null` returns to
 * adapting.
 */
export class ForkServer {
  #preload: string[] = [];
  readonly #defaultBase = Math.min(4, availableParallelism());
  #base = this.#defaultBase;
  #size = this.#base;
  #adaptive = true;
  /** Cold children of this pool's starts that have not reported yet: growth waits for them. */
  #coldInFlight = 0;
  /** ready() calls waiting for #coldInFlight to come back to 0. */
  #coldSettled: Array<() => void> = [];
  #idle: ReturnType<typeof setTimeout> | null = null;
  /** @internal seconds without a start before a grown pool shrinks back (tests shorten it). */
  idleSeconds = ADAPTIVE_IDLE_SECONDS;
  /** @internal seconds the growth waits for a cold start's report (tests shorten it). */
  coldReportSeconds = COLD_REPORT_WAIT;
  /** @internal seconds the refill waits at most for the reports of the starts in flight (tests lengthen it). */
  refillSeconds = REFILL_WAIT;
  readonly #pool: WarmChild[] = [];
  #ts = FROM_SOURCE;
  /** Children are warmed only once this process starts one (or asks for ready()), as Python starts its server lazily. */
  #inUse = false;
  /** Warm children handed a start that have not reported yet: the refill waits for them (see #refillLater). */
  #startsInFlight = 0;
  #refillTimer: ReturnType<typeof setTimeout> | null = null;
  /** @internal how the next starts break their descriptor channel (tests only). */
  channelFault: ChannelFault | null = null;

  /** Modules (specifiers or URLs) every warm child imports before it waits. */
  setPreload(modules: readonly string[]): void {
    if (!Array.isArray(modules) || !modules.every((m) => typeof m === 'string')) throw new TypeError('module_names must be a list of strings');
    this.#preload = [...modules];
    if (modules.some(isTypeScriptModule)) this.#ts = true;
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

  /** How many warm children are kept now. */
  get size(): number {
    return this.#size;
  }

  /** A number fixes the pool's size; null makes it adaptive again, from its default base size. */
  set size(n: number | null) {
    if (n !== null && (!Number.isInteger(n) || n < 0)) throw new RangeError('the fork server pool size must be a non-negative integer, or null to adapt');
    this.#adaptive = n === null;
    this.#base = n ?? this.#defaultBase;
    this.#size = this.#base;
    if (this.#idle !== null) clearTimeout(this.#idle);
    this.#idle = null;
    while (this.#pool.length > this.#size) this.#retire(this.#pool.pop()!);
    if (this.#inUse) this.fill();
  }

  /** Whether the pool grows for bursts (the default) rather than keeping a fixed size. */
  get adaptive(): boolean {
    return this.#adaptive;
  }

  /** Starts warm children up to the pool size (the base size while cold children of a burst are still starting). */
  fill(): void {
    this.#inUse = true;
    const target = this.#coldInFlight > 0 ? Math.min(this.#size, this.#base) : this.#size;
    while (this.#pool.length < target) {
      const w = this.#warmOne();
      if (w === undefined) break; // no descriptors left for a channel: starts go cold
      this.#pool.push(w);
    }
  }

  /**
   * Resolves once every pooled child is warm. While cold starts of a burst
   * are still starting, the pool they grew is started only once they have
   * reported (see #coldReported): that is waited for first (coldReportSeconds
   * at most), so that the pool is warm at its grown size.
   */
  async ready(): Promise<void> {
    // Warm children are unreferenced; hold the event loop open while waiting for them.
    const hold = setInterval(() => {}, 1 << 30);
    try {
      if (this.#coldInFlight > 0) await new Promise<void>((resolve) => this.#coldSettled.push(resolve));
      this.fill();
      await Promise.all(this.#pool.map((w) => w.warm));
    } finally {
      clearInterval(hold);
    }
  }

  #warmOne(): WarmChild | undefined {
    const { script, execArgv } = childCommand(this.#ts);
    let parentEnd: number;
    let childEnd: number;
    try {
      [parentEnd, childEnd] = socketpair();
      // Only this end: a write that would block fails instead (the child's end is another open file, and stays blocking).
      setBlocking(parentEnd, false);
    } catch {
      return undefined;
    }
    const stdio: StdioEntry[] = ['inherit', 'inherit', 'inherit', 'ipc'];
    stdio[DESCRIPTOR_CHANNEL_FD] = childEnd;
    const child = launch({
      file: getNodeExecutable(),
      args: [...execArgv, script, '--billiard-ts-warm'],
      env: null,
      set: { [PRELOAD_VARIABLE]: JSON.stringify(this.#preload) },
      unset: IPC_VARIABLES,
      stdio,
      serialization: 'advanced',
      close: [childEnd],
    });
    child.unref();
    const warm = new Promise<boolean>((resolve) => {
      child.once('message', (m) => resolve(Array.isArray(m) && m[0] === 'warm'));
      child.once('exit', () => resolve(false));
      child.once('error', () => resolve(false));
    });
    const entry: WarmChild = { child, channel: parentEnd, warm, isWarm: false, ts: this.#ts };
    void warm.then((ok) => {
      entry.isWarm = ok;
    });
    const gone = (): void => {
      const i = this.#pool.indexOf(entry);
      if (i >= 0) this.#pool.splice(i, 1);
      this.#closeChannel(entry);
    };
    child.once('exit', gone);
    child.once('error', gone);
    return entry;
  }

  #closeChannel(w: WarmChild): void {
    if (w.channel < 0) return;
    closeQuietly(w.channel);
    w.channel = -1;
  }

  /** Ends a warm child that will not be used (out of the pool, or found dead). */
  #retire(w: WarmChild): void {
    const i = this.#pool.indexOf(w);
    if (i >= 0) this.#pool.splice(i, 1);
    this.#closeChannel(w);
    w.child.disconnect();
    w.child.kill();
  }

  #drain(): void {
    for (const w of [...this.#pool]) this.#retire(w);
  }

  /** Takes a warm child that can run the target out of the pool (one that said it is warm, else one warming), and refills it later. */
  #take(needsTs: boolean): WarmChild | undefined {
    const usable = (w: WarmChild): boolean => w.child.connected && w.channel >= 0 && (w.ts || !needsTs);
    let i = this.#pool.findIndex((w) => w.isWarm && usable(w));
    if (i < 0) i = this.#pool.findIndex(usable);
    if (i < 0) return undefined;
    const w = this.#pool.splice(i, 1)[0]!;
    this.#refillLater();
    return w;
  }

  /**
   * Refills the pool once the warm children just handed starts have
   * reported, or after {@link REFILL_WAIT} at the latest: a refill starts
   * whole Node processes, which on a machine with few CPUs would compete
   * with the children being started (and delay the start messages, since
   * the launcher thread spawns synchronously).
   */
  #refillLater(): void {
    if (this.#refillTimer !== null) return;
    this.#refillTimer = setTimeout(() => this.#refillNow(), this.refillSeconds * 1000);
    this.#refillTimer.unref();
  }

  #startReported(): void {
    if (--this.#startsInFlight === 0 && this.#refillTimer !== null) setImmediate(() => this.#refillNow());
  }

  #refillNow(): void {
    if (this.#refillTimer === null) return;
    clearTimeout(this.#refillTimer);
    this.#refillTimer = null;
    this.fill();
  }

  /**
   * Starts a child from a warm one (or a cold spawn when none is usable).
   * The bootstrap pickles are made first, so that an argument that cannot
   * be pickled leaves the pool as it was; then the descriptors of the
   * arguments go over the child's descriptor channel, then the pickles over
   * its IPC channel.
   */
  launch(prep: PrepData, spec: ProcessSpec, options: { env?: NodeJS.ProcessEnv }): Launched {
    const needsTs = isTypeScriptSpec(spec);
    const usable = (w: WarmChild): boolean => w.child.connected && (w.ts || !needsTs);
    this.#touch();
    // No warm child ready: this start costs a whole Node start-up, and an adaptive pool grows.
    const grows = options.env === undefined && !this.#pool.some((w) => w.isWarm && usable(w)) && this.#grow();
    let launched: Launched;
    try {
      launched = this.#launch(prep, spec, options, needsTs, usable);
    } catch (e) {
      // An argument that cannot be pickled: no child will report for this start.
      if (grows) this.#coldReported(null);
      throw e;
    }
    if (grows) this.#coldReported(launched.report);
    return launched;
  }

  #launch(prep: PrepData, spec: ProcessSpec, options: { env?: NodeJS.ProcessEnv }, needsTs: boolean, usable: (w: WarmChild) => boolean): Launched {
    if (options.env !== undefined || !this.#pool.some(usable)) {
      this.fill();
      return launchNode(prep, spec, { env: options.env, preload: this.#preload });
    }
    const { prepBytes, specBytes, plan } = bootstrapPickles(prep, spec);
    const facade = new ForkServerChild();
    let ending: Ending | null = null;
    let released = false;
    let unrefd = false;
    let resolveReport!: (m: unknown[] | null) => void;
    const report = new Promise<unknown[] | null>((resolve) => (resolveReport = resolve));
    const h: Handoff = {
      facade,
      start: { prep, prepBytes, specBytes, ts: needsTs, copies: [] },
      plan,
      copies: null,
      settle: (how) => {
        ending = how;
        if (how.report === null) resolveReport(null);
        else void how.report.then(resolveReport);
        if (unrefd) how.unref();
        if (released) how.release();
      },
    };
    this.#startsInFlight++;
    void report.then(() => this.#startReported());
    this.#handOff(h, true);
    return {
      child: facade,
      report,
      release: () => {
        released = true;
        ending?.release();
      },
      unref: () => {
        unrefd = true;
        ending?.unref();
      },
    };
  }

  /**
   * Gives the start to the first warm child that takes it, else to a cold
   * child. `now`: called from `start()`, when the caller's descriptors are
   * still open (later, only the copies are).
   */
  #handOff(h: Handoff, now: boolean): void {
    for (;;) {
      const w = this.#take(h.start.ts);
      if (w === undefined) {
        this.#goCold(h, now);
        return;
      }
      if (w.isWarm) {
        if (this.#give(w, h)) return;
        continue; // it died while it waited: the next one
      }
      // Warming: the start goes once it is warm. Meanwhile the caller may close its descriptors.
      h.copies ??= copyDescriptors(h.plan);
      h.facade.wait(w.child);
      void w.warm.then((ok) => {
        if (h.facade.killed) {
          // Killed while it warmed: that child's end is this start's end.
          this.#closeChannel(w);
          this.#closeCopies(h);
          w.child.disconnect();
          const exited = w.child.exitCode !== null || w.child.signalCode !== null;
          if (ok || exited) h.facade.commit(w.child);
          else h.facade.endKilled(); // its spawn failed: no exit will come
          h.settle(NO_ENDING);
          return;
        }
        if (ok && this.#give(w, h)) return;
        this.#retire(w);
        this.#handOff(h, false);
      });
      return;
    }
  }

  /** Hands the start to the warm child `w`; false (and `w` is retired) when it cannot take it (it died). */
  #give(w: WarmChild, h: Handoff): boolean {
    const child = w.child;
    const fds = h.copies?.map((c) => c.fd) ?? h.plan.fds.map((f) => f.parentFd);
    const numbers = h.plan.fds.map((f) => f.childFd);
    if (!child.connected || w.channel < 0) {
      this.#retire(w);
      return false;
    }
    try {
      this.#sendDescriptors(w.channel, numbers, fds);
    } catch {
      // EPIPE: the child died while it waited (its exit is not reported yet).
      this.#retire(w);
      return false;
    }
    // The child has them now (in flight, held by the kernel): this process's copies can go.
    this.#closeChannel(w);
    this.#closeCopies(h);
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
    child.send({ t: 'start', prep: h.start.prepBytes, spec: h.start.specBytes });
    h.facade.commit(child);
    h.settle({ report, release: () => child.disconnect(), unref: () => undefined });
    return true;
  }

  #sendDescriptors(sock: number, numbers: readonly number[], fds: readonly number[]): void {
    switch (this.channelFault) {
      case null:
        return sendDescriptors(sock, numbers, fds);
      case 'close':
        return;
      case 'drop-descriptor':
        writeHeader(sock, numbers);
        return writeDescriptors(sock, fds.slice(0, -1));
      case 'wrong-numbers':
        return sendDescriptors(
          sock,
          numbers.map((n) => n + 1000),
          fds,
        );
    }
  }

  #closeCopies(h: Handoff): void {
    if (h.copies === null) return;
    for (const c of h.copies) closeQuietly(c.fd);
    h.copies = [];
  }

  /**
   * A start found no warm child ready: an adaptive pool grows by one (up to
   * its maximum), and counts the start as cold until it reports. Returns
   * whether it did.
   */
  #grow(): boolean {
    if (!this.#adaptive) return false;
    if (this.#size < Math.max(ADAPTIVE_POOL_MAX, this.#base)) this.#size++;
    this.#coldInFlight++;
    return true;
  }

  /**
   * The grown part of the pool is started once this cold start (and every
   * other of the burst) has reported, or after `coldReportSeconds` (a
   * child whose start-up hangs does not hold the growth back).
   */
  #coldReported(report: Promise<unknown> | null): void {
    let counted = true;
    const done = (): void => {
      if (!counted) return;
      counted = false;
      clearTimeout(timer);
      if (--this.#coldInFlight > 0) return;
      if (this.#inUse) this.fill();
      for (const resolve of this.#coldSettled.splice(0)) resolve();
    };
    const timer = setTimeout(done, this.coldReportSeconds * 1000);
    timer.unref();
    if (report === null) done();
    else report.then(done, done);
  }

  /** A start: an adaptive pool that grew shrinks back after a while without one. */
  #touch(): void {
    if (!this.#adaptive) return;
    if (this.#idle !== null) {
      this.#idle.refresh();
      return;
    }
    this.#idle = setTimeout(() => {
      this.#idle = null;
      if (!this.#adaptive || this.#size <= this.#base) return;
      this.#size = this.#base;
      while (this.#pool.length > this.#size) this.#retire(this.#pool.pop()!);
    }, this.idleSeconds * 1000);
    this.#idle.unref();
  }

  /** No warm child took the start: a cold child gets it (the copies, made now if need be, go to the launcher). */
  #goCold(h: Handoff, now: boolean): void {
    this.fill();
    let launched: ReturnType<typeof launchPickled>;
    try {
      if (h.copies === null) {
        if (!now) throw new Error('the descriptors of the arguments are gone');
        h.copies = copyDescriptors(h.plan);
      }
      const copies = h.copies;
      h.copies = [];
      launched = launchPickled({ ...h.start, copies }, { preload: this.#preload });
    } catch (e) {
      if (now) throw e;
      h.facade.fail(e as Error);
      h.settle(NO_ENDING);
      return;
    }
    h.facade.commit(launched.child);
    h.settle(launched);
  }
}

/** The fork server of this process, made on first use. */
let server: ForkServer | undefined;

export function forkServer(): ForkServer {
  server ??= new ForkServer();
  return server;
}
