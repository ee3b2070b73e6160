/**
 * The worker side of the pool (spec/pool.md §3.2-3.4): the target of every
 * pool worker process. It reads one TASK frame at a time from its inqueue,
 * answers ACK, runs the function (sync or async), answers READY with
 * `(true, value)` or `(false, ExceptionInfo)`, and exits on the `None`
 * sentinel or EOF (code 0), or after `maxtasks` tasks (EX_RECYCLE, 155),
 * sending DEATH `(4, (pid, exitcode))` last. It writes nothing before its
 * first job, as billiard's worker.
 *
 * Functions arrive as global references (protocol.ts): `billiard.pool.mapstar`
 * and `starmapstar` are built in; any other is the export `name` of the module
 * at URL `module`, imported once.
 */

import { PyGlobal, PyTuple, dumps, loads, tuple } from '../pickle/index.js';
import { SimpleQueue } from '../queues/index.js';
import { ACK, DEATH, EX_FAILURE, EX_OK, EX_RECYCLE, exceptionInfoObject, MaybeEncodingError, READY, TASK, monotonic } from './protocol.js';

type Fn = (...args: unknown[]) => unknown;

let ownOutqueue: SimpleQueue | null = null;

/**
 * The outqueue of the pool worker this process is, or null. For tests that
 * play a hostile worker (a task writing frames of its own). @internal
 */
export function workerOutqueue(): SimpleQueue | null {
  return ownOutqueue;
}

const imported = new Map<string, Fn>();

/** The function a global reference names, in this process. */
export async function resolveFunction(ref: unknown): Promise<Fn> {
  if (!(ref instanceof PyGlobal)) throw new TypeError(`a task function must be a global reference, not ${typeof ref}`);
  const key = `${ref.module}#${ref.name}`;
  const hit = imported.get(key);
  if (hit !== undefined) return hit;
  let fn: unknown;
  if (ref.module === 'billiard.pool' && ref.name === 'mapstar') fn = mapstar;
  else if (ref.module === 'billiard.pool' && ref.name === 'starmapstar') fn = starmapstar;
  else {
    if (!/^(file|data|node):/.test(ref.module)) throw new TypeError(`cannot run ${ref.module}.${ref.name} in a Node worker (a Python function needs a Python worker)`);
    const ns = (await import(ref.module)) as Record<string, unknown>;
    fn = ns[ref.name];
    const def = ns.default as Record<string, unknown> | undefined;
    if (typeof fn !== 'function' && def !== null && typeof def === 'object' && Object.hasOwn(def, ref.name)) fn = def[ref.name];
  }
  if (typeof fn !== 'function') throw new TypeError(`module ${ref.module} has no exported function '${ref.name}'`);
  imported.set(key, fn as Fn);
  return fn as Fn;
}

/** Calls `fn(*args, **kwargs)`: a JavaScript function gets non-empty kwargs as its last argument. */
async function call(fn: Fn, args: readonly unknown[], kwargs: unknown): Promise<unknown> {
  const kw = kwargs instanceof Map ? Object.fromEntries(kwargs) : kwargs;
  const hasKw = kw !== null && typeof kw === 'object' && Object.keys(kw).length > 0;
  return hasKw ? await fn(...args, kw) : await fn(...args);
}

/** Runs `func` on each item of a chunk, one after the other; `spread`: each item is an argument list. */
async function runChunk(pair: unknown, spread: boolean): Promise<unknown[]> {
  const [ref, chunk] = pair as [unknown, unknown[]];
  const fn = await resolveFunction(ref);
  const out: unknown[] = [];
  for (const x of chunk) out.push(await (spread ? fn(...(x as unknown[])) : fn(x)));
  return out;
}

/** billiard's `mapstar((func, chunk))`: `[func(x) for x in chunk]`. */
const mapstar = (pair: unknown): Promise<unknown[]> => runChunk(pair, false);

/** billiard's `starmapstar((func, chunk))`: `[func(*x) for x in chunk]`. */
const starmapstar = (pair: unknown): Promise<unknown[]> => runChunk(pair, true);

function reprOf(v: unknown): string {
  try {
    return typeof v === 'string' ? `'${v}'` : String(v);
  } catch {
    return '<unprintable>';
  }
}

/** The READY payload; a result that cannot be pickled becomes a MaybeEncodingError failure (§2.6). */
function readyPayload(job: unknown, i: unknown, ok: boolean, value: unknown, inqWFd: number): Uint8Array {
  try {
    return dumps(tuple(READY, tuple(job, i, tuple(ok, ok ? value : exceptionInfoObject(value)), inqWFd)));
  } catch (e) {
    const err = new MaybeEncodingError(reprOf(e), reprOf(value));
    return dumps(tuple(READY, tuple(job, i, tuple(false, exceptionInfoObject(err)), inqWFd)));
  }
}

/**
 * The body of a pool worker process. `initializer` is a global reference
 * (or null) called as `initializer(...initargs)` before the first job;
 * `maxtasks` null means no limit.
 */
export async function poolWorker(inq: SimpleQueue, outq: SimpleQueue, initializer: PyGlobal | null, initargs: unknown[] | PyTuple | null, maxtasks: number | null): Promise<void> {
  const inqWFd = inq.writer.fileno();
  inq.writer.close();
  outq.reader.close();
  ownOutqueue = outq;
  // An initializer that throws ends the worker with exit code 1 and no frame written (as billiard's).
  if (initializer !== null) await call(await resolveFunction(initializer), [...(initargs ?? [])], null);

  let completed = 0;
  let exitcode = EX_OK;
  for (;;) {
    if (maxtasks !== null && completed >= maxtasks) {
      exitcode = EX_RECYCLE;
      break;
    }
    let payload: Uint8Array;
    try {
      payload = await inq.getPayload();
    } catch {
      break; // EOF (the pool is gone) or a broken pipe: an orderly exit
    }
    let msg: unknown;
    try {
      msg = loads(payload);
    } catch (e) {
      process.stderr.write(`billiard-ts pool worker ${process.pid}: undecodable job frame: ${String(e)}\n`);
      exitcode = EX_FAILURE;
      break;
    }
    if (msg === null) break;
    if (!(msg instanceof PyTuple) || msg.length !== 2 || msg[0] !== TASK || !(msg[1] instanceof PyTuple) || msg[1].length !== 5) {
      process.stderr.write(`billiard-ts pool worker ${process.pid}: not a TASK message\n`);
      exitcode = EX_FAILURE;
      break;
    }
    const [job, i, func, args, kwargs] = msg[1] as unknown as [unknown, unknown, unknown, unknown, unknown];
    await outq.put(tuple(ACK, tuple(job, i, monotonic(), process.pid, null)));
    let ok: boolean;
    let value: unknown;
    try {
      const fn = await resolveFunction(func);
      value = await call(fn, Array.isArray(args) ? args : [args], kwargs);
      ok = true;
    } catch (e) {
      value = e;
      ok = false;
    }
    await outq.sendPayload(readyPayload(job, i, ok, value, inqWFd));
    completed++;
  }
  try {
    await outq.put(tuple(DEATH, tuple(process.pid, exitcode)));
  } catch {
    // the pool is gone
  }
  if (exitcode !== EX_OK) process.exit(exitcode);
}
