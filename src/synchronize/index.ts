/**
 * The sync layer's synchronisation primitives (spec/api.md §6). Importing
 * this module registers how they pickle for children (reduce.ts).
 */
import './reduce.js';

export { constructEmpty, isRebuilding, RECURSIVE_MUTEX, SEM_VALUE_MAX, SEMAPHORE, SemLock, semaphoreName, SPIN_MS, type AcquireOptions } from './semlock.js';
export {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  Event,
  Lock,
  RLock,
  Semaphore,
  setBarrierMemory,
  setOwnerName,
  type BarrierMemory,
  type Held,
  type LockLike,
} from './synchronize.js';
export { notSpawning, setBarrierMemoryReducer, setBarrierMemoryRebuilder } from './reduce.js';
export { ownedSemaphores } from './tracker.js';
