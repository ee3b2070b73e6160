/**
 * The Python exceptions ctypes and billiard raise for misuse of shared
 * values, as typed classes with Python's names and messages: a wrong
 * initialiser is a `TypeError` ("'float' object cannot be interpreted as an
 * integer"), an index out of range an `IndexError` ("invalid index"), and so
 * on (spec/api.md section 7). Each pickles as the builtin it stands for.
 *
 * `ValueError`, `RuntimeError` and `AssertionError` are the process layer's
 * classes, re-exported here so that this layer's callers find every error it
 * throws in one place.
 */

import { BilliardError } from '../pickle/errors.js';

export { AssertionError, RuntimeError, ValueError } from '../process/errors.js';

/** Python's `TypeError`: a value of the wrong type for a typecode, an unknown typecode. */
export class TypeError extends BilliardError {
  static override readonly brand: string = 'builtins.TypeError';
  constructor(message: string) {
    super(message, { code: 'TYPE' });
  }
}

/** Python's `IndexError`: an array index out of range (ctypes says "invalid index"). */
export class IndexError extends BilliardError {
  static override readonly brand: string = 'builtins.IndexError';
  constructor(message: string) {
    super(message, { code: 'INDEX' });
  }
}

/** Python's `AttributeError`: a lock without `acquire`, `.value` of an array that has none. */
export class AttributeError extends BilliardError {
  static override readonly brand: string = 'builtins.AttributeError';
  constructor(message: string) {
    super(message, { code: 'ATTRIBUTE' });
  }
}

/** Python's `OverflowError`: an integer too large for a `float` or `double`. */
export class OverflowError extends BilliardError {
  static override readonly brand: string = 'builtins.OverflowError';
  constructor(message: string) {
    super(message, { code: 'OVERFLOW' });
  }
}
