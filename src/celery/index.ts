/**
 * billiard-ts/celery: a Celery worker and client for Node, over kombu's
 * Redis transport and Celery's Redis result backend (spec/celery.md).
 * Loaded only through this entry point, so the Redis client costs nothing
 * to the rest of the package.
 */
export { Worker, type LogLevel, type WorkerOptions } from './worker.js';
export { AsyncResult, Celery, signature, type BroadcastOptions, type CeleryOptions, type RevokeOptions, type SendTaskOptions } from './client.js';
export { currentRequest, Ignore, MaxRetriesExceededError, Reject, Retry, task, type DeliveryInfo, type Request, type RetryOptions, type TaskOptions } from './task.js';
export { RedisBackend, type ResultMeta, type TaskState } from './backend.js';
export { RedisTransport, type TransportOptions } from './transport.js';
export { buildTaskMessage, ContentDisallowed, DecodeError, MessageError, type Embed, type Envelope, type Serializer, type Signature, type TaskMessageInit } from './message.js';
export { pyJsonDumps, pyJsonLoads } from './pyjson.js';
export { SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError } from '../process/errors.js';
