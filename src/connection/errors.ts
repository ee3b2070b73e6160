/**
 * billiard's exceptions of the connection layer (spec/api.md section 2):
 * `ProcessError` and the classes the wire raises, plus `OSError` for what
 * Python reports as one (a closed handle, a bad message length).
 */

import { BilliardError } from '../pickle/errors.js';

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
  readonly args: readonly [Uint8Array];
  constructor(message: Uint8Array) {
    super(`message of ${message.length} bytes does not fit the buffer`, { code: 'BUFFER_TOO_SHORT' });
    this.args = [message];
  }
}

/** `AuthenticationError`: the authkey handshake failed. */
export class AuthenticationError extends ProcessError {
  static override readonly brand: string = 'multiprocessing.context.AuthenticationError';
  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'AUTHENTICATION', ...options });
  }
}

/** billiard's `TimeoutError` (a `ProcessError`): an operation ran past its timeout. */
export class TimeoutError extends ProcessError {
  static override readonly brand: string = 'multiprocessing.context.TimeoutError';
  constructor(message = 'timed out', options?: { cause?: unknown }) {
    super(message, { code: 'TIMEOUT', ...options });
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
