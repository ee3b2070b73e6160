/**
 * `Pipe({ duplex })` (spec/connection.md section 2): a socket pair whose ends both
 * read and write, or a one-way pipe `[readEnd, writeEnd]`. The file
 * descriptors come from the native layer (Node has no socketpair or pipe)
 * and can be handed to child processes.
 */

import { pipe, socketpair } from '../native/index.js';
import { Connection, type ConnectionOptions } from './connection.js';
import { checkOptionNames, optionNames } from './options.js';

/** Options of {@link Pipe}. */
export interface PipeOptions {
  /** Both ends read and write (an AF_UNIX socket pair). Defaults to true. */
  duplex?: boolean;
  /** Options given to both connections. */
  connection?: Omit<ConnectionOptions, 'readable' | 'writable'>;
}

const PIPE_OPTIONS = optionNames<PipeOptions>()({ duplex: 1, connection: 1 });

/**
 * A pair of connected Connections. With `duplex: false` the first end only
 * reads and the second only writes (an `os.pipe()`), as in Python.
 */
export function Pipe(options?: PipeOptions): [Connection, Connection] {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new TypeError('Pipe() takes an options object: Pipe({ duplex: false }) for a one-way pipe');
  }
  checkOptionNames(options, PIPE_OPTIONS, 'Pipe()');
  const opts: PipeOptions = options ?? {};
  const duplex = opts.duplex ?? true;
  if (duplex) {
    const [a, b] = socketpair();
    return [Connection.fromFd(a, opts.connection), Connection.fromFd(b, opts.connection)];
  }
  const [r, w] = pipe();
  return [Connection.fromFd(r, { ...opts.connection, writable: false }), Connection.fromFd(w, { ...opts.connection, readable: false })];
}
