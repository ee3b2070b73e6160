/**
 * The billiard-ts demo: a value made in Node travels to a real CPython
 * process as a pickle, Python prints what it got and sends it back inside a
 * dict, and Node prints what came back.
 *
 *   npm install && npm run demo
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { dumps, loads, PyDatetime, PyDecimal, PyTimezone, pyFloat, tuple } from '../src/index.js';
import { findPython, PythonNotFoundError } from '../src/index.js';

async function python(): Promise<string> {
  try {
    return await findPython(); // the interpreter with billiard, as the tests use
  } catch (e) {
    if (!(e instanceof PythonNotFoundError)) throw e;
    return findPython({ modules: ['pickle'] }); // the demo needs only the standard library
  }
}

const value = {
  greeting: 'hello from Node 👋',
  pid: process.pid,
  big: 2n ** 70n + 1n,
  ratio: 0.1,
  exactlyTwo: pyFloat(2),
  point: tuple(3, 4),
  tags: new Set(['a', 'b']),
  blob: new Uint8Array([0, 1, 254, 255]),
  when: new PyDatetime(2026, 11, 28, 12, 0, 0, 123456, PyTimezone.utc),
  price: new PyDecimal('19.99'),
  byNumber: new Map<unknown, unknown>([
    [1, 'one'],
    [tuple(2, 'two'), null],
  ]),
};

const exe = await python();
const peer = spawn(exe, [fileURLToPath(new URL('../compat/peers/pickle_echo.py', import.meta.url))], { stdio: ['pipe', 'pipe', 'inherit'] });

const request = dumps(value, { protocol: 4 });
const header = Buffer.alloc(4);
header.writeInt32BE(request.length);
console.log(`node ${process.version} sends (${request.length} bytes, protocol 4):`);
console.log(value);
peer.stdin.write(Buffer.concat([header, request]));
peer.stdin.end();

const chunks: Buffer[] = [];
peer.stdout.on('data', (c: Buffer) => chunks.push(c));
peer.on('close', (code) => {
  if (code !== 0) {
    console.error(`${exe} exited with code ${code}`);
    process.exitCode = 1;
    return;
  }
  const reply = Buffer.concat(chunks);
  const answer = loads(reply.subarray(4, 4 + reply.readInt32BE(0))) as { python: string; got: unknown; repr: string };
  console.log(`\nnode got back from python ${answer.python} (${exe}):`);
  console.log(answer.got);
});
