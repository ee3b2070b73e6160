/**
 * A Node parent and a Python child on one Pipe: the child is a real CPython
 * running billiard (started through billiard's own spawn entry point), its
 * target the Python function `py_worker.squares`. Then a Node Listener takes
 * a connection from a Python `multiprocessing.connection.Client`, with the
 * authkey handshake.
 *
 *   npx tsx examples/python-child.ts
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { currentProcess, findPython, Listener, Pipe, Process, pyfunc, tuple } from '../src/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));

// 1. A Python child sharing a Pipe with its Node parent.
const [conn, childEnd] = Pipe();
const child = new Process({ target: pyfunc('py_worker.squares'), args: [childEnd], pythonPath: [here], name: 'PySquares' });
child.start();
childEnd.close(); // the child has its own copy
for (const n of [3, 2n ** 40n, 12345678901]) {
  await conn.send(n);
  console.log('python child says:', await conn.recv());
}
await conn.send(null);
await child.join();
console.log(`${child.name} exited with ${child.exitcode}`);

// 2. A Node Listener, a Python Client (the standard library's), one authkey.
const authkey = currentProcess().authkey;
const listener = await Listener.create({ address: tuple('127.0.0.1', 0), authkey });
const [host, port] = listener.address as [string, number];
const script = [
  'import sys',
  'from multiprocessing.connection import Client',
  `with Client((${JSON.stringify(host)}, ${port}), authkey=bytes.fromhex(sys.argv[1])) as c:`,
  "    c.send({'from': 'python %d.%d' % sys.version_info[:2], 'items': [1, 2.5, b'xy', (None, True)]})",
  '    print("python client got:", c.recv())',
].join('\n');
const client = spawn(await findPython({ modules: ['multiprocessing'] }), ['-c', script, Buffer.from(authkey).toString('hex')], { stdio: 'inherit' });
const server = await listener.accept();
console.log('node listener got:', await server.recv());
await server.send(['thanks', 'from', 'node']);
await new Promise((resolve) => client.on('close', resolve));
server.close();
listener.close();
