/**
 * The process authkey's type: billiard's `AuthenticationString`, a `bytes`
 * that refuses to be pickled except into the data that starts a child
 * (spec/connection.md §5 and rule 30 of §7.1), so that a key can never
 * travel inside a `Connection.send()` by accident.
 *
 * Python decides by asking whether a child is being spawned at that moment
 * (`get_spawning_popen()`); here the code that pickles a child's bootstrap
 * data runs its `dumps` calls inside {@link whileSpawning}. Pickling is
 * synchronous, so nothing else can pickle in between.
 */

import { PicklingError, PyGlobal, reduceEx, type ReduceValue } from '../pickle/index.js';

/** The global a key pickles as while spawning (what billiard writes; a child also loads multiprocessing's). @internal */
export const kAuthenticationString = new PyGlobal('billiard.process', 'AuthenticationString');

let spawning = 0;

/**
 * Runs `body` (which pickles a child's bootstrap data) with authkeys
 * allowed to pickle, as Python's `set_spawning_popen` allows them.
 * @internal
 */
export function whileSpawning<T>(body: () => T): T {
  spawning++;
  try {
    return body();
  } finally {
    spawning--;
  }
}

/**
 * True while a child's bootstrap data is being pickled (Python:
 * `get_spawning_popen() is not None`): locks, shared memory and queues
 * pickle only then.
 * @internal
 */
export function isSpawning(): boolean {
  return spawning > 0;
}

/**
 * An authkey (billiard's `billiard.process.AuthenticationString`): bytes
 * that cannot be pickled, except into the bootstrap data of a child, where
 * they travel as `billiard.process.AuthenticationString(b'...')`. To send
 * a key on purpose, send a copy as plain bytes: `new Uint8Array(key)`
 * (Python: `bytes(key)`).
 *
 * `currentProcess().authkey` and `Process.authkey` hold one; slices and
 * copies made from it are plain `Uint8Array`s, as slicing a Python
 * `AuthenticationString` gives `bytes`.
 */
export class AuthenticationString extends Uint8Array {
  static get [Symbol.species](): Uint8ArrayConstructor {
    return Uint8Array;
  }

  /** A copy of `bytes` (any byte array, or an array of byte values). */
  constructor(bytes: ArrayLike<number> | Iterable<number>) {
    if (typeof bytes === 'number' || typeof bytes === 'string' || bytes === null || typeof bytes !== 'object') {
      throw new TypeError('an authkey must be bytes (a Uint8Array)');
    }
    super(bytes as ArrayLike<number>);
  }

  [reduceEx](): ReduceValue {
    if (spawning === 0) {
      throw new PicklingError('Pickling an AuthenticationString object is disallowed for security reasons', { code: 'AUTHKEY' });
    }
    return { callable: kAuthenticationString, args: [new Uint8Array(this)] };
  }
}
