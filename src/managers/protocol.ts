/**
 * The manager protocol's messages (spec/manager.md §2): a request is the
 * pickled tuple `(ident, methodname, args, kwds)`; a reply is
 * `(kind, payload)` with kind `#RETURN`, `#ERROR`, `#TRACEBACK`,
 * `#UNSERIALIZABLE` or `#PROXY`.
 */

import type { Connection } from '../connection/index.js';
import { PyTuple, tuple } from '../pickle/index.js';
import { ValueError } from '../process/errors.js';
import { RemoteError } from './errors.js';

export const RETURN = '#RETURN';
export const ERROR = '#ERROR';
export const TRACEBACK = '#TRACEBACK';
export const UNSERIALIZABLE = '#UNSERIALIZABLE';
export const PROXY = '#PROXY';
export const GETVALUE = '#GETVALUE';

/** The control calls a server answers on a fresh connection (Python's `Server.public`). */
export const PUBLIC = Object.freeze(['shutdown', 'create', 'accept_connection', 'get_methods', 'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref']);

/** Keyword arguments as they travel: a dict with `str` keys. */
export type Kwds = Record<string, unknown>;

/** The request tuple. */
export function request(ident: string | null, methodname: string, args: readonly unknown[] = [], kwds?: Kwds | null): PyTuple {
  return tuple(ident, methodname, args instanceof PyTuple ? args : tuple(...args), kwds ?? Object.create(null));
}

/**
 * Python's `convert_to_error`: the error a non-`#RETURN` reply stands for.
 * `#ERROR` carries the exception itself (already unpickled); the text kinds
 * become {@link RemoteError}; anything else is a ValueError.
 */
export function convertToError(kind: unknown, result: unknown): Error {
  if (kind === ERROR) {
    if (result instanceof Error) return result;
    return new RemoteError(`the server raised a value that is not an exception: ${String(result)}\n`);
  }
  if (kind === TRACEBACK || kind === UNSERIALIZABLE) {
    if (typeof result !== 'string') return new TypeError(`Result ${String(result)} (kind '${String(kind)}') type is ${typeof result}, not str`);
    return kind === UNSERIALIZABLE ? new RemoteError(`Unserializable message: ${result}\n`) : new RemoteError(result);
  }
  return new ValueError(`Unrecognized message type ${JSON.stringify(String(kind))}`);
}

/** A reply tuple taken apart; a malformed reply is a ValueError. */
export function splitReply(reply: unknown): [kind: unknown, payload: unknown] {
  if (!Array.isArray(reply) || reply.length !== 2) throw new ValueError(`malformed reply from the manager: expected a (kind, result) pair, got ${Array.isArray(reply) ? `${reply.length} items` : typeof reply}`);
  return [reply[0], reply[1]];
}

/**
 * Python's `dispatch`: sends one request on `conn`, reads one reply, and
 * returns the `#RETURN` value or throws the error the reply stands for.
 */
export async function dispatch(conn: Connection, ident: string | null, methodname: string, args: readonly unknown[] = [], kwds?: Kwds | null): Promise<unknown> {
  await conn.send(request(ident, methodname, args, kwds));
  const [kind, result] = splitReply(await conn.recv());
  if (kind === RETURN) return result;
  throw convertToError(kind, result);
}
