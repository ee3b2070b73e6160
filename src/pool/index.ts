/** billiard's pool (spec/pool.md): `Pool`, its results, the worker loop and the wire protocol. */

import { Pool as PoolClass, type PoolOptions } from './pool.js';

export {
  ApplyResult,
  IMapIterator,
  MapResult,
  type ApplyOptions,
  type IMapOptions,
  type MapOptions,
  type PoolEvents,
  type PoolFunction,
  type PoolOptions,
  type PythonWorkers,
  type PoolStats,
  type SubmitOptions,
  type TimeoutCallback,
  type TimeSummary,
} from './pool.js';
export { currentTask, type TaskContext } from './worker.js';
export { ACK, DEATH, EX_FAILURE, EX_OK, EX_RECYCLE, ExceptionInfo, MaybeEncodingError, NACK, READY, RemoteTraceback, TASK } from './protocol.js';

/**
 * billiard's `Pool(...)` is a factory; here `Pool({ processes: 4 })` and
 * `new Pool({ processes: 4 })` both make a pool of the one class, so
 * `instanceof Pool`, subclassing (`class MyPool extends Pool`) and the static
 * members are those of the class.
 */
export const Pool: typeof PoolClass & ((options?: PoolOptions) => PoolClass) = new Proxy(PoolClass, {
  apply: (target, _this, args: [PoolOptions?]) => new target(...args),
}) as typeof PoolClass & ((options?: PoolOptions) => PoolClass);
export type Pool = PoolClass;
