/**
 * The errors Python raises for process misuse, as typed classes: billiard
 * uses `assert` (AssertionError) for "cannot start a process twice" and the
 * like, and `ValueError` for a closed process object.
 */

import { BilliardError } from '../pickle/errors.js';
import { ProcessError } from '../connection/errors.js';

/** Python's `AssertionError`: billiard's checks of process state. */
export class AssertionError extends BilliardError {
  static override readonly brand: string = 'builtins.AssertionError';
  constructor(message: string) {
    super(message, { code: 'ASSERTION' });
  }
}

/** Python's `ValueError`. */
export class ValueError extends BilliardError {
  static override readonly brand: string = 'builtins.ValueError';
  constructor(message: string, options?: { code?: string }) {
    super(message, { code: options?.code ?? 'VALUE' });
  }
}

/** Python's `RuntimeError`: setting the start method a second time without `force`. */
export class RuntimeError extends BilliardError {
  static override readonly brand: string = 'builtins.RuntimeError';
  constructor(message: string, options?: { code?: string }) {
    super(message, { code: options?.code ?? 'RUNTIME' });
  }
}

/**
 * A child failed before it ran its target: it could not import the target's
 * module, did not find the export, or died during start-up. `join()`
 * rejects with it; `exitcode` is the child's exit code.
 */
export class ProcessStartupError extends ProcessError {
  static override readonly brand: string = 'billiard-ts.ProcessStartupError';
  /** The child's stack or message text, when it sent one. */
  readonly remoteStack: string | undefined;
  constructor(message: string, options?: { remoteStack?: string; cause?: unknown }) {
    super(message, { code: 'STARTUP', cause: options?.cause });
    this.remoteStack = options?.remoteStack;
  }
}
