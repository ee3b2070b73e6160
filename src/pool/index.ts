/** billiard's pool (spec/pool.md): `Pool`, its results, the worker loop and the wire protocol. */

export {
  ApplyResult,
  IMapIterator,
  MapResult,
  Pool,
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
