/** billiard's queues (spec/api.md §5); importing this registers how they pickle for children. */
import './reduce.js';

export { Empty, Full, JoinableQueue, Queue, SimpleQueue, type GetOptions, type PutOptions, type QueueOptions } from './queues.js';
