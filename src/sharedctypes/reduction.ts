/**
 * How shared values travel to a child started with `'spawn'` or
 * `'forkserver'` (spec/api.md §7.3 and §10), in billiard's own pickle
 * shapes, so that a Python child and a Node child rebuild them alike:
 *
 * | object | pickles as |
 * | --- | --- |
 * | a raw value (`CValue`) | `billiard.sharedctypes.rebuild_ctype(ctypes.c_int, wrapper, None)` |
 * | a raw array (`CArray`) | `billiard.sharedctypes.rebuild_ctype(ctypes.c_int, wrapper, length)` |
 * | its `BufferWrapper` | `billiard.heap.BufferWrapper` by NEWOBJ, state `{'_state': ((arena, start, stop), size)}` |
 * | an `Arena` | `billiard.heap.rebuild_arena(size, billiard.popen_spawn_posix._DupFd(...))`, the `_DupFd` by NEWOBJ with state `{'fd': childFd}` |
 * | a synchronized wrapper | `billiard.sharedctypes.synchronized(obj, lock)` |
 *
 * (verified byte for byte against billiard 4.1 pickling the same objects
 * while spawning: fixtures/sharedctypes/). Only while spawning: anywhere
 * else, pickling one of them throws billiard's `RuntimeError('c_int objects
 * should only be shared between processes through inheritance')`, from the
 * reducers this module registers in the default registry.
 */

import { defaultRegistry } from '../pickle/default-registry.js';
import { EMPTY_TUPLE, PyGlobal, PyObject, setState } from '../pickle/types.js';
import type { PickleRegistry, ReduceValue } from '../pickle/index.js';
import { RuntimeError, TypeError, ValueError } from './errors.js';
import { Arena, BufferWrapper } from './heap.js';
import { registerDupFd } from '../process/reduction.js';
import { CArray, CValue, rebuildShared, synchronized, SynchronizedBase, type SyncLock } from './sharedctypes.js';
import { typecodeOfCtype, TYPECODES, type Typecode } from './typecodes.js';

const kRebuildCtype = new PyGlobal('billiard.sharedctypes', 'rebuild_ctype');
const kSynchronized = new PyGlobal('billiard.sharedctypes', 'synchronized');
const kBufferWrapper = new PyGlobal('billiard.heap', 'BufferWrapper');
const kRebuildArena = new PyGlobal('billiard.heap', 'rebuild_arena');
const kDupFd = new PyGlobal('billiard.popen_spawn_posix', '_DupFd');

/** `ctypes.<name>` for each ctype name of the table, one global each (pickles memoize them). */
const CTYPE_GLOBALS: ReadonlyMap<string, PyGlobal> = new Map(Object.values(TYPECODES).map((info) => [info.ctype, new PyGlobal('ctypes', info.ctype)]));

function ctypeGlobal(typecode: Typecode): PyGlobal {
  return CTYPE_GLOBALS.get(TYPECODES[typecode].ctype)!;
}

/** billiard's `assert_spawning(obj)`: what pickling a shared object outside a child's start-up raises. */
function notSpawning(typeName: string): RuntimeError {
  return new RuntimeError(`${typeName} objects should only be shared between processes through inheritance`, { code: 'NOT_SPAWNING' });
}

/** The Python type name of a shared object, for billiard's messages (`c_int`, `c_int_Array_3`, `Synchronized`). */
function typeNameOf(obj: object): string {
  if (obj instanceof CValue) return obj.ctype;
  if (obj instanceof CArray) return obj.typeName;
  return obj.constructor.name;
}

function reduceValue(v: CValue): ReduceValue {
  return { callable: kRebuildCtype, args: [ctypeGlobal(v.typecode), v.wrapper, null] };
}

function reduceArray(a: CArray): ReduceValue {
  return { callable: kRebuildCtype, args: [ctypeGlobal(a.typecode), a.wrapper, a.length] };
}

function reduceWrapper(w: BufferWrapper): ReduceValue {
  return { kind: 'newobj', callable: kBufferWrapper, args: [], state: { __proto__: null, _state: w.state } };
}

function reduceSynchronized(s: SynchronizedBase): ReduceValue {
  return { callable: kSynchronized, args: [s.getObj(), s.getLock()] };
}

// Outside a child's start-up, shared objects refuse to pickle, as billiard's do.
defaultRegistry.registerReducer(CValue, (v: CValue) => {
  throw notSpawning(typeNameOf(v));
});
defaultRegistry.registerReducer(CArray, (a: CArray) => {
  throw notSpawning(typeNameOf(a));
});
defaultRegistry.registerReducer(SynchronizedBase, (s: SynchronizedBase) => {
  throw notSpawning(typeNameOf(s));
});
defaultRegistry.registerReducer(Arena, () => {
  throw notSpawning('Arena');
});
defaultRegistry.registerReducer(BufferWrapper, reduceWrapper);

/**
 * Makes `registry` (a spawn registry, which pickles a child's start-up
 * data) pickle shared objects in billiard's spawn form. Each arena's
 * descriptor is passed to the child: `allocateChildFd(fd, arena)` returns
 * the number the child will have it under (it is called once per arena per
 * pickle; the caller dedupes by `owner` across pickles if it wants to),
 * and the pickle carries `_DupFd` with that number.
 */
export function registerSpawnReducers(registry: PickleRegistry, allocateChildFd: (fd: number, owner: object) => number): void {
  registry.registerReducer(CValue, reduceValue);
  registry.registerReducer(CArray, reduceArray);
  registry.registerReducer(SynchronizedBase, reduceSynchronized);
  registry.registerReducer(BufferWrapper, reduceWrapper);
  registry.registerReducer(Arena, (arena: Arena) => {
    // billiard's message, its missing space included.
    if (arena.fd === -1) throw new ValueError('Arena is unpicklable becauseforking was enabled when it was created');
    const dup = new PyObject('newobj', kDupFd, EMPTY_TUPLE);
    dup.state = { __proto__: null, fd: allocateChildFd(arena.fd, arena) };
    return { callable: kRebuildArena, args: [arena.size, dup] };
  });
}

/** The descriptor number a `_DupFd` (or a plain number) carries. */
function childFdOf(dupfd: unknown): number {
  const fd = typeof dupfd === 'number' ? dupfd : (dupfd as { fd?: unknown } | null)?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw new TypeError('rebuild_arena needs a _DupFd with a descriptor');
  return fd;
}

/** billiard's `rebuild_ctype(type_, wrapper, length)`, for the ctypes classes of the typecode table. */
function rebuildCtype(type: unknown, wrapper: unknown, length: unknown): unknown {
  const typecode = type instanceof PyGlobal && type.module === 'ctypes' ? typecodeOfCtype(type.name) : undefined;
  if (typecode === undefined) {
    const name = type instanceof PyGlobal ? type.qualifiedName : String(type);
    throw new TypeError(`rebuild_ctype: billiard-ts shares only the ctypes types of its typecodes, not ${name}`);
  }
  if (!(wrapper instanceof BufferWrapper)) throw new TypeError('rebuild_ctype needs a BufferWrapper');
  if (length !== null && length !== undefined && (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0)) {
    throw new TypeError('rebuild_ctype: length must be None or a non-negative int');
  }
  return rebuildShared(typecode, wrapper, length ?? null);
}

/**
 * Makes `registry` (a child's) rebuild shared objects from billiard's spawn
 * form, from `billiard.*` and `multiprocessing.*` pickles alike: an arena
 * maps the descriptor `fdFor(childFd)` (the number the pickle names, turned
 * into this process's descriptor), a `BufferWrapper` takes its state, and
 * `rebuild_ctype` gives a `CValue` or `CArray` over it; `synchronized`
 * wraps one with the lock the registry rebuilt (the synchronize layer's).
 * `_DupFd` is registered only if the registry does not know it yet (the
 * process layer's child registry does).
 */
export function registerChildRebuilders(registry: PickleRegistry, fdFor: (childFd: number) => number): void {
  for (const pkg of ['billiard', 'multiprocessing']) {
    registry.register(`${pkg}.heap`, 'rebuild_arena', {
      call: (args) => {
        const [size, dupfd] = args;
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw new TypeError('rebuild_arena needs a positive size');
        return new Arena(size, fdFor(childFdOf(dupfd)));
      },
    });
    registry.register(`${pkg}.heap`, 'BufferWrapper', { newobj: () => BufferWrapper.blank() });
    registry.register(`${pkg}.sharedctypes`, 'rebuild_ctype', { call: (args) => rebuildCtype(args[0], args[1], args[2]) });
    registry.register(`${pkg}.sharedctypes`, 'synchronized', {
      call: (args) => {
        const obj = args[0];
        if (!(obj instanceof CValue || obj instanceof CArray)) throw new TypeError('synchronized() needs a shared value or array');
        return synchronized(obj, (args[1] ?? null) as SyncLock | null);
      },
    });
  }
  registerDupFd(registry);
}
