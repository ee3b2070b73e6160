/**
 * Reading sockets into one buffer the whole process shares.
 *
 * A Node socket stream allocates a fresh 64 KiB ArrayBuffer for every read
 * (shrunk to the bytes read). Those buffers are external memory to V8: a
 * connection receiving 64 KiB messages at 1 GB/s allocated 2 GB/s of them,
 * and spent most of its time in the page faults of fresh memory and in the
 * major collections that external memory triggers (profile in
 * bench/README.md). Node's own `onread` option (a user buffer that every
 * read fills) avoids that, but only for sockets it constructs; this module
 * switches any `net.Socket` to it, including those a `net.Server` accepts.
 *
 * Every socket switched here reads into the same buffer. That is safe
 * because a read's callback runs to completion, and Node drains the
 * microtask queue after it, before libuv reads again: a caller that was
 * waiting for a frame gets a view into the buffer and must consume it
 * synchronously in its continuation (unpickle it, copy it); anything kept
 * longer is copied out before the callback returns (see Connection).
 */

import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** Bytes of the shared read buffer: the most one read(2) takes. */
export const SHARED_READ_SIZE = 256 * 1024;

interface Keys {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

interface StreamHandle {
  useUserBuffer?: (buffer: Uint8Array) => void;
}

let keys: Keys | null | undefined;
let shared: Uint8Array | null = null;

/** The symbols under which net.Socket keeps its `onread` settings, found on a probe socket; null if this Node has none. */
function findKeys(): Keys | null {
  try {
    const probe = new Socket({ onread: { buffer: new Uint8Array(1), callback: () => true } } as never);
    const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
    probe.destroy();
    const buffer = byName.get('kBuffer');
    const callback = byName.get('kBufferCb');
    const generator = byName.get('kBufferGen');
    if (buffer === undefined || callback === undefined || generator === undefined) return null;
    return { buffer, callback, generator };
  } catch {
    return null;
  }
}

/** True when `bytes` is a view of the shared read buffer (its contents change at the next read). */
export function isShared(bytes: Uint8Array): boolean {
  return shared !== null && bytes.buffer === shared.buffer;
}

/**
 * Makes `socket` read into the shared buffer, calling `onBytes` with a view
 * of each read's bytes (returning false stops reading until `resume()`).
 * Bytes the stream already holds are handed to `onBytes` first. Returns
 * false, having changed nothing, when the stream is not a net.Socket, or
 * already has other readers, or this Node lacks the mechanism.
 */
export function readIntoSharedBuffer(stream: Duplex, onBytes: (bytes: Uint8Array) => boolean): boolean {
  if (!(stream instanceof Socket) || stream.listenerCount('data') > 0 || stream.listenerCount('readable') > 0) return false;
  const k = keys === undefined ? (keys = findKeys()) : keys;
  if (k === null) return false;
  const handle = (stream as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle !== null && handle !== undefined && typeof handle.useUserBuffer !== 'function') return false;
  const buffer = (shared ??= new Uint8Array(SHARED_READ_SIZE));
  // Whatever was read before the switch waits in the stream's own buffer.
  if (stream.readableLength > 0) {
    const early = stream.read() as Uint8Array | null;
    if (early !== null) onBytes(early);
  }
  const s = stream as unknown as Record<symbol, unknown>;
  s[k.buffer] = buffer;
  s[k.callback] = (n: number, b: Uint8Array): boolean => onBytes(b.subarray(0, n));
  s[k.generator] = null;
  // A socket still connecting gets the buffer when its handle is made (net.Socket does that itself).
  handle?.useUserBuffer!(buffer);
  return true;
}
