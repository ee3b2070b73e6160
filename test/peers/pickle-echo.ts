/**
 * Pickle echo peer for the Python-driven round-trip tests (pytests/).
 *
 * Protocol, on stdin and stdout alike: frames of `[u32 big-endian length][payload]`.
 *   request payload: 1 byte pickle protocol (0-5), then a pickle made by CPython.
 *   reply payload:   status 0, then `dumps(loads(pickle), { protocol })`; or
 *                    status 1, then UTF-8 of `${name} ${code}: ${message}`.
 * Frames may arrive split across chunks or several to a chunk. Exits when stdin closes.
 *
 * Run from the repo root: `node --import tsx test/peers/pickle-echo.ts`.
 */

import { dumps, loads } from '../../src/pickle/index.js';

/** Answers one request payload with one reply payload (status byte + body). */
function answer(request: Uint8Array): Uint8Array {
  try {
    if (request.length < 1) throw new RangeError('empty request: no protocol byte');
    const protocol = request[0]!;
    // Integral floats stay floats (PyFloat) so they re-pickle as floats, not ints.
    const value = loads(request.subarray(1), { floats: 'wrap-integral' });
    const out = dumps(value, { protocol });
    const reply = new Uint8Array(1 + out.length);
    reply[0] = 0;
    reply.set(out, 1);
    return reply;
  } catch (error) {
    const e = error as { name?: unknown; code?: unknown; message?: unknown } | null;
    const text =
      e !== null && typeof e === 'object'
        ? `${String(e.name)} ${String(e.code)}: ${String(e.message)}`
        : `thrown ${String(error)}`;
    return Buffer.concat([Buffer.of(1), Buffer.from(text, 'utf8')]);
  }
}

/** Writes one frame: length prefix then payload. */
function send(payload: Uint8Array): void {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(payload.length, 0);
  process.stdout.write(Buffer.concat([header, payload]));
}

// Bytes received but not yet consumed as whole frames.
let pending: Buffer = Buffer.alloc(0);

process.stdin.on('data', (chunk: Buffer) => {
  pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
  let offset = 0;
  // Consume every complete frame in the buffer; keep any partial tail for later.
  while (pending.length - offset >= 4) {
    const length = pending.readUInt32BE(offset);
    if (pending.length - offset - 4 < length) break;
    send(answer(pending.subarray(offset + 4, offset + 4 + length)));
    offset += 4 + length;
  }
  // Copy the tail so the (possibly large) consumed chunk can be released.
  pending = offset === 0 ? pending : Buffer.from(pending.subarray(offset));
});

process.stdin.on('end', () => {
  if (pending.length !== 0) process.stderr.write(`pickle-echo: ${pending.length} trailing bytes ignored\n`);
  // Let stdout drain, then exit on its own (no process.exit, which could cut the last write).
});
