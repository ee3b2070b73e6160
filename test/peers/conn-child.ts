/**
 * Node child on the end of a Python Pipe() (billiard's or multiprocessing's)
 * that it inherited as a file descriptor: pytests/test_connection_node_child.py.
 *
 *   node --import tsx test/peers/conn-child.ts --fd N      (from the repo root)
 *
 * Echoes every message: `recv()` then `send()` of the value, integral floats
 * kept as floats. Control messages are tuples whose first item is CONTROL:
 *   (CONTROL, 'echo_bytes')   recvBytes(), then sendBytes() of the same bytes
 *   (CONTROL, 'exit')         close and exit 0 (end of file does the same)
 * A message it cannot load, or a value it cannot pickle again, is answered
 * with (CONTROL, 'error', text); a failed stream (OSError) ends it with that error.
 */

import { Connection, EOFError, OSError, tuple } from '../../src/index.js';

const CONTROL = '__conn_child__';

const at = process.argv.indexOf('--fd');
const fd = at >= 0 ? Number(process.argv[at + 1]) : NaN;
if (!Number.isInteger(fd) || fd < 0) throw new Error('usage: conn-child.ts --fd N');

const conn = Connection.fromFd(fd, { loadOptions: { floats: 'wrap-integral' } });

const isControl = (m: unknown): m is [string, string] => Array.isArray(m) && m.length >= 2 && m[0] === CONTROL;

for (;;) {
  let msg: unknown;
  try {
    msg = await conn.recv();
  } catch (e) {
    if (e instanceof EOFError) break;
    if (e instanceof OSError) throw e; // the stream failed: nothing more to read
    await conn.send(tuple(CONTROL, 'error', `recv: ${String(e)}`));
    continue;
  }
  if (isControl(msg) && msg[1] === 'exit') break;
  if (isControl(msg) && msg[1] === 'echo_bytes') {
    await conn.sendBytes(await conn.recvBytes());
    continue;
  }
  try {
    await conn.send(msg);
  } catch (e) {
    await conn.send(tuple(CONTROL, 'error', `send: ${String(e)}`));
  }
}
conn.close();
