/**
 * `npx tsx bench/large-message.ts [MiB]`: what one large message costs in
 * memory. A `bytes` payload (256 MiB by default) goes from Node to a billiard
 * child over a Pipe and back; the Node process's peak RSS (VmHWM) is read
 * before and after, and printed as multiples of the payload. The payload
 * itself and the copy that comes back are two payloads that any
 * implementation holds; "about one copy on each side" is a peak near 2x.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { Pipe } from '../src/index.js';
import { findPython } from '../src/process/python.js';

const MiB = 1024 * 1024;
const size = Number(process.argv[2] ?? '256') * MiB;

function vm(field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(m![1]) * 1024;
}

/** Resets the peak RSS counter (Linux: writing 5 to clear_refs). */
function resetPeak(): void {
  readFileSync('/proc/self/status');
  try {
    process.getBuiltinModule('node:fs').writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // Not permitted: the peak then includes start-up.
  }
}

const echo = `
import sys
from billiard.connection import Connection
c = Connection(int(sys.argv[1]))
m = c.recv()
c.send(m)
del m
print('python echoed', flush=True)
c.recv()
`;

const [mine, theirs] = Pipe();
const child = spawn(await findPython(), ['-c', echo, '3'], { stdio: ['ignore', 'inherit', 'inherit', theirs.fileno()] });
theirs.close();

const payload = new Uint8Array(size);
for (let i = 0; i < size; i += 4096) payload[i] = i & 0xff;
global.gc?.();
resetPeak();
const base = vm('VmRSS');
await mine.send(payload);
const back = (await mine.recv()) as Uint8Array;
const peak = vm('VmHWM');
if (back.length !== size || back[4096] !== payload[4096]) throw new Error('the echo differs');
await mine.send(null);
await new Promise((r) => child.on('exit', r));
mine.close();
const x = (b: number): string => `${(b / size).toFixed(2)}x`;
console.log(`payload ${size / MiB} MiB; Node RSS before sending (payload included) ${(base / MiB).toFixed(0)} MiB; peak ${(peak / MiB).toFixed(0)} MiB`);
console.log(`peak above the process without the payload: ${x(peak - (base - size))} of the payload (the payload and its echo are 2.00x)`);
