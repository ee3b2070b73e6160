/**
 * How queues travel to children (spec/api.md §5), only while spawning, as
 * billiard pickles them: `billiard.queues.<Class>` by NEWOBJ with
 * billiard's `__getstate__` tuple, so that a Python child rebuilds a
 * billiard queue over the same pipe and semaphores.
 *
 * - Queue: `(ignore_epipe, maxsize, reader, writer, rlock, wlock, sem, opid)`
 * - JoinableQueue: that, then `(cond, unfinished_tasks)`
 * - SimpleQueue: `(reader, writer, rlock, wlock)`
 */

import type { Connection } from '../connection/index.js';
import { defaultRegistry, PyGlobal, PyObject, setState, tuple, type PickleRegistry } from '../pickle/index.js';
import { addChildRebuilders, addSpawnReducers } from '../process/reduction.js';
import { constructEmpty, notSpawning, type BoundedSemaphore, type Condition, type Lock, type Semaphore } from '../synchronize/index.js';
import { JoinableQueue, Queue, SimpleQueue } from './queues.js';

const MODULE = 'billiard.queues';

for (const Cls of [Queue, JoinableQueue, SimpleQueue]) {
  defaultRegistry.registerReducer(Cls as abstract new () => object, () => notSpawning(Cls.name));
}

function newobj(name: string, state: unknown): PyObject {
  const o = new PyObject('newobj', new PyGlobal(MODULE, name), tuple());
  o.state = state;
  return o;
}

function queueState(q: Queue): unknown[] {
  return [q.ignoreEpipe, q.maxsize, q.reader, q.writer, q.rlock, q.wlock, q.sem, q.opid];
}

addSpawnReducers(import.meta.url, (registry: PickleRegistry) => {
  registry.registerReducer(Queue, (q: Queue) => newobj('Queue', tuple(...queueState(q))));
  registry.registerReducer(JoinableQueue, (q: JoinableQueue) => newobj('JoinableQueue', tuple(...queueState(q), q.cond, q.unfinishedTasks)));
  registry.registerReducer(SimpleQueue, (q: SimpleQueue) => newobj('SimpleQueue', tuple(q.reader, q.writer, q.rlock, q.wlock)));
});

type QueueState = [boolean, number, Connection, Connection, Lock, Lock, BoundedSemaphore, number];

function setQueueState(q: Queue, state: unknown[]): void {
  const [ignoreEpipe, maxsize, reader, writer, rlock, wlock, sem, opid] = state as QueueState;
  Object.assign(q, { ignoreEpipe: ignoreEpipe === true, maxsize, reader, writer, rlock, wlock, sem, opid });
}

function withState<T extends object>(obj: T, apply: (state: unknown[]) => void): T {
  Object.defineProperty(obj, setState, {
    value: (state: unknown) => {
      if (!Array.isArray(state)) throw new TypeError('a queue state is a tuple');
      apply(state);
    },
  });
  return obj;
}

addChildRebuilders(import.meta.url, (registry: PickleRegistry) => {
  for (const module of [MODULE, 'multiprocessing.queues']) {
    registry.register(module, 'Queue', {
      newobj: () => {
        const q = constructEmpty(Queue as new () => Queue);
        return withState(q, (s) => setQueueState(q, s));
      },
    });
    registry.register(module, 'JoinableQueue', {
      newobj: () => {
        const q = constructEmpty(JoinableQueue as new () => JoinableQueue);
        return withState(q, (s) => {
          setQueueState(q, s.slice(0, -2));
          const [cond, unfinished] = s.slice(-2) as [Condition, Semaphore];
          Object.assign(q, { cond, unfinishedTasks: unfinished });
        });
      },
    });
    registry.register(module, 'SimpleQueue', {
      newobj: () => {
        const q = constructEmpty(SimpleQueue as new () => SimpleQueue);
        return withState(q, (s) => {
          const [reader, writer, rlock, wlock] = s as [Connection, Connection, Lock, Lock];
          Object.assign(q, { reader, writer, rlock, wlock });
        });
      },
    });
  }
});
