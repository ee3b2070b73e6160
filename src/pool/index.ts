/** billiard's pool (spec/pool.md): `Pool`, its results, the worker loop and the wire protocol. */

export { ApplyResult, IMapIterator, MapResult, Pool, type ApplyOptions, type MapOptions, type PoolFunction, type PoolOptions } from './pool.js';
export { ACK, DEATH, EX_FAILURE, EX_OK, EX_RECYCLE, ExceptionInfo, MaybeEncodingError, NACK, READY, RemoteTraceback, TASK } from './protocol.js';
