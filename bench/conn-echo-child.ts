/**
 * The Node echo child of the connection benchmark (bench/connection.ts): a
 * billiard-ts Connection on an inherited file descriptor, serving the same
 * commands as bench/py_conn_bench.py --echo, so that a Node child and a
 * billiard child are interchangeable for the driver that times them.
 *
 *   node --import tsx bench/conn-echo-child.ts --fd N      (from the repo root)
 *
 * Commands are pickled tuples; see serve() in bench/py_conn_bench.py for the
 * list. It exits on ('exit',) or end of file on the inherited connection.
 */

import { readFileSync } from 'node:fs';

import { Client, Connection, EOFError, Listener, tuple, type Address } from '../src/index.js';

const at = process.argv.indexOf('--fd');
const fd = at >= 0 ? Number(process.argv[at + 1]) : NaN;
if (!Number.isInteger(fd) || fd < 0) throw new Error('usage: conn-echo-child.ts --fd N');

/** The CPUs this process may run on (Linux), e.g. "0" or "0-1". */
function allowedCpus(): string {
  try {
    return /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

const state: { listener: Listener | null } = { listener: null };
const sources = new Map<number, Uint8Array>();

/** Serves commands on `conn` until ('exit',) (returns 'exit'), ('back',) (returns 'back') or end of file. */
async function serve(conn: Connection): Promise<'exit' | 'back'> {
  for (;;) {
    let cmd: unknown[];
    try {
      cmd = (await conn.recv()) as unknown[];
    } catch (e) {
      if (e instanceof EOFError) return 'exit';
      throw e;
    }
    switch (cmd[0]) {
      case 'info':
        await conn.send({ impl: 'billiard-ts', runtime: `Node ${process.version}`, pid: process.pid, cpus: allowedCpus() });
        break;
      case 'echo_obj':
        // Echo objects until None.
        for (;;) {
          const m = await conn.recv();
          if (m === null) break;
          await conn.send(m);
        }
        break;
      case 'echo_bytes':
        // Echo byte frames until an empty one.
        for (;;) {
          const m = await conn.recvBytes();
          if (m.length === 0) break;
          await conn.sendBytes(m);
        }
        break;
      case 'sink': {
        const count = cmd[1] as number;
        let total = 0;
        for (let i = 0; i < count; i++) total += (await conn.recvBytes()).length;
        await conn.send(tuple('done', total));
        break;
      }
      case 'source': {
        const count = cmd[1] as number;
        const size = cmd[2] as number;
        let buf = sources.get(size);
        if (buf === undefined) sources.set(size, (buf = new Uint8Array(size).fill(0x78)));
        for (let i = 0; i < count; i++) await conn.sendBytes(buf);
        break;
      }
      case 'tcp': {
        // Serve the same commands over TCP until ('back',), then return to this connection.
        const c = await Client(cmd[1] as Address);
        const how = await serve(c);
        c.close();
        if (how === 'exit') return 'exit';
        break;
      }
      case 'back':
        return 'back';
      case 'listen':
        state.listener = await Listener.create(['127.0.0.1', 0], { authkey: cmd[1] as Uint8Array });
        await conn.send(tuple('listening', state.listener.address));
        break;
      case 'accept': {
        // Accept n connections (each with the handshake), closing each at once.
        const n = cmd[1] as number;
        for (let i = 0; i < n; i++) (await state.listener!.accept()).close();
        await conn.send(tuple('accepted', n));
        break;
      }
      case 'unlisten':
        state.listener?.close();
        state.listener = null;
        await conn.send(tuple('unlistened'));
        break;
      case 'exit':
        return 'exit';
      default:
        throw new Error(`conn-echo-child: unknown command ${String(cmd[0])}`);
    }
  }
}

const conn = Connection.fromFd(fd);
await serve(conn);
state.listener?.close();
conn.close();
