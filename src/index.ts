/**
 * billiard-ts: Python's billiard for Node.js. This entry point is the public
 * API; each layer lives in its own folder under src/.
 */

export * from './pickle/index.js';
export * from './connection/index.js';
export * from './process/index.js';
export {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  Event,
  Lock,
  RECURSIVE_MUTEX,
  RLock,
  SEM_VALUE_MAX,
  SEMAPHORE,
  SemLock,
  Semaphore,
  type AcquireOptions,
  type Held,
  type LockLike,
} from './synchronize/index.js';
export {
  Array,
  CArray,
  copy,
  CValue,
  RawArray,
  RawValue,
  Synchronized,
  SynchronizedArray,
  SynchronizedBase,
  synchronized,
  SynchronizedString,
  TYPECODES,
  Value,
  type Typecode,
  type ValueOptions,
} from './sharedctypes/index.js';
export { Empty, Full, JoinableQueue, Queue, SimpleQueue, type GetOptions, type PutOptions, type QueueOptions } from './queues/index.js';
export {
  ApplyResult,
  currentTask,
  ExceptionInfo,
  IMapIterator,
  MapResult,
  MaybeEncodingError,
  Pool,
  RemoteTraceback,
  type ApplyOptions,
  type IMapOptions,
  type MapOptions,
  type PoolEvents,
  type PoolFunction,
  type PoolOptions,
  type PythonWorkers,
  type PoolStats,
  type SubmitOptions,
  type TaskContext,
  type TimeoutCallback,
  type TimeSummary,
} from './pool/index.js';
export * from './managers/index.js';
export {
  allowConnectionPickling,
  Context,
  cpuCount,
  forkingEnable,
  forkingIsEnabled,
  forkserver,
  freezeSupport,
  getAllStartMethods,
  getContext,
  getStartMethod,
  setExecutable,
  setForkserverPreload,
  setStartMethod,
  type StartMethod,
} from './context.js';
export { __version__, VERSION } from './version.js';
/** `billiard.util`: the logging helpers (`util.subDebug`, `util.info`...) and level constants. */
export * as util from './util.js';
