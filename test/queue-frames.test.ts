/**
 * How a Queue reads billiard's frames off its pipe when a get finds them
 * there (src/native TakeFrame: preadv2 with RWF_NOWAIT, or FIONREAD then
 * read() where the kernel lacks the flag; the frame lands in a scratch
 * buffer and is unpickled in place) and when they arrive in pieces (a pool
 * thread finishes what was begun). The bytes are written to the queue's
 * pipe by hand, as a writer that stops anywhere would leave them. Every
 * test runs under both ways of reading.
 */
import { write as fsWrite, writeSync } from 'node:fs';

import { afterAll, describe, expect, test } from 'vitest';

import { EOFError, JoinableQueue, OSError, Queue, SimpleQueue, type QueueOptions } from '../src/index.js';
import { collidingKeys } from './helpers/v8-collisions.js';
import { readNoWait, takeFrame } from '../src/native/index.js';
import { dumps, UnpicklingError } from '../src/pickle/index.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setInt32(0, payload.length);
  out.set(payload, 4);
  return out;
}

function extendedFrame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + payload.length);
  const v = new DataView(out.buffer);
  v.setInt32(0, -1);
  v.setBigUint64(4, BigInt(payload.length));
  out.set(payload, 12);
  return out;
}

/** Writes raw bytes to the queue's pipe, taking a slot of its semaphore for each of `frames` frames, as a put does. */
function write(q: Queue, bytes: Uint8Array, frames = 1): void {
  for (let i = 0; i < frames; i++) if (!q.sem.acquireSync({ block: false })) throw new Error('no free slot');
  let at = 0;
  while (at < bytes.length) at += writeSync(q.writer.fileno(), bytes, at);
}

/**
 * Writes the first piece of `bytes` (up to the first cut), starts a get,
 * which finds only that piece there, then writes the others with pauses.
 */
async function getAcross(q: Queue, bytes: Uint8Array, cuts: number[]): Promise<unknown> {
  write(q, bytes.subarray(0, cuts[0]));
  const got = q.get({ timeout: 10 });
  let at = cuts[0]!;
  for (const cut of [...cuts.slice(1), bytes.length]) {
    await sleep(30);
    write(q, bytes.subarray(at, cut), 0);
    at = cut;
  }
  return got;
}

const modes = [
  { name: 'RWF_NOWAIT', nowait: true },
  { name: 'FIONREAD', nowait: false },
];

afterAll(() => {
  readNoWait(true);
});

describe.each(modes)('Queue frames read with $name', ({ nowait }) => {
  const setMode = (): void => {
    readNoWait(nowait);
  };

  test('frames there at once, up to a full pipe, and larger ones as they come; many small ones in order', async () => {
    setMode();
    const q = new Queue();
    // There whole before the get (a pipe holds 64 KiB: header and pickle included).
    for (const n of [0, 1, 100, 4096, 65536 - 60, 65536 - 40]) {
      const value = new Uint8Array(n).fill(n & 0xff);
      write(q, frame(dumps(value)));
      expect(await q.get()).toEqual(value);
    }
    // Larger than the pipe: written by a pool thread while the get reads.
    for (const n of [65536, 65537, 200_000]) {
      const value = new Uint8Array(n).fill(n & 0xff);
      const bytes = frame(dumps(value));
      q.sem.acquireSync();
      const written = new Promise((resolve, reject) => fsWrite(q.writer.fileno(), bytes, (e) => (e ? reject(e) : resolve(null))));
      expect(await q.get()).toEqual(value);
      await written;
    }
    // Small ones, many in one write: each get takes exactly one.
    const many = Array.from({ length: 500 }, (_, i) => frame(dumps(i % 2 ? `item-${i}` : i)));
    write(q, Buffer.concat(many), many.length);
    for (let i = 0; i < 500; i++) expect(await q.get()).toBe(i % 2 ? `item-${i}` : i);
    if (nowait) expect(readNoWait()).toBe(true);
    q.close();
  });

  test('a frame cut anywhere (inside the header, the extended header, the payload) is finished by a thread', async () => {
    setMode();
    const q = new Queue(0, { stallTimeout: 5 });
    const small = frame(dumps(['cut', 1, 2, 3]));
    for (let cut = 1; cut < small.length; cut++) expect(await getAcross(q, small, [cut])).toEqual(['cut', 1, 2, 3]);
    const ext = extendedFrame(dumps('extended'));
    for (const cut of [2, 4, 6, 11, 12, 14]) expect(await getAcross(q, ext, [cut])).toBe('extended');
    const big = frame(dumps(new Uint8Array(150_000).fill(7)));
    expect(await getAcross(q, big, [3, 40_000, 100_000])).toEqual(new Uint8Array(150_000).fill(7));
    q.close();
  });

  test('takeFrame: a frame that does not fit the scratch buffer comes whole in its own; none there is null', () => {
    setMode();
    const q = new Queue();
    const scratch = new Uint8Array(16);
    const fd = q.reader.fileno();
    expect(takeFrame(fd, scratch, 1 << 20, 1)).toBeNull();
    write(q, frame(Uint8Array.from({ length: 16 }, (_, i) => i)));
    expect(takeFrame(fd, scratch, 1 << 20, 1)).toBe(16);
    expect(scratch).toEqual(Uint8Array.from({ length: 16 }, (_, i) => i));
    const payload = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
    write(q, frame(payload));
    expect(takeFrame(fd, scratch, 1 << 20, 1)).toEqual(payload);
    // Over maxSize: refused (the header was read; the queue is then broken, as billiard's would be).
    write(q, frame(payload));
    expect(() => takeFrame(fd, scratch, 999, 1)).toThrow(expect.objectContaining({ code: 'EMSGSIZE' }));
    q.close();
  });

  test('a bad pickle in a frame is the get\'s error; the next item is whole', async () => {
    setMode();
    const q = new Queue();
    write(q, frame(Uint8Array.from([0x80, 0x04, 0xff, 0x2e])));
    await q.put('after');
    await expect(q.get()).rejects.toThrow(UnpicklingError);
    expect(await q.get()).toBe('after');
    q.close();
  });

  test('a header claiming 2 GiB and a writer gone: EOFError, no 2 GiB allocated', async () => {
    setMode();
    const q = new Queue(0, { stallTimeout: 5 });
    const before = process.memoryUsage().rss;
    const h = new Uint8Array(4 + 10);
    new DataView(h.buffer).setInt32(0, 0x7ffffff0);
    write(q, h);
    const got = q.get().then(
      () => null,
      (e: unknown) => e,
    );
    await sleep(50);
    q.writer.close();
    const err = await got;
    expect(err).toBeInstanceOf(EOFError);
    expect((err as EOFError).code).toBe('TORN_FRAME');
    expect(process.memoryUsage().rss - before).toBeLessThan(64 << 20);
    // The framing is lost: later gets fail the same way.
    await expect(q.get()).rejects.toThrow(EOFError);
    q.close();
  });

  test('end of file inside a header: TORN_FRAME; before any frame: EOF', async () => {
    setMode();
    const q = new Queue();
    write(q, Uint8Array.from([0, 0]));
    q.writer.close();
    await expect(q.get()).rejects.toMatchObject({ code: 'TORN_FRAME' });
    const q2 = new Queue();
    q2.writer.close();
    await expect(q2.get()).rejects.toMatchObject({ code: 'EOF' });
    const q3 = new Queue();
    write(q3, Uint8Array.from([0xff, 0xff, 0xff, 0xfe, 1, 2]));
    await expect(q3.get()).rejects.toThrow(OSError);
    q.close();
    q2.close();
    q3.close();
  });
});

test('draining a full queue lets timers run (a get that needs no wait yields now and then)', async () => {
  const q = new Queue();
  for (let i = 0; i < 2000; i++) q.putNowait(i);
  await (q as unknown as { flushed(): Promise<void> }).flushed();
  let fired = -1;
  let got = 0;
  setTimeout(() => {
    fired = got;
  }, 0);
  for (; got < 2000; got++) await q.get();
  expect(fired).toBeGreaterThanOrEqual(0);
  expect(fired).toBeLessThan(2000);
  q.close();
});

describe('loadLimits of the queues', () => {
  test('an item over the default limits is the get\'s UnpicklingError and the next item is whole; a queue with the limits raised loads it (Queue, JoinableQueue, SimpleQueue)', async () => {
    // 2,000 bigint keys k << 64 share one V8 hash (test/helpers/v8-collisions.ts): over the default maxHashCollisions.
    const big = new Map(collidingKeys.shifted(2000).map((k, j) => [k, j]));
    const raised = { loadLimits: { maxHashCollisions: Infinity } };
    for (const make of [(o?: QueueOptions) => new Queue(0, o), (o?: QueueOptions) => new JoinableQueue(0, o), (o?: QueueOptions) => new SimpleQueue(o)]) {
      const plain = make();
      await plain.put(big);
      await plain.put('after');
      await expect(plain.get()).rejects.toThrow(/maxHashCollisions/);
      expect(await plain.get()).toBe('after');
      plain.close();
      const q = make(raised);
      await q.put(big);
      expect(((await q.get()) as Map<bigint, number>).size).toBe(2000);
      q.close();
    }
    expect(() => new Queue(0, { loadLimits: { maxHashColisions: 1 } as never })).toThrow(/not a load limit/);
    expect(() => new SimpleQueue({ loadLimits: { maxMemo: 1.5 } })).toThrow(TypeError);
  });
});
