/**
 * billiard's exceptions of the connection layer (spec/api.md section 2):
 * `ProcessError` and the classes the wire raises, plus `OSError` for what
 * Python reports as one (a closed handle, a bad message length).
 *
 * Each pickles as the Python class it stands for, with Python's `args`
 * (`dumps(new TimeoutError())` is `multiprocessing.context.TimeoutError()`;
 * at protocols 0-2 the pickler writes `multiprocessing.TimeoutError`, as
 * CPython does), and loading this module registers the four billiard
 * classes in the default registry under every name CPython and billiard
 * reach them by, so that `loads` gives these classes back.
 */

import { defaultRegistry } from '../pickle/default-registry.js';
import { BilliardError } from '../pickle/errors.js';
import { strOfArgs } from '../pickle/exceptions.js';
import { EMPTY_TUPLE, type PyTuple } from '../pickle/types.js';

export { EOFError } from '../pickle/errors.js';

/** billiard's `ProcessError` (`multiprocessing.ProcessError`): base of the errors below. */
export class ProcessError extends BilliardError {
  static override readonly brand: string = 'multiprocessing.context.ProcessError';
}

/**
 * `BufferTooShort`: `recvBytesInto` got a message larger than the buffer.
 * The message (already consumed) is in `args[0]`, as in Python.
 */
export class BufferTooShort extends ProcessError {
  static override readonly brand: string = 'multiprocessing.context.BufferTooShort';
  declare readonly args: readonly [Uint8Array];
  constructor(message: Uint8Array) {
    super(`message of ${message.length} bytes does not fit the buffer`, { code: 'BUFFER_TOO_SHORT', args: [message] });
  }
}

/** `AuthenticationError`: the authkey handshake failed. */
export class AuthenticationError extends ProcessError {
  static override readonly brand: string = 'multiprocessing.context.AuthenticationError';
  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'AUTHENTICATION', ...options });
  }
}

/**
 * billiard's `TimeoutError` (a `ProcessError`, not the builtin one): an
 * operation ran past its timeout. Without a message its Python `args` are
 * `()`, as billiard raises it.
 */
export class TimeoutError extends ProcessError {
  static override readonly brand: string = 'multiprocessing.context.TimeoutError';
  constructor(message?: string, options?: { cause?: unknown }) {
    super(message ?? 'timed out', { code: 'TIMEOUT', cause: options?.cause, args: message === undefined ? EMPTY_TUPLE : [message] });
  }
}

/**
 * The codes of {@link OSError}: `HANDLE_CLOSED` ("handle is closed"),
 * `WRITE_ONLY`/`READ_ONLY` (wrong end of a one-way pipe),
 * `BAD_MESSAGE_LENGTH` (a frame over `maxlength`), `BAD_HEADER` (a negative
 * length header), `MESSAGE_TOO_LARGE` (over 2**31-1 bytes for a billiard
 * peer), `BROKEN_PIPE` (the peer is gone), `LISTENER_CLOSED`, or a Node/errno
 * code such as `ECONNREFUSED`.
 */
export type OSErrorCode =
  | 'HANDLE_CLOSED'
  | 'WRITE_ONLY'
  | 'READ_ONLY'
  | 'BAD_MESSAGE_LENGTH'
  | 'BAD_HEADER'
  | 'MESSAGE_TOO_LARGE'
  | 'BROKEN_PIPE'
  | 'LISTENER_CLOSED'
  | (string & {});

/** Python's `OSError`, as `multiprocessing.connection` raises it. */
export class OSError extends BilliardError {
  static override readonly brand: string = 'builtins.OSError';
  declare code: OSErrorCode;
  constructor(message: string, options?: { code?: OSErrorCode; cause?: unknown }) {
    super(message, { code: options?.code ?? 'OSERROR', cause: options?.cause });
  }
}

/**
 * The names Python pickles billiard's four connection-layer classes under,
 * and the aliases they are reachable by: `multiprocessing.context` (protocol
 * 3 and up), `multiprocessing` (protocols 0-2, through `_compat_pickle`), and
 * billiard's re-exports (`billiard.exceptions`, `billiard.context`,
 * `billiard`), which are the same class objects.
 */
const MP_MODULES = ['multiprocessing.context', 'multiprocessing', 'billiard.exceptions', 'billiard.context', 'billiard'] as const;

function names(name: string): string[] {
  return MP_MODULES.map((m) => `${m}.${name}`);
}

/** The message of an error loaded from Python args (`str(e)`); `undefined` when there are none. */
function messageOf(args: PyTuple): string | undefined {
  return args.length === 0 ? undefined : strOfArgs(args);
}

defaultRegistry.registerError(names('ProcessError'), (args) => new ProcessError(messageOf(args) ?? ''));
defaultRegistry.registerError(names('BufferTooShort'), (args) => new BufferTooShort(args[0] instanceof Uint8Array ? args[0] : new Uint8Array(0)));
defaultRegistry.registerError(names('TimeoutError'), (args) => new TimeoutError(messageOf(args)));
defaultRegistry.registerError(names('AuthenticationError'), (args) => new AuthenticationError(messageOf(args) ?? ''));
