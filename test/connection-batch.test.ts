/**
 * A connection's batch (internal: kBatch, kFlushBatch; the pool's inqueues
 * and a pool worker's outqueue write through it): frames queued in one tick
 * leave together at its end, from a buffer the connection reuses. A real
 * billiard Connection reads them: every frame intact and in order, pickles
 * and ready-made frames mixed, across a full socket (where the batch's bytes
 * must be copied before the buffer is reused), with large frames between
 * small ones and with sends that bypass the batch. A pickling error queues
 * nothing; a peer that hung up costs no exception.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createInterface } from 'node:readline';

import { describe, expect, test } from 'vitest';

import { kBatch, kFlushBatch, kSendNow } from '../src/connection/connection.js';
import { Pipe, PicklingError, tuple, type Connection } from '../src/index.js';
import { pythonFor } from './helpers/peers.js';

/** billiard reads `count` frames from fd 3 after `delay` s and prints, per frame, its length and sha256; then 'eof' if the stream ends there. */
const READER = String.raw`
import hashlib, sys, time
from billiard.connection import Connection
count, delay = int(sys.argv[1]), float(sys.argv[2])
c = Connection(3, writable=False)
print('ready', flush=True)
time.sleep(delay)
for _ in range(count):
    b = c.recv_bytes()
    print(len(b), hashlib.sha256(b).hexdigest(), flush=True)
try:
    b = c.recv_bytes()
    print('more', len(b), flush=True)
except EOFError:
    print('eof', flush=True)
`;

interface Reader {
  lines: Promise<string[]>;
}

async function startReader(end: Connection, count: number, delay = 0): Promise<Reader> {
  const proc = spawn(pythonFor('3.11'), ['-c', READER, String(count), String(delay)], { stdio: ['ignore', 'pipe', 'inherit', end.fileno()] });
  end.close();
  const rl = createInterface({ input: proc.stdout! });
  const all: string[] = [];
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  rl.on('line', (l) => (l === 'ready' ? onReady() : all.push(l)));
  const lines = new Promise<string[]>((resolve) => proc.once('exit', () => resolve(all)));
  await ready;
  return { lines };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const frameOf = (payload: Uint8Array): Uint8Array => {
  const f = new Uint8Array(4 + payload.length);
  new DataView(f.buffer).setInt32(0, payload.length);
  f.set(payload, 4);
  return f;
};
/** The pickle a Connection writes for `v` (protocol 4), as the reader will see it. */
const pickleOf = async (v: unknown): Promise<Uint8Array> => {
  const [a, b] = Pipe({ duplex: false });
  await b.send(v);
  const got = await a.recvBytes();
  a.close();
  b.close();
  return got;
};
const pattern = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, k) => (k * 31 + seed) % 251);

describe('a connection batch, read by billiard', () => {
  test('pickles and frames of one tick, a large frame between them, then sends that bypass the batch: all intact, in order', async () => {
    const [r, w] = Pipe({ duplex: false });
    const small = pattern(100, 1);
    const large = pattern(40_000, 2); // above the batch's frame limit: written alone, behind the batch
    const reader = await startReader(r, 7);
    w[kBatch](tuple('ACK', tuple(1, 2)));
    w[kBatch](frameOf(small), true);
    w[kBatch](frameOf(large), true);
    w[kBatch]({ after: 'large' });
    w[kBatch](tuple('READY', tuple(3, null)));
    expect(w[kSendNow]('sent now')).toBe(null);
    await w.send('sent, not batched');
    w.close();
    const want = await Promise.all([tuple('ACK', tuple(1, 2)), { after: 'large' }, tuple('READY', tuple(3, null)), 'sent now', 'sent, not batched'].map(pickleOf));
    const expected = [want[0]!, small, large, want[1]!, want[2]!, want[3]!, want[4]!].map((b) => `${b.length} ${sha(b)}`);
    expect(await reader.lines).toEqual([...expected, 'eof']);
  });

  test('batches written into a full socket are copied before the buffer is reused', async () => {
    const [r, w] = Pipe({ duplex: false });
    // The reader waits 1 s before reading: the first 1 MiB fills the socket, so the batches
    // that follow wait in the stream while later batches refill the connection's buffer.
    const reader = await startReader(r, 1 + 3 * 50, 1);
    const big = pattern(1 << 20, 7);
    void w.sendBytes(big);
    const sent: Uint8Array[] = [big];
    for (let tick = 0; tick < 3; tick++) {
      for (let k = 0; k < 50; k++) {
        const p = pattern(200 + k, tick * 50 + k);
        sent.push(p);
        w[kBatch](frameOf(p), true);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await w.send(null); // behind everything; resolves once written
    w.close();
    const lines = await reader.lines;
    expect(lines.slice(0, sent.length)).toEqual(sent.map((b) => `${b.length} ${sha(b)}`));
  });

  test('kFlushBatch writes at once, within the tick', async () => {
    const [r, w] = Pipe({ duplex: false });
    w[kBatch]('first');
    w[kFlushBatch]();
    // spawnSync blocks this event loop: the child sees only what was written before it started.
    const peek = String.raw`
import select, sys
print('readable' if select.select([3], [], [], 1)[0] else 'empty')
`;
    const seen = spawnSync(pythonFor('3.11'), ['-c', peek], { stdio: ['ignore', 'pipe', 'inherit', r.fileno()], encoding: 'utf8' });
    expect(seen.stdout.trim()).toBe('readable');
    expect(await r.recv()).toBe('first');
    r.close();
    w.close();
  });

  test('a send after batched frames goes behind them', async () => {
    const [r, w] = Pipe({ duplex: false });
    w[kBatch]('batched 1');
    w[kBatch](frameOf(new TextEncoder().encode('batched 2')), true);
    await w.send('sent');
    expect(await r.recv()).toBe('batched 1');
    expect(new TextDecoder().decode(await r.recvBytes())).toBe('batched 2');
    expect(await r.recv()).toBe('sent');
    r.close();
    w.close();
  });

  test('a frame given as the first bytes of a larger buffer (a length): only those bytes go, short or long', async () => {
    const [r, w] = Pipe({ duplex: false });
    const scratch = new Uint8Array(2000).fill(0xee);
    const short = frameOf(new TextEncoder().encode('short frame'));
    scratch.set(short);
    w[kBatch](scratch, true, short.length);
    const long = frameOf(pattern(600, 9));
    scratch.set(long);
    w[kBatch](scratch, true, long.length);
    expect(new TextDecoder().decode(await r.recvBytes())).toBe('short frame');
    expect(sha(await r.recvBytes())).toBe(sha(pattern(600, 9)));
    // Nothing of the buffer past the given length went: the next frame reads whole.
    await w.send('next');
    expect(await r.recv()).toBe('next');
    r.close();
    w.close();
  });

  test('an object that does not pickle throws and queues nothing; the frames around it go', async () => {
    const [r, w] = Pipe({ duplex: false });
    w[kBatch]('before');
    expect(() => w[kBatch]({ f: () => 1 })).toThrow(PicklingError);
    w[kBatch]('after');
    expect(await r.recv()).toBe('before');
    expect(await r.recv()).toBe('after');
    r.close();
    w.close();
  });

  test('a peer that hung up: batching and flushing throw nothing, and nothing is left unhandled', async () => {
    const [r, w] = Pipe({ duplex: false });
    r.close();
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown): void => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      for (let k = 0; k < 100; k++) w[kBatch](pattern(1000, k), false);
      w[kFlushBatch]();
      w[kBatch](pattern(50_000, 1), false);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      w.close();
    }
  });
});
