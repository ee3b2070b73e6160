/**
 * The Node echo child of the connection benchmark (bench/connection.ts): a
 * billiard-ts Connection on an inherited file descriptor, serving the same
 * commands as bench/py_conn_bench.py --echo, so that a Node child and a
 * billiard child are interchangeable for the driver that times them.
 *
 *   node bench/conn-echo-child.mjs --fd N
 *
 * Plain JavaScript on the compiled package (dist/), as an installed user runs
 * it: no TypeScript loader in the process. With BENCH_SOURCE=src it loads
 * src/ instead (run it with `--import tsx`). Commands are pickled tuples; see
 * serve() in bench/py_conn_bench.py for the list. It exits on ('exit',) or end
 * of file on the inherited connection.
 */

import { readFileSync } from 'node:fs';

const { Client, Connection, EOFError, Listener, tuple } = await import(process.env.BENCH_SOURCE === 'src' ? '../src/index.ts' : '../dist/index.js');

const at = process.argv.indexOf('--fd');
const fd = at >= 0 ? Number(process.argv[at + 1]) : NaN;
if (!Number.isInteger(fd) || fd < 0) throw new Error('usage: conn-echo-child.mjs --fd N');

/** The CPUs this process may run on (Linux), e.g. "0" or "0-1". */
function allowedCpus() {
  try {
    return /^Cpus_allowed_list:\s*(.+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]?.trim() ?? '?';
  } catch {
    return '?';
  }
}

const state = { listener: null };
const sources = new Map();

/** Serves commands on `conn` until ('exit',) (returns 'exit'), ('back',) (returns 'back') or end of file. */
async function serve(conn) {
  for (;;) {
    let cmd;
    try {
      cmd = await conn.recv();
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
        const count = cmd[1];
        let total = 0;
        for (let i = 0; i < count; i++) total += (await conn.recvBytes()).length;
        await conn.send(tuple('done', total));
        break;
      }
      case 'source': {
        const count = cmd[1];
        const size = cmd[2];
        let buf = sources.get(size);
        if (buf === undefined) sources.set(size, (buf = new Uint8Array(size).fill(0x78)));
        for (let i = 0; i < count; i++) await conn.sendBytes(buf);
        break;
      }
      case 'tcp': {
        // Serve the same commands over TCP until ('back',), then return to this connection.
        const c = await Client(cmd[1]);
        const how = await serve(c);
        c.close();
        if (how === 'exit') return 'exit';
        break;
      }
      case 'back':
        return 'back';
      case 'listen':
        state.listener = await Listener.create(['127.0.0.1', 0], { authkey: cmd[1] });
        await conn.send(tuple('listening', state.listener.address));
        break;
      case 'accept': {
        // Accept n connections (each with the handshake), closing each at once.
        const n = cmd[1];
        for (let i = 0; i < n; i++) (await state.listener.accept()).close();
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
