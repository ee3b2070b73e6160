/**
 * How the primitives travel to children (spec/api.md §6): only while a
 * child is spawned, as billiard pickles them, so that a Python child
 * rebuilds them with billiard's own classes and a Node child with ours.
 * Anywhere else, pickling one is Python's RuntimeError.
 *
 * - Lock, RLock, Semaphore, BoundedSemaphore: `billiard.synchronize.<Class>`
 *   by NEWOBJ, state `(handle, kind, maxvalue, name)`.
 * - Condition: state `(lock, sleeping_count, woken_count, wait_semaphore)`.
 * - Event: state `{'_cond': cond, '_flag': semaphore}` (its `__dict__`).
 * - Barrier: state `(parties, action, timeout, cond, wrapper)`.
 */

import { defaultRegistry, PyGlobal, PyObject, setState, tuple, type PickleRegistry } from '../pickle/index.js';
import { RuntimeError } from '../process/errors.js';
import { addChildRebuilders, addSpawnReducers } from '../process/reduction.js';
import { constructEmpty, SemLock } from './semlock.js';
import { Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore, type BarrierMemory } from './synchronize.js';

const MODULE = 'billiard.synchronize';

/** billiard's assert_spawning. */
export function notSpawning(name: string): never {
  throw new RuntimeError(`${name} objects should only be shared between processes through inheritance`);
}

function newobj(name: string, state: unknown): PyObject {
  const o = new PyObject('newobj', new PyGlobal(MODULE, name), tuple());
  o.state = state;
  return o;
}

const SEMLOCKS = [Lock, RLock, Semaphore, BoundedSemaphore] as const;

// Outside spawning: RuntimeError, as billiard.
for (const Cls of [...SEMLOCKS, Condition, Event, Barrier]) {
  defaultRegistry.registerReducer(Cls as abstract new () => object, () => notSpawning(Cls.name));
}

/** How a Barrier's shared bytes pickle (the sharedctypes layer's BufferWrapper). @internal */
let reduceBarrierMemory: ((memory: BarrierMemory) => unknown) | null = null;
export function setBarrierMemoryReducer(f: (memory: BarrierMemory) => unknown): void {
  reduceBarrierMemory = f;
}

addSpawnReducers(import.meta.url, (registry: PickleRegistry) => {
  for (const Cls of SEMLOCKS) {
    registry.registerReducer(Cls, (l: SemLock) => newobj(Cls.name, tuple(...l.spawnState())));
  }
  registry.registerReducer(Condition, (c: Condition) => newobj('Condition', tuple(c.lock, c.sleepingCount, c.wokenCount, c.waitSemaphore)));
  registry.registerReducer(Event, (e: Event) => newobj('Event', { __proto__: null, _cond: e.cond, _flag: e.flag }));
  registry.registerReducer(Barrier, (b: Barrier) => {
    if (reduceBarrierMemory === null) notSpawning('Barrier');
    return newobj('Barrier', tuple(b.partiesCount, b.action, b.defaultTimeout, b.cond, reduceBarrierMemory(b.memory)));
  });
});

function field(state: unknown, key: string): unknown {
  if (state instanceof Map) return state.get(key);
  return state !== null && typeof state === 'object' ? (state as Record<string, unknown>)[key] : undefined;
}

/** How a Barrier's shared bytes rebuild in a child (a BufferWrapper gives its memory). @internal */
let barrierMemoryOf: ((wrapper: unknown) => BarrierMemory) | null = null;
export function setBarrierMemoryRebuilder(f: (wrapper: unknown) => BarrierMemory): void {
  barrierMemoryOf = f;
}

addChildRebuilders(import.meta.url, (registry: PickleRegistry) => {
  for (const module of [MODULE, 'multiprocessing.synchronize']) {
    for (const Cls of SEMLOCKS) {
      registry.register(module, Cls.name, { newobj: () => constructEmpty(Cls as new () => SemLock) });
    }
    registry.register(module, 'Condition', {
      newobj: () => {
        const c = constructEmpty(Condition as new () => Condition);
        Object.defineProperty(c, setState, {
          value: (state: unknown) => {
            const [lock, sleeping, woken, waitSem] = state as [Lock | RLock, Semaphore, Semaphore, Semaphore];
            Object.assign(c, { lock, sleepingCount: sleeping, wokenCount: woken, waitSemaphore: waitSem });
          },
        });
        return c;
      },
    });
    registry.register(module, 'Event', {
      newobj: () => {
        const e = constructEmpty(Event as new () => Event);
        Object.defineProperty(e, setState, {
          value: (state: unknown) => {
            // BUILD of a __dict__ (maybe with slots: (dict, None)).
            const dict = Array.isArray(state) ? state[0] : state;
            Object.assign(e, { cond: field(dict, '_cond'), flag: field(dict, '_flag') });
          },
        });
        return e;
      },
    });
    registry.register(module, 'Barrier', {
      newobj: () => {
        const b = constructEmpty(Barrier as unknown as new () => Barrier);
        Object.defineProperty(b, setState, {
          value: (state: unknown) => {
            const [parties, action, timeout, cond, wrapper] = state as [number, null, number | null, Condition, unknown];
            if (barrierMemoryOf === null) throw new TypeError('Barrier needs the sharedctypes layer');
            Object.assign(b, { partiesCount: parties, action, defaultTimeout: timeout, cond, memory: barrierMemoryOf(wrapper) });
          },
        });
        return b;
      },
    });
  }
});
