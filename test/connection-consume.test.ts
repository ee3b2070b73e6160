/**
 * Connection.consumeFrames (internal; the pool reads its workers' outqueues
 * with it): every frame goes to a handler inside the read that completed it,
 * in order, frames queued before the call first; the promise fails as the
 * next recvFrame() would (end of stream, a torn frame, a bad header, a
 * closed handle); a handler that throws or closes the connection stops
 * reading without losing the frames before. One case has a real billiard
 * Connection as the sender.
 */
import { spawn } from 'node:child_process';

import { describe, expect, test } from 'vitest';

import { Connection, EOFError, OSError, Pipe } from '../src/index.js';
import { pythonFor } from './helpers/peers.js';

/** A frame as billiard writes it: 4-byte big-endian length, then the bytes. */
function frame(payload: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const h = Buffer.alloc(4);
  h.writeInt32BE(body.length);
  return Buffer.concat([h, body]);
}

/** Collects copies of what the handler gets, and how the promise ends. */
function consume(conn: Connection, onFrame?: (f: Uint8Array, n: number) => void): { got: string[]; end: Promise<Error> } {
  const got: string[] = [];
  const end = conn.consumeFrames((f) => {
    got.push(Buffer.from(f).toString());
    onFrame?.(f, got.length);
  }).then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
  return { got, end };
}

describe('Connection.consumeFrames', () => {
  test('frames queued before the call come first, in order, then each new one inside its read', async () => {
    const [a, b] = Pipe({ duplex: false });
    await b.sendBytes(Buffer.from('one'));
    await b.sendBytes(Buffer.from('two'));
    // Let both arrive and queue (nothing is consuming yet).
    while (!(await a.poll(0))) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    // A microtask queued by the handler of the first frame of a read runs after the handler has
    // had every frame of that read: no frame waits for a promise of its own.
    let seenByMicrotask = -1;
    const { got, end } = consume(a, (_f, n) => {
      if (n === 3) queueMicrotask(() => (seenByMicrotask = got.length));
    });
    expect(got).toEqual(['one', 'two']);
    b.stream.write(Buffer.concat([frame('x'), frame(''), frame('z'.repeat(1000))]));
    while (got.length < 5) await new Promise((r) => setTimeout(r, 5));
    expect(got.slice(2)).toEqual(['x', '', 'z'.repeat(1000)]);
    expect(seenByMicrotask).toBe(5);
    b.close();
    const e = await end;
    expect(e).toBeInstanceOf(EOFError);
    expect((e as EOFError).code).toBe('EOF');
    a.close();
  });

  test('a frame torn by the end of the stream, after whole ones: the whole ones, then EOFError TRUNCATED_FRAME', async () => {
    const [a, b] = Pipe({ duplex: false });
    const { got, end } = consume(a);
    b.stream.write(Buffer.concat([frame('whole'), frame('torn frame').subarray(0, 7)]));
    b.stream.end();
    const e = await end;
    expect(got).toEqual(['whole']);
    expect(e).toBeInstanceOf(EOFError);
    expect((e as EOFError).code).toBe('TRUNCATED_FRAME');
    a.close();
  });

  test('a bad header after whole frames: the whole ones, then OSError BAD_HEADER, and reading stops', async () => {
    const [a, b] = Pipe({ duplex: false });
    const { got, end } = consume(a);
    b.stream.write(Buffer.concat([frame('first'), Buffer.from([0xff, 0xff, 0xff, 0xf0]), frame('never')]));
    const e = await end;
    expect(got).toEqual(['first']);
    expect(e).toBeInstanceOf(OSError);
    expect((e as OSError).code).toBe('BAD_HEADER');
    b.close();
    a.close();
  });

  test('close() while consuming rejects with HANDLE_CLOSED', async () => {
    const [a, b] = Pipe({ duplex: false });
    const { end } = consume(a);
    a.close();
    const e = await end;
    expect(e).toBeInstanceOf(OSError);
    expect((e as OSError).code).toBe('HANDLE_CLOSED');
    b.close();
  });

  test('a handler that closes the connection gets no more frames, even from the same read', async () => {
    const [a, b] = Pipe({ duplex: false });
    const { got, end } = consume(a, (_f, n) => {
      if (n === 2) a.close();
    });
    b.stream.write(Buffer.concat([frame('1'), frame('2'), frame('3'), frame('4')]));
    const e = await end;
    expect(got).toEqual(['1', '2']);
    expect((e as OSError).code).toBe('HANDLE_CLOSED');
    b.close();
  });

  test('a handler that throws stops reading; the promise rejects with its error wrapped', async () => {
    const [a, b] = Pipe({ duplex: false });
    const { got, end } = consume(a, (f) => {
      if (Buffer.from(f).toString() === 'bad') throw new TypeError('handler failed');
    });
    b.stream.write(Buffer.concat([frame('ok'), frame('bad'), frame('after')]));
    const e = await end;
    expect(got).toEqual(['ok', 'bad']);
    expect(e).toBeInstanceOf(OSError);
    expect(e.message).toContain('handler failed');
    b.close();
    a.close();
  });

  test('called after the end of the stream was seen, it rejects at once rather than waiting for ever', async () => {
    const [a, b] = Pipe({ duplex: false });
    await b.sendBytes(Buffer.from('last'));
    b.close();
    expect(Buffer.from(await a.recvBytes()).toString()).toBe('last');
    expect(await a.poll(10)).toBe(true); // the end is seen
    await new Promise((r) => setTimeout(r, 200)); // and the socket's 'end' and 'close' are past
    const got: string[] = [];
    const e = await Promise.race([
      a.consumeFrames((f) => got.push(Buffer.from(f).toString())).catch((err: Error) => err),
      new Promise((r) => setTimeout(() => r('still waiting after 2 s'), 2000)),
    ]);
    expect(e).toBeInstanceOf(EOFError);
    expect(got).toEqual([]);
    a.close();
  });

  test('a handler that throws on a frame queued before the call stops reading the same way', async () => {
    const [a, b] = Pipe({ duplex: false });
    b.stream.write(Buffer.concat([frame('queued bad'), frame('queued after')]));
    while (!(await a.poll(0))) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    const { got, end } = consume(a, () => {
      throw new TypeError('handler failed early');
    });
    b.stream.write(frame('later'));
    const e = await end;
    expect(got).toEqual(['queued bad']);
    expect(e).toBeInstanceOf(OSError);
    expect(e.message).toContain('handler failed early');
    // Reading has stopped: a recv now fails with the same error rather than reading 'queued after' or 'later'.
    await expect(a.recvBytes()).rejects.toBeInstanceOf(OSError);
    b.close();
    a.close();
  });

  test('consuming a closed or write-only end fails at once', async () => {
    const [a, b] = Pipe({ duplex: false });
    await expect(b.consumeFrames(() => {})).rejects.toMatchObject({ code: 'WRITE_ONLY' });
    a.close();
    await expect(a.consumeFrames(() => {})).rejects.toMatchObject({ code: 'HANDLE_CLOSED' });
    b.close();
  });

  test("a billiard Connection's frames, 0 bytes to 1 MiB, all arrive in order, then EOFError", async () => {
    const [a, b] = Pipe({ duplex: false });
    const sizes = [0, 1, 3, 4, 5, 1000, 65_535, 65_536, 65_537, 300_000, 1 << 20, 7];
    const script = `
import sys
from billiard.connection import Connection
c = Connection(3, readable=False)
for i, n in enumerate([${sizes.join(', ')}] * 20):
    c.send_bytes(bytes([(i + k) % 251 for k in range(min(n, 64))]) * (n // 64) + bytes(n % 64))
c.close()
`;
    const proc = spawn(pythonFor('3.11'), ['-c', script], { stdio: ['ignore', 'inherit', 'inherit', b.fileno()] });
    b.close();
    const lengths: number[] = [];
    const heads: number[] = [];
    const end = a.consumeFrames((f) => {
      lengths.push(f.length);
      heads.push(f.length > 0 ? f[0]! : -1);
    }).catch((e: Error) => e);
    const e = await end;
    await new Promise((r) => proc.once('exit', r));
    expect(proc.exitCode).toBe(0);
    expect(e).toBeInstanceOf(EOFError);
    const want = Array.from({ length: 20 }, () => sizes).flat();
    expect(lengths).toEqual(want);
    expect(heads).toEqual(want.map((n, i) => (n >= 64 ? i % 251 : n > 0 ? 0 : -1)));
    a.close();
  });
});
