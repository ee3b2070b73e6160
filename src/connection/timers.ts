/**
 * Every timeout of billiard-ts goes through this file (STYLE.md, "every
 * resource a peer can make us hold has a limit, a deadline and a default").
 *
 * Timeouts are seconds, as in billiard. `null`, `undefined` and `Infinity`
 * mean "wait for ever": no timer is armed at all. Node's `setTimeout` caps
 * its delay at 2**31-1 ms (about 24.8 days) and fires after 1 ms for
 * anything larger (with a `TimeoutOverflowWarning`); a {@link Timer} longer
 * than the cap re-arms itself until its deadline, so `poll(3e6)` waits the
 * 35 days it was asked to.
 */

/** The longest delay `setTimeout` honours, in milliseconds. */
export const MAX_TIMER_MS = 0x7fffffff;

/**
 * A timeout argument in seconds, checked: `null`/`undefined`/`Infinity` give
 * null (wait for ever), a negative number 0 (check once), as Python treats
 * them; anything else that is not a number (or NaN) is a TypeError naming
 * `name`.
 */
export function timeoutSeconds(value: unknown, name = 'timeout'): number | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`${name} must be a number of seconds, Infinity or null`);
  if (value === Infinity) return null;
  return value > 0 ? value : 0;
}

/**
 * A one-shot timer of `seconds` (null: never fires). It re-arms past
 * setTimeout's cap, and by default does not keep the process alive by itself
 * unless `ref` is true.
 */
export class Timer {
  #handle: NodeJS.Timeout | undefined;
  readonly #end: number;
  readonly #fire: () => void;
  readonly #ref: boolean;

  constructor(seconds: number | null, fire: () => void, options?: { ref?: boolean }) {
    this.#fire = fire;
    this.#ref = options?.ref ?? true;
    this.#end = seconds === null ? Infinity : performance.now() + seconds * 1000;
    if (seconds !== null) this.#arm();
  }

  #arm(): void {
    const left = this.#end - performance.now();
    if (left <= MAX_TIMER_MS) {
      this.#handle = setTimeout(() => {
        this.#handle = undefined;
        this.#fire();
      }, Math.max(0, left));
    } else {
      this.#handle = setTimeout(() => this.#arm(), MAX_TIMER_MS);
    }
    if (!this.#ref) this.#handle.unref();
  }

  /** True until the timer fired or was cancelled (always false for a null timer). */
  get pending(): boolean {
    return this.#handle !== undefined;
  }

  /** Milliseconds left (Infinity for a timer that never fires). */
  get remainingMs(): number {
    return Math.max(0, this.#end - performance.now());
  }

  cancel(): void {
    if (this.#handle !== undefined) clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  [Symbol.dispose](): void {
    this.cancel();
  }
}

/** Resolves after `seconds` (null: never); rejects with the signal's reason when it aborts. */
export function sleep(seconds: number | null, options?: { signal?: AbortSignal; ref?: boolean }): Promise<void> {
  const signal = options?.signal;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      timer.cancel();
      reject(signal!.reason);
    };
    const timer = new Timer(
      seconds,
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      { ref: options?.ref },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `body` and settles with it, unless `seconds` pass first (rejects with
 * `onTimeout()`) or `signal` aborts (rejects with its reason). `cleanup`
 * runs when the body lost the race, e.g. to close a socket it holds.
 */
export async function race<T>(
  body: Promise<T>,
  options: { seconds: number | null; signal?: AbortSignal; onTimeout: () => Error; cleanup?: () => void; ref?: boolean },
): Promise<T> {
  const { seconds, signal } = options;
  if (seconds === null && signal === undefined) return body;
  if (signal?.aborted) {
    options.cleanup?.();
    body.catch(() => undefined);
    throw signal.reason;
  }
  let timer: Timer | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = new Timer(
      seconds,
      () => {
        options.cleanup?.();
        reject(options.onTimeout());
      },
      { ref: options.ref },
    );
    if (signal !== undefined) {
      onAbort = () => {
        options.cleanup?.();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([body, stop]);
  } finally {
    timer?.cancel();
    if (onAbort !== undefined) signal!.removeEventListener('abort', onAbort);
    // The loser's rejection must not surface as unhandled.
    body.catch(() => undefined);
  }
}
