/**
 * `currentProcess()`: this process as billiard sees it. Only what the
 * connection layer's users need so far: the name and the authkey (32
 * random bytes in the main process, as Python makes them).
 */

import { randomBytes } from 'node:crypto';

/** The process object of the running process (a subset of Process, growing with the Process issue). */
export interface CurrentProcess {
  /** `'MainProcess'` in the main process. */
  name: string;
  readonly pid: number;
  /** The process authkey: 32 random bytes in the main process; children inherit their parent's. */
  authkey: Uint8Array;
}

let current: CurrentProcess | undefined;

/** This process (billiard's `current_process()`). */
export function currentProcess(): CurrentProcess {
  if (current === undefined) {
    let key = new Uint8Array(randomBytes(32));
    current = {
      name: 'MainProcess',
      pid: process.pid,
      get authkey(): Uint8Array {
        return key;
      },
      set authkey(value: Uint8Array) {
        if (!(value instanceof Uint8Array)) throw new TypeError('authkey must be a Uint8Array (bytes)');
        key = new Uint8Array(value);
      },
    };
  }
  return current;
}
