/**
 * The billiard pool protocol (spec/pool.md §2): message kinds, the frames a
 * pool and a worker exchange, and billiard's `ExceptionInfo`, the failure
 * value of a READY. Shared by the pool (pool.ts) and the worker (worker.ts).
 *
 * - TASK  `(2, (job, i, func, args, kwargs))`, pool -> worker; `None` ends the worker
 * - ACK   `(0, (job, i, time_accepted, pid, synqW_fd))`, worker -> pool
 * - READY `(1, (job, i, (ok, value_or_ExceptionInfo), inqW_fd))`, worker -> pool
 * - DEATH `(4, (pid, exitcode))`, worker -> pool, its last message
 *
 * A JavaScript function travels as a global reference, as a Python one does:
 * module = the URL of the module that exports it, name = its export name
 * (found as Process targets are, src/process/locate.ts).
 */

import { BilliardError } from '../pickle/errors.js';
import { PythonException } from '../pickle/exceptions.js';
import { HEADER_SIZE, writeHeader } from '../connection/frames.js';
import { defaultRegistry, dumps, Pickler, PyFloat, PyGlobal, PyObject, setState, tuple, type PickleRegistry, type PyTuple } from '../pickle/index.js';
import { f64be } from '../pickle/unpickler.js';
import { locateFunction } from '../process/locate.js';

export const ACK = 0;
export const READY = 1;
export const TASK = 2;
export const NACK = 3;
export const DEATH = 4;
export const EX_OK = 0;
export const EX_FAILURE = 1;
export const EX_RECYCLE = 155;

/** billiard's chunk runners, sent as the function of map and starmap chunks. */
export const MAPSTAR = new PyGlobal('billiard.pool', 'mapstar');
export const STARMAPSTAR = new PyGlobal('billiard.pool', 'starmapstar');

/** The fields of the ACK that {@link decodeAck} read last. */
export const ackFields: { job: number; i: number | null; time: number } = { job: 0, i: null, time: 0 };

let at = 0;

/** A BININT1, BININT2 or BININT at `at` (advancing past it), or NaN (`at` unspecified then). */
function intAt(b: Uint8Array): number {
  const op = b[at];
  if (op === 0x4b && at + 2 <= b.length) {
    at += 2;
    return b[at - 1]!;
  }
  if (op === 0x4d && at + 3 <= b.length) {
    at += 3;
    return b[at - 2]! | (b[at - 1]! << 8);
  }
  if (op === 0x4a && at + 5 <= b.length) {
    at += 5;
    return b[at - 4]! | (b[at - 3]! << 8) | (b[at - 2]! << 16) | (b[at - 1]! << 24);
  }
  return NaN;
}

/** `None` or an int at `at`: null, the int, or NaN. */
function intOrNoneAt(b: Uint8Array): number | null {
  if (b[at] === 0x4e) {
    at++;
    return null;
  }
  return intAt(b);
}

/**
 * Reads an ACK frame's payload without the unpickler when it has the bytes
 * every pickler here writes for one (a billiard-ts worker's, and CPython's
 * at protocols 4 and 5):
 *
 *   [PROTO 4|5] [FRAME n] BININT1 0 MARK job i BINFLOAT(time) pid fd TUPLE MEMOIZE TUPLE2 MEMOIZE STOP
 *
 * job and pid ints, i and fd ints or None. Fills {@link ackFields} and
 * returns true; returns false for any other bytes, which the caller
 * unpickles as usual (so nothing the unpickler accepts is refused). An ACK
 * through the unpickler costs about 600 ns and two frozen tuples.
 */
export function decodeAck(b: Uint8Array): boolean {
  if (!messageStart(b, ACK)) return false;
  const n = b.length;
  const job = intAt(b);
  if (job !== job) return false;
  const i = intOrNoneAt(b);
  if (i !== i || b[at] !== 0x47 || at + 9 > n) return false;
  const time = f64be(b, at + 1);
  at += 9;
  const pid = intAt(b);
  if (pid !== pid) return false;
  const fd = intOrNoneAt(b);
  if (fd !== fd || !endsAt(b, TUPLE_END)) return false;
  ackFields.job = job;
  ackFields.i = i;
  ackFields.time = time;
  return true;
}

/** The fields of the READY that {@link decodeReady} read last. */
export const readyFields: { job: number; i: number | null; value: unknown; fd: number | null } = { job: 0, i: null, value: null, fd: null };

/**
 * Reads a successful READY's payload without the unpickler when its value is
 * None, a bool, an int of up to 32 bits or a float:
 *
 *   [PROTO 4|5] [FRAME n] BININT1 1 MARK job i NEWTRUE value TUPLE2 MEMOIZE fd TUPLE MEMOIZE TUPLE2 MEMOIZE STOP
 *
 * with the value as the unpickler's defaults give it (an integral float as
 * a PyFloat). Fills {@link readyFields} and returns true; false for any
 * other bytes, which the caller unpickles as usual.
 */
export function decodeReady(b: Uint8Array): boolean {
  if (!messageStart(b, READY)) return false;
  const job = intAt(b);
  if (job !== job) return false;
  const i = intOrNoneAt(b);
  if (i !== i || b[at] !== 0x88) return false;
  at++;
  let value: unknown;
  const op = b[at];
  if (op === 0x4e || op === 0x88 || op === 0x89) {
    value = op === 0x4e ? null : op === 0x88; // NONE, NEWTRUE, NEWFALSE
    at++;
  } else if (op === 0x47) {
    if (at + 9 > b.length) return false;
    const f = f64be(b, at + 1);
    value = Number.isInteger(f) ? new PyFloat(f) : f;
    at += 9;
  } else {
    value = intAt(b);
    if (value !== value) return false;
  }
  if (b[at] !== 0x86 || b[at + 1] !== 0x94) return false;
  at += 2;
  const fd = intOrNoneAt(b);
  if (fd !== fd || !endsAt(b, TUPLE_END)) return false;
  readyFields.job = job;
  readyFields.i = i;
  readyFields.value = value;
  readyFields.fd = fd;
  return true;
}

/** How a pool message's body ends: TUPLE MEMOIZE TUPLE2 MEMOIZE STOP. */
const TUPLE_END = Uint8Array.of(0x74, 0x94, 0x86, 0x94, 0x2e);

/** The rest of `b`, from `at`, is exactly `tail`. */
function endsAt(b: Uint8Array, tail: Uint8Array): boolean {
  if (at + tail.length !== b.length) return false;
  for (let k = 0; k < tail.length; k++) if (b[at + k] !== tail[k]) return false;
  return true;
}

/**
 * `[PROTO 4|5] [FRAME n] BININT1 kind MARK` at the start of `b` (a FRAME's
 * 8-byte length covering exactly the rest): `at` is then just past MARK.
 */
function messageStart(b: Uint8Array, kind: number): boolean {
  const n = b.length;
  at = 0;
  if (b[0] === 0x80) {
    if (n < 2 || (b[1] !== 4 && b[1] !== 5)) return false;
    at = 2;
  }
  if (b[at] === 0x95) {
    if (at + 9 > n || b[at + 1]! + b[at + 2]! * 0x100 !== n - at - 9 || b[at + 3] !== 0 || b[at + 4] !== 0 || b[at + 5] !== 0 || b[at + 6] !== 0 || b[at + 7] !== 0 || b[at + 8] !== 0) return false;
    at += 9;
  }
  if (b[at] !== 0x4b || b[at + 1] !== kind || b[at + 2] !== 0x28) return false;
  at += 3;
  return true;
}

/** The job id and part index {@link decodeJobHead} read last. */
export const jobHead: { job: number; i: number | null } = { job: 0, i: null };

/**
 * Reads the job id and part index at the head of a TASK frame's payload
 * (`(TASK, (job, i, func, args, kwargs))`, as every pickler here writes it:
 * `[PROTO] [FRAME n] BININT1 2 MARK job i ...`) without unpickling the rest,
 * for a worker whose job will not load (over a load limit): it can then
 * fail that job rather than die with it. Fills {@link jobHead} and returns
 * true, or returns false for any other bytes.
 */
export function decodeJobHead(b: Uint8Array): boolean {
  const n = b.length;
  at = 0;
  if (b[0] === 0x80) at = 2;
  if (b[at] === 0x95) at += 9;
  if (at + 3 > n || b[at] !== 0x4b || b[at + 1] !== TASK || b[at + 2] !== 0x28) return false;
  at += 3;
  const job = intAt(b);
  if (job !== job) return false;
  const i = intOrNoneAt(b);
  if (i !== i) return false;
  jobHead.job = job;
  jobHead.i = i;
  return true;
}

/**
 * A worker's ACK and plain READY frames, written without tuples or the
 * pickler: the same bytes `Connection.send(tuple(ACK, tuple(...)))` writes
 * (4-byte length header, protocol 4, one FRAME), which decodeAck and
 * decodeReady read. Each writes its frame at the start of
 * {@link frameScratch} (valid until the next call) and returns its length,
 * or 0 when a field is not of the kinds written here (an int beyond 32
 * bits, a non-finite float, any other value): the caller then pickles the
 * message as usual. Five frozen tuples and two general dumps per
 * job in a worker, before.
 */
const scratch = new Uint8Array(96);
/** The buffer encodeAckFrame and encodeReadyFrame write their frame into, from byte 0. */
export const frameScratch: Uint8Array = scratch;
const scratchView = new DataView(scratch.buffer);
let w = 0;

/** BININT1, BININT2 or BININT, as the pickler chooses them; false beyond 32 bits. */
function putInt(v: number): boolean {
  if (v >= 0 && v < 0x100) {
    scratch[w] = 0x4b;
    scratch[w + 1] = v;
    w += 2;
  } else if (v >= 0 && v < 0x10000) {
    scratch[w] = 0x4d;
    scratch[w + 1] = v & 0xff;
    scratch[w + 2] = v >>> 8;
    w += 3;
  } else if (v >= -0x80000000 && v <= 0x7fffffff) {
    scratch[w] = 0x4a;
    scratchView.setInt32(w + 1, v, true);
    w += 5;
  } else return false;
  return true;
}

/** A number as the pickler writes it: an int (an integral value, not -0) or a BINFLOAT; false for what goes elsewhere. */
function putNumber(v: number): boolean {
  if (Number.isInteger(v) && !Object.is(v, -0)) return putInt(v);
  if (!Number.isFinite(v)) return false;
  scratch[w] = 0x47;
  scratchView.setFloat64(w + 1, v, false);
  w += 9;
  return true;
}

function putIntOrNone(v: number | null): boolean {
  if (v === null) {
    scratch[w++] = 0x4e;
    return true;
  }
  return Number.isInteger(v) && !Object.is(v, -0) && putInt(v);
}

/** The header, PROTO 4, FRAME and `BININT1 kind MARK`; the body follows at `w`. */
function startMessage(kind: number): void {
  scratch[4] = 0x80;
  scratch[5] = 4;
  scratch[6] = 0x95;
  scratch[15] = 0x4b;
  scratch[16] = kind;
  scratch[17] = 0x28;
  w = 18;
}

/** TUPLE MEMOIZE TUPLE2 MEMOIZE STOP, then the lengths: the finished frame's length. */
function endMessage(): number {
  for (let k = 0; k < TUPLE_END.length; k++) scratch[w + k] = TUPLE_END[k]!;
  w += TUPLE_END.length;
  scratchView.setInt32(0, w - 4, false);
  scratchView.setUint32(7, w - 15, true);
  scratchView.setUint32(11, 0, true);
  return w;
}

/** Writes the ACK `(0, (job, i, time, pid, fd))` frame; its length, or 0. */
export function encodeAckFrame(job: number, i: number | null, time: number, pid: number, fd: number | null): number {
  startMessage(ACK);
  if (!putIntOrNone(job) || !putIntOrNone(i) || !putNumber(time) || !putIntOrNone(pid) || !putIntOrNone(fd)) return 0;
  return endMessage();
}

/** Writes the READY `(1, (job, i, (True, value), fd))` frame of a None, bool, 32-bit int or finite float value; its length, or 0. */
export function encodeReadyFrame(job: number, i: number | null, value: unknown, fd: number | null): number {
  startMessage(READY);
  if (!putIntOrNone(job) || !putIntOrNone(i)) return 0;
  scratch[w++] = 0x88; // NEWTRUE
  if (value === null) scratch[w++] = 0x4e;
  else if (typeof value === 'boolean') scratch[w++] = value ? 0x88 : 0x89;
  else if (typeof value !== 'number' || !putNumber(value)) return 0;
  scratch[w] = 0x86; // TUPLE2
  scratch[w + 1] = 0x94; // MEMOIZE
  w += 2;
  if (!putIntOrNone(fd)) return 0;
  return endMessage();
}

/** CLOCK_MONOTONIC in seconds: Python's `time.monotonic()`, as ACK carries it. */
export function monotonic(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** The reference a function travels as: a `pyfunc(...)` as is, a JS function by its module URL and export name. */
export function funcRef(fn: unknown): PyGlobal {
  if (fn instanceof PyGlobal) return fn;
  const ref = locateFunction(fn);
  return new PyGlobal(ref.url, ref.name);
}

/** The payload of a TASK frame. */
export function encodeTask(job: number, i: number | null, func: PyGlobal, args: readonly unknown[], kwargs: Record<string, unknown> | null | undefined): Uint8Array {
  return dumps(taskMessage(job, i, func, args, kwargs));
}

/** The kwargs of a call without any: one shared empty dict. */
const NO_KWARGS: Record<string, unknown> = Object.freeze(Object.create(null) as Record<string, unknown>);

function taskMessage(job: number, i: number | null, func: PyGlobal, args: readonly unknown[], kwargs: Record<string, unknown> | null | undefined): PyTuple {
  return tuple(TASK, tuple(job, i, func, tuple(...args), kwargs ?? NO_KWARGS));
}

let framePickler: Pickler | null = null;

/**
 * The job message as a Connection frame, its 4-byte length header first:
 * the pickle is written after the header's room in the pickler's buffer and
 * copied out once (encodeTask's bytes with a header, in one allocation).
 */
export function encodeTaskFrame(job: number, i: number | null, func: PyGlobal, args: readonly unknown[], kwargs: Record<string, unknown> | null | undefined): Uint8Array {
  const message = taskMessage(job, i, func, args, kwargs);
  // A reduce method among the arguments could submit a job from inside this dump.
  const pickler = framePickler !== null && !framePickler.busy ? framePickler : (framePickler = new Pickler());
  const view = pickler.dump(message, HEADER_SIZE);
  writeHeader(view, 0, view.length - HEADER_SIZE);
  return view.slice();
}

/**
 * billiard's `billiard.pool.MaybeEncodingError`: a worker could not pickle a
 * result; `exc` and `value` are repr strings, as billiard stores them.
 */
export class MaybeEncodingError extends BilliardError {
  static override readonly brand: string = 'billiard.pool.MaybeEncodingError';
  readonly exc: string;
  readonly value: string;
  constructor(exc: string, value: string) {
    super(`Error sending result: '${value}'. Reason: '${exc}'.`, { code: 'MAYBE_ENCODING', args: [exc, value] });
    this.exc = exc;
    this.value = value;
  }
}

/** billiard's `RemoteTraceback`: the worker's traceback text, the `cause` of an error that came from a worker. */
export class RemoteTraceback extends BilliardError {
  static override readonly brand: string = 'billiard.einfo.RemoteTraceback';
  constructor(text: string) {
    super(text, { code: 'REMOTE_TRACEBACK', args: [text] });
  }
}

/**
 * billiard's `ExceptionInfo`: what a failed job carries (`error_callback`
 * receives it, as in billiard). `exception` is the error itself, `traceback`
 * the worker's text, `type` the Python class reference.
 */
export class ExceptionInfo {
  type: unknown = null;
  exception: unknown = null;
  traceback = '';
  internal = false;
  constructor(exception?: unknown, traceback?: string) {
    if (exception !== undefined) {
      this.exception = exception;
      this.type = exception instanceof BilliardError ? globalOf(exception.pyType) : null;
    }
    if (traceback !== undefined) this.traceback = traceback;
  }
  [setState](state: unknown): void {
    const get = (k: string): unknown => (state instanceof Map ? state.get(k) : (state as Record<string, unknown> | null)?.[k]);
    if (state === null || typeof state !== 'object') throw new TypeError('an ExceptionInfo state is a dict');
    this.type = get('type') ?? null;
    this.exception = get('exception') ?? null;
    const tb = get('traceback');
    this.traceback = typeof tb === 'string' ? tb : '';
    this.internal = get('internal') === true;
  }
  toString(): string {
    return this.traceback;
  }
}

function globalOf(qualified: string): PyGlobal {
  const dot = qualified.lastIndexOf('.');
  return new PyGlobal(qualified.slice(0, dot), qualified.slice(dot + 1));
}

const kExceptionInfo = new PyGlobal('billiard.einfo', 'ExceptionInfo');
const kRebuildExc = new PyGlobal('billiard.einfo', 'rebuild_exc');

/**
 * An error thrown by a task, as a value that pickles as a Python exception:
 * billiard-ts's own errors and Python's as they are; a JavaScript
 * `TypeError` as `builtins.TypeError`; any other as `builtins.Exception`
 * (its message the one argument).
 */
export function pythonError(e: unknown): BilliardError {
  if (e instanceof BilliardError) return e;
  if (e instanceof Error) {
    const type = e instanceof TypeError ? 'builtins.TypeError' : 'builtins.Exception';
    return new PythonException(type, [e.message]);
  }
  return new PythonException('builtins.Exception', [String(e)]);
}

/** Python-style traceback text for an error (its JS stack inside). */
export function tracebackText(e: unknown, pyType: string): string {
  const stack = e instanceof Error && typeof e.stack === 'string' ? e.stack : String(e);
  const message = e instanceof Error ? e.message : String(e);
  const name = pyType.startsWith('builtins.') ? pyType.slice('builtins.'.length) : pyType;
  const lines = stack
    .split('\n')
    .filter((l) => /^\s+at /.test(l))
    .map((l) => {
      const m = /^\s+at (?:async )?(?:(.*?) \()?(.*?):(\d+):\d+\)?$/.exec(l);
      return m === null ? `  ${l.trim()}` : `  File "${m[2]}", line ${m[3]}, in ${m[1] ?? '<module>'}`;
    });
  return `Traceback (most recent call last):\n${lines.join('\n')}${lines.length ? '\n' : ''}${name}: ${message}\n`;
}

/**
 * billiard's minimal ExceptionInfo form a foreign worker may send (spec/pool.md
 * §2.6): NEWOBJ `billiard.einfo.ExceptionInfo` + BUILD {type, exception:
 * rebuild_exc(exc, quoted text), tb: None, traceback, internal: False}.
 */
export function exceptionInfoObject(e: unknown): PyObject {
  const err = pythonError(e);
  const text = tracebackText(e, err.pyType);
  const rebuilt = new PyObject('reduce', kRebuildExc, tuple(err, `\n"""\n${text}"""`));
  const info = new PyObject('newobj', kExceptionInfo, tuple());
  info.state = { __proto__: null, type: globalOf(err.pyType), exception: rebuilt, tb: null, traceback: text, internal: false };
  return info;
}

/** The registry a pool decodes worker messages with: ExceptionInfo and rebuild_exc become live objects. */
export function poolRegistry(parent: PickleRegistry = defaultRegistry): PickleRegistry {
  const registry = parent.extend();
  registry.register('billiard.einfo', 'ExceptionInfo', { newobj: () => new ExceptionInfo() });
  registry.register('billiard.einfo', 'rebuild_exc', {
    call: (args: PyTuple) => {
      const [exc, text] = args as unknown as [unknown, unknown];
      if (exc instanceof Error && typeof text === 'string' && exc.cause === undefined) {
        Object.defineProperty(exc, 'cause', { value: new RemoteTraceback(text), enumerable: false, writable: true, configurable: true });
      }
      return exc;
    },
  });
  registry.registerError(['billiard.pool.MaybeEncodingError'], (args) => {
    const [exc, value] = args as unknown as [unknown, unknown];
    return new MaybeEncodingError(String(exc), String(value));
  });
  return registry;
}
