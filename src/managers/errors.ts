/**
 * The managers' errors: `RemoteError` (a server's traceback text), and the
 * load side of `queue.Empty`/`queue.Full`, which a manager's queues raise
 * through `#ERROR` replies, and of `threading.BrokenBarrierError` (a manager's Barrier).
 */

import { defaultRegistry, BilliardError } from '../pickle/index.js';
import { Empty, Full } from '../queues/index.js';
import { BrokenBarrierError } from '../synchronize/index.js';

const DASHES = '-'.repeat(75);

/**
 * Python's `managers.RemoteError`: the server answered with a traceback
 * (`#TRACEBACK`) or could not pickle its answer (`#UNSERIALIZABLE`). Its
 * message frames the text between lines of 75 dashes, as Python's `str()`.
 */
export class RemoteError extends BilliardError {
  static override readonly brand: string = 'multiprocessing.managers.RemoteError';
  /** The server's text: a Python traceback, or what could not be pickled. */
  readonly text: string;
  constructor(text: string) {
    super(`\n${DASHES}\n${text}${DASHES}`, { code: 'REMOTE', args: [text] });
    this.text = text;
  }
}

function textOf(args: readonly unknown[]): string {
  return typeof args[0] === 'string' ? args[0] : '';
}

defaultRegistry.registerError(['multiprocessing.managers.RemoteError', 'billiard.managers.RemoteError'], (args) => new RemoteError(textOf(args)));
defaultRegistry.registerError(['_queue.Empty', 'queue.Empty'], (args) => new Empty(textOf(args)));
defaultRegistry.registerError(['queue.Full'], (args) => new Full(textOf(args)));
defaultRegistry.registerError(['threading.BrokenBarrierError'], () => new BrokenBarrierError());
