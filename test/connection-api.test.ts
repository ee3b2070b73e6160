/**
 * The Connection, Pipe, Listener, Client and wait API, with the semantics of
 * multiprocessing.connection (spec/connection.md): bytes on the wire,
 * one-way ends, recvBytesInto, poll, wait, close, backpressure, addresses,
 * abstract Unix names and a Python Listener's backlog of 1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createServer as netCreateServer, type AddressInfo } from 'node:net';

import { describe, expect, test } from 'vitest';

import {
  arbitraryAddress,
  BufferTooShort,
  Client,
  Connection,
  EOFError,
  Listener,
  OSError,
  Pipe,
  tuple,
  wait,
  type Address,
} from '../src/index.js';
import { pythonFor, startPeer } from './helpers/peers.js';

const KEY = new TextEncoder().encode('billiard-ts tests');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('Pipe and Connection', () => {
  test('send writes exactly what Python writes: frame header, then the protocol-4 pickle', async () => {
    const [a, b] = Pipe();
    const raw = b.stream;
    const got = new Promise<Buffer>((resolve) => raw.once('data', (c: Buffer) => resolve(c)));
    await a.send({ a: 1 });
    // billiard and CPython 3.11-3.13: send({'a': 1})
    expect(hex(await got)).toBe('00000015' + '8004950a000000000000007d948c0161944b01732e');
    a.close();
    b.close();
  });

  test('sendBytes with offset and size counts bytes, and checks its arguments first', async () => {
    const [a, b] = Pipe();
    await a.sendBytes(new TextEncoder().encode('hello world'), { offset: 6, size: 5 });
    expect(Buffer.from(await b.recvBytes()).toString()).toBe('world');
    await a.sendBytes(new Int32Array([1, 2]));
    expect(hex(await b.recvBytes())).toBe('0100000002000000');
    await expect(a.sendBytes(new Uint8Array(4), { offset: -1 })).rejects.toThrow('offset is negative');
    await expect(a.sendBytes(new Uint8Array(4), { offset: 5 })).rejects.toThrow('buffer length < offset');
    await expect(a.sendBytes(new Uint8Array(4), { size: -1 })).rejects.toThrow('size is negative');
    await expect(a.sendBytes(new Uint8Array(4), { offset: 2, size: 3 })).rejects.toThrow('buffer length < offset + size');
    await a.sendBytes(new Uint8Array(0));
    expect((await b.recvBytes()).length).toBe(0);
    a.close();
    b.close();
  });

  test('a one-way Pipe: the first end only reads, the second only writes', async () => {
    const [r, w] = Pipe({ duplex: false });
    expect([r.readable, r.writable, w.readable, w.writable]).toEqual([true, false, false, true]);
    await w.send(tuple(1, 'two'));
    expect(await r.recv()).toEqual([1, 'two']);
    await expect(r.send(1)).rejects.toMatchObject({ code: 'READ_ONLY' });
    await expect(w.recv()).rejects.toMatchObject({ code: 'WRITE_ONLY' });
    r.close();
    w.close();
  });

  test('recvBytesInto: offset in bytes, BufferTooShort with the whole message, the stream stays in step', async () => {
    const [a, b] = Pipe();
    for (const s of ['hello', 'world', 'xyz']) await a.sendBytes(new TextEncoder().encode(s));
    const buf = new Uint8Array(8);
    expect(await b.recvBytesInto(buf, 2)).toBe(5);
    expect(hex(buf)).toBe(hex(new Uint8Array([0, 0, ...new TextEncoder().encode('hello'), 0])));
    const e = await b.recvBytesInto(new Uint8Array(4)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BufferTooShort);
    expect(Buffer.from((e as BufferTooShort).args[0]).toString()).toBe('world');
    expect(Buffer.from(await b.recvBytes()).toString()).toBe('xyz');
    const ints = new Int32Array(3);
    await a.sendBytes(new Int32Array([7]));
    expect(await b.recvBytesInto(ints, 4)).toBe(4);
    expect(Array.from(ints)).toEqual([0, 7, 0]);
    await expect(b.recvBytesInto(new Uint8Array(2), 3)).rejects.toThrow('offset too large');
    a.close();
    b.close();
  });

  test('poll: immediate, with a timeout, for ever; the end of the stream counts as readable', async () => {
    const [a, b] = Pipe();
    expect(await b.poll()).toBe(false);
    expect(await b.poll(0.05)).toBe(false);
    setTimeout(() => void a.send('later'), 30);
    expect(await b.poll(null)).toBe(true);
    expect(await b.recv()).toBe('later');
    a.close();
    expect(await b.poll(1)).toBe(true);
    await expect(b.recv()).rejects.toBeInstanceOf(EOFError);
    b.close();
  });

  test('concurrent recv calls get frames in call order', async () => {
    const [a, b] = Pipe();
    const got = Promise.all([b.recv(), b.recv(), b.recv()]);
    await Promise.all([a.send(1), a.send(2), a.send(3)]);
    expect(await got).toEqual([1, 2, 3]);
    a.close();
    b.close();
  });

  test('close is idempotent; every method but close then raises OSError HANDLE_CLOSED; a pending recv fails; the peer sees EOF', async () => {
    const [a, b] = Pipe();
    const pending = a.recv();
    a.close();
    a.close();
    await expect(pending).rejects.toMatchObject({ code: 'HANDLE_CLOSED' });
    await expect(a.send(1)).rejects.toMatchObject({ code: 'HANDLE_CLOSED' });
    await expect(a.recv()).rejects.toMatchObject({ code: 'HANDLE_CLOSED' });
    await expect(a.poll()).rejects.toBeInstanceOf(OSError);
    expect(() => a.fileno()).toThrow(OSError);
    expect(a.closed).toBe(true);
    await expect(b.recv()).rejects.toBeInstanceOf(EOFError);
    b.close();
  });

  test('fileno gives the descriptor; Connection.fromFd wraps one', async () => {
    const [a, b] = Pipe();
    expect(a.fileno()).toBeGreaterThan(2);
    expect(b.fileno()).not.toBe(a.fileno());
    a.close();
    b.close();
  });

  test('a reader that does not read pauses the stream instead of buffering without bound', async () => {
    const [a, b] = Pipe();
    expect(await b.poll()).toBe(false); // b is reading from now on
    const chunk = new Uint8Array(1024 * 1024);
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < 48; i++) sends.push(a.sendBytes(chunk));
    await new Promise((r) => setTimeout(r, 300));
    expect(b.stream.isPaused()).toBe(true);
    for (let i = 0; i < 48; i++) expect((await b.recvBytes()).length).toBe(chunk.length);
    await Promise.all(sends);
    a.close();
    b.close();
  });
});

describe('the process ends when its code does, as a Python script does', () => {
  const run = (mode: string): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/exit-when-done.ts', mode], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 30_000,
    });

  test('open but idle Pipes, listeners and connections do not hold it open', () => {
    const r = run('idle');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('hello\nidle\n');
  });

  test('a listener with a peer silent in its handshake does not hold it open', () => {
    const r = run('silent-peer');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('challenged\n');
  });

  test.each([
    ['recv', 'late\n'],
    ['accept', 'from a late client\n'],
    ['poll', 'poll true\n'],
  ])('a pending %s holds it open until it completes', (mode, out) => {
    const r = run(mode);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(out);
  });

  test('a send nobody awaited is delivered whole before the process ends', () => {
    const r = run('write');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('sent\npython read 8388612\n');
  });
});

describe('wait', () => {
  test('returns the ready connections, in order, or [] after the timeout', async () => {
    const [a1, b1] = Pipe();
    const [a2, b2] = Pipe();
    const [a3, b3] = Pipe();
    expect(await wait([b1, b2, b3], 0.05)).toEqual([]);
    await a3.send('x');
    await a1.send('y');
    await new Promise((r) => setTimeout(r, 20));
    expect(await wait([b1, b2, b3], 0)).toEqual([b1, b3]);
    const later = wait([b2], null);
    setTimeout(() => void a2.send('z'), 20);
    expect(await later).toEqual([b2]);
    expect(await wait([], 0.01)).toEqual([]);
    b1.close();
    await expect(wait([b1, b2])).rejects.toMatchObject({ code: 'HANDLE_CLOSED' });
    for (const c of [a1, a2, a3, b2, b3]) c.close();
  });
});

describe('Listener and Client', () => {
  test('addresses, lastAccepted and close', async () => {
    const tcp = await Listener.create(['127.0.0.1', 0]);
    expect(tcp.address[0]).toBe('127.0.0.1');
    expect(tcp.address[1]).toBeGreaterThan(0);
    expect(tcp.lastAccepted).toBeNull();
    const [s, c] = await Promise.all([tcp.accept(), Client(tcp.address)]);
    expect(tcp.lastAccepted![0]).toBe('127.0.0.1');
    s.close();
    c.close();
    tcp.close();
    await expect(tcp.accept()).rejects.toMatchObject({ code: 'LISTENER_CLOSED' });

    const path = arbitraryAddress('AF_UNIX') as string;
    const unix = await Listener.create(path);
    expect(unix.address).toBe(path);
    const [s2, c2] = await Promise.all([unix.accept(), Client(path)]);
    expect(unix.lastAccepted).toBe('');
    s2.close();
    c2.close();
    unix.close();
    expect(existsSync(path)).toBe(false);
  });

  test('a connection made with a timeout outlives the timeout', async () => {
    // The connect deadline once kept its timer after the connection won, and
    // destroyed the socket when it fired.
    const l = await Listener.create(arbitraryAddress('AF_UNIX'), { authkey: KEY });
    const [s, c] = await Promise.all([l.accept(), Client(l.address, { authkey: KEY, timeout: 0.1 })]);
    await new Promise((r) => setTimeout(r, 300));
    await c.send('still here');
    expect(await s.recv()).toBe('still here');
    await s.send('and back');
    expect(await c.recv()).toBe('and back');
    s.close();
    c.close();
    l.close();
  });

  test('an empty authkey is a real key (CPython 3.13+)', async () => {
    const key = new Uint8Array(0);
    const l = await Listener.create(arbitraryAddress('AF_UNIX'), { authkey: key });
    const [s, c] = await Promise.all([l.accept(), Client(l.address, { authkey: key })]);
    await c.send('ok');
    expect(await s.recv()).toBe('ok');
    s.close();
    c.close();
    l.close();
  });

  test('Linux abstract names: billiard-ts to billiard-ts, and both ways with Python', async () => {
    const key = new TextEncoder().encode('abstract');
    const name = `\0billiard-ts-test-${process.pid}-${Date.now()}`;
    const l = await Listener.create(name, { authkey: key });
    expect(l.address).toBe(name);
    // Python clients (billiard and the standard library) reach the Node listener.
    for (const impl of ['billiard', 'mp']) {
      const peer = await startPeer(pythonFor('3.11'), 'conn_peer.py', ['--impl', impl, '--role', 'client', '--address', JSON.stringify(name), '--authkey', Buffer.from(key).toString('hex')]);
      const conn = await l.accept();
      await conn.send(tuple('echo', `hello ${impl}`));
      expect(await conn.recv()).toBe(`hello ${impl}`);
      await conn.send(tuple('exit'));
      expect(await peer.exited).toBe(0);
      conn.close();
    }
    l.close();
    // A Python listener on an abstract name, reached by a Node client.
    const name2 = `\0billiard-ts-py-${process.pid}-${Date.now()}`;
    const peer = await startPeer(pythonFor('3.11'), 'conn_peer.py', ['--impl', 'mp', '--role', 'server', '--address', JSON.stringify(name2), '--authkey', Buffer.from(key).toString('hex')]);
    expect(peer.info.address).toBe(name2);
    const conn = await Client(name2, { authkey: key });
    await conn.send(tuple('echo', 'from node'));
    expect(await conn.recv()).toBe('from node');
    await conn.send(tuple('exit'));
    expect(await peer.exited).toBe(0);
    conn.close();
  });

  test('many Node clients at once reach a Python Listener with its backlog of 1 (EAGAIN is retried)', async () => {
    const key = new TextEncoder().encode('backlog');
    const path = arbitraryAddress('AF_UNIX') as string;
    const n = 8;
    const script = [
      'import sys, json, time',
      'from billiard.connection import Listener',
      `l = Listener(${JSON.stringify(path)}, authkey=bytes.fromhex(${JSON.stringify(Buffer.from(key).toString('hex'))}))`,
      'print(json.dumps({"ready": True}), flush=True)',
      `for i in range(${n}):`,
      '    time.sleep(0.02)',
      '    c = l.accept()',
      '    c.send(c.recv() * 2)',
      '    c.close()',
    ].join('\n');
    const proc = spawn(pythonFor('3.11'), ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => createInterface({ input: proc.stdout! }).once('line', r));
    const results = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const c = await Client(path, { authkey: key, timeout: 30 });
        await c.send(i);
        const v = await c.recv();
        c.close();
        return v;
      }),
    );
    expect(results).toEqual(Array.from({ length: n }, (_, i) => i * 2));
    expect(await new Promise((r) => proc.on('exit', r))).toBe(0);
  });

  test('connecting to nobody fails with a typed error', async () => {
    const e = await Client(arbitraryAddress('AF_UNIX')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OSError);
    expect((e as OSError).code).toBe('ENOENT');
    const e2 = await Client(`\0nobody-${process.pid}` as Address).catch((x: unknown) => x);
    expect((e2 as OSError).code).toBe('ECONNREFUSED');
    // TCP: a port nobody listens on, and a listener that resets the connection as it accepts.
    const closed = netCreateServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const e3 = await Client(['127.0.0.1', freePort]).catch((x: unknown) => x);
    expect(e3).toBeInstanceOf(OSError);
    expect(e3).toMatchObject({ code: 'ECONNREFUSED', message: expect.stringContaining(`127.0.0.1:${freePort}`) });
    const resetting = netCreateServer((s) => s.resetAndDestroy());
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', () => r()));
    const e4 = await Client(['127.0.0.1', (resetting.address() as AddressInfo).port], { authkey: new TextEncoder().encode('k') }).catch((x: unknown) => x);
    resetting.close();
    expect(e4).toBeInstanceOf(OSError);
    expect(['ECONNRESET', 'EPIPE', 'BROKEN_PIPE']).toContain((e4 as OSError).code);
  });

  test('Connection.fromFd refuses a bad handle', () => {
    expect(() => Connection.fromFd(-1)).toThrow('invalid handle');
    expect(() => new Connection(Pipe()[0].stream, { readable: false, writable: false })).toThrow('at least one');
  });
});

describe('Node idioms on top', () => {
  test('an AbortSignal gives up recv, recvBytes, poll and wait; nothing is consumed, and the next call gets the frame', async () => {
    const [a, b] = Pipe();
    for (const call of [
      (signal: AbortSignal) => b.recv({ signal }),
      (signal: AbortSignal) => b.recvBytes(null, { signal }),
      (signal: AbortSignal) => b.recvBytesInto(new Uint8Array(16), 0, { signal }),
      (signal: AbortSignal) => b.poll(null, { signal }),
      (signal: AbortSignal) => wait([b], null, { signal }),
    ]) {
      const ac = new AbortController();
      const pending = call(ac.signal);
      ac.abort(new Error('given up'));
      await expect(pending).rejects.toThrow('given up');
      await expect(call(AbortSignal.abort(new Error('before')))).rejects.toThrow('before');
    }
    await a.send('kept');
    expect(await b.recv<string>()).toBe('kept');
    a.close();
    b.close();
  });

  test('an AbortSignal gives up accept; a connection arriving later goes to the next accept', async () => {
    const l = await Listener.create({ authkey: KEY });
    const ac = new AbortController();
    const pending = l.accept({ signal: ac.signal });
    ac.abort(new Error('no more'));
    await expect(pending).rejects.toThrow('no more');
    const [s, c] = await Promise.all([l.accept(), Client(l.address, { authkey: KEY })]);
    await c.send(1);
    expect(await s.recv()).toBe(1);
    s.close();
    c.close();
    l.close();
  });

  test('for await receives messages until the peer hangs up', async () => {
    const [a, b] = Pipe();
    for (const m of ['one', 'two', tuple(3)]) await a.send(m);
    a.close();
    const got: unknown[] = [];
    for await (const m of b) got.push(m);
    expect(got).toEqual(['one', 'two', [3]]);
    b.close();
  });

  test('for await stops at a truncated frame with its error', async () => {
    const [a, b] = Pipe();
    await a.send('whole');
    a.stream.end(Buffer.from('0000000561', 'hex'));
    const got: unknown[] = [];
    await expect(
      (async () => {
        for await (const m of b) got.push(m);
      })(),
    ).rejects.toMatchObject({ code: 'TRUNCATED_FRAME' });
    expect(got).toEqual(['whole']);
    b.close();
  });

  test('Listener.create takes an options object (spec/api.md 18.3); (address, options) is its alias', async () => {
    const path = arbitraryAddress('AF_UNIX') as string;
    const l1 = await Listener.create({ address: path, authkey: KEY, backlog: 4 });
    expect(l1.address).toBe(path);
    l1.close();
    const l2 = await Listener.create(path, { authkey: KEY });
    expect(l2.address).toBe(path);
    const [s, c] = await Promise.all([l2.accept(), Client(path, { authkey: KEY })]);
    s.close();
    c.close();
    l2.close();
    const tcp = await Listener.create({ address: tuple('127.0.0.1', 0) });
    expect(tcp.address[1]).toBeGreaterThan(0);
    tcp.close();
    const anywhere = await Listener.create({ family: 'AF_INET' });
    expect(anywhere.address[0]).toBe('127.0.0.1');
    anywhere.close();
  });

  test('Pipe takes an options object only', () => {
    expect(() => Pipe(false as never)).toThrow(TypeError);
    const [r, w] = Pipe({ duplex: false });
    expect([r.readable, w.writable]).toEqual([true, true]);
    r.close();
    w.close();
  });

  test('await using closes connections and listeners', async () => {
    let outer: [Connection, Connection] | undefined;
    let listener: Listener | undefined;
    {
      await using a = Pipe()[0];
      using l = await Listener.create();
      outer = [a, a];
      listener = l;
      expect(a.closed).toBe(false);
    }
    expect(outer[0].closed).toBe(true);
    expect(listener.closed).toBe(true);
  });
});


test('a frame in one piece goes straight to the socket; one the kernel takes only part of is finished by the stream, in order', async () => {
  const [a, b] = Pipe();
  // b is not read yet (its descriptor is not even opened), so the socket fills and some frame is cut.
  // A pickle of a megabyte is one frame in one piece, larger than the socket's buffer.
  const big = 'x'.repeat(1_000_000) + 'end';
  const first = a.send(big);
  const frames = Array.from({ length: 40 }, (_, i) => new Uint8Array(16_000).fill(i));
  const sends = frames.map((f) => a.sendBytes(f));
  expect(await b.recv()).toBe(big);
  for (let i = 0; i < frames.length; i++) {
    const got = await b.recvBytes();
    expect(got.length).toBe(16_000);
    expect(got.every((v) => v === i)).toBe(true);
  }
  await Promise.all([first, ...sends]);
  a.close();
  b.close();
});

test('frames sent while the stream is corked wait for the uncork, and leave together (as the pool gathers the frames of a tick)', async () => {
  const [a, b] = Pipe();
  a.stream.cork();
  const sends = [a.sendBytes(new Uint8Array([1])), a.send('two')];
  expect(await b.poll(0.2)).toBe(false);
  a.stream.uncork();
  expect(Array.from(await b.recvBytes())).toEqual([1]);
  expect(await b.recv()).toBe('two');
  await Promise.all(sends);
  a.close();
  b.close();
});

test('a send to a peer that has hung up fails with OSError BROKEN_PIPE (the socket write fails, the stream reports it)', async () => {
  const [a, b] = Pipe();
  b.close();
  let error: unknown;
  // The first send may land in the socket before the kernel notices; one of the next ones fails.
  for (let i = 0; i < 5 && error === undefined; i++) {
    try {
      await a.send(i);
    } catch (e) {
      error = e;
    }
  }
  expect(error).toBeInstanceOf(OSError);
  expect((error as OSError).code).toBe('BROKEN_PIPE');
  a.close();
});

describe('sockets read into one shared buffer', () => {
  /** Makes the process's shared read buffer hold other bytes: a 256 KiB frame read on another pipe. */
  async function overwriteSharedBuffer(): Promise<void> {
    const [x, y] = Pipe();
    const filler = new Uint8Array(256 * 1024).fill(0xee);
    await Promise.all([x.sendBytes(filler), y.recvBytes().then((got) => expect(got.every((v) => v === 0xee)).toBe(true))]);
    x.close();
    y.close();
  }

  test('frames that arrive while nobody waits are copies: later reads on any connection do not change them', async () => {
    const [a, b] = Pipe();
    const raw = a.stream;
    // Two frames and a pickle in one write: one read takes them all, and nobody is waiting.
    raw.write(Buffer.from('00000003' + '414141' + '00000003' + '424242' + '00000005' + '80044b072e', 'hex'));
    expect(await b.poll(5)).toBe(true);
    await overwriteSharedBuffer();
    expect(Buffer.from(await b.recvBytes()).toString()).toBe('AAA');
    expect(Buffer.from(await b.recvBytes()).toString()).toBe('BBB');
    expect(await b.recv()).toBe(7);
    a.close();
    b.close();
  });

  test('recvBytes keeps what it returns even when it was waiting as the frame arrived', async () => {
    const [a, b] = Pipe();
    const pending = b.recvBytes();
    await a.sendBytes(new Uint8Array(1000).fill(0x41));
    const got = await pending;
    await overwriteSharedBuffer();
    expect(got.length).toBe(1000);
    expect(got.every((v) => v === 0x41)).toBe(true);
    a.close();
    b.close();
  });

  test('a frame exactly as large as the shared buffer, its header read earlier, is returned as a copy, not as the buffer itself', async () => {
    const [a, b] = Pipe();
    const pending = b.recvBytes();
    // The header alone: the reader learns the length, 256 KiB.
    a.stream.write(Buffer.from('00040000', 'hex'));
    await new Promise((r) => setTimeout(r, 50));
    // Then one read that fills the whole shared buffer with the body, as read(2) would
    // (the kernel's default socket buffers rarely let one read take 256 KiB, so it is played here
    // through the socket's onread callback, the one libuv calls).
    const socket = b.stream as unknown as Record<symbol, unknown>;
    const byName = new Map(Object.getOwnPropertySymbols(socket).map((k) => [k.description, k]));
    const shared = socket[byName.get('kBuffer')!] as Uint8Array;
    expect(shared.length).toBe(256 * 1024);
    shared.fill(0x41);
    (socket[byName.get('kBufferCb')!] as (n: number, buf: Uint8Array) => boolean)(shared.length, shared);
    const got = await pending;
    expect(got.length).toBe(256 * 1024);
    expect(got.buffer).not.toBe(shared.buffer);
    await overwriteSharedBuffer();
    expect(got.every((v) => v === 0x41)).toBe(true);
    a.close();
    b.close();
  });

  test('recv with loadOptions.zeroCopy returns bytes that are not views of the shared buffer', async () => {
    const [a, b] = Pipe({ connection: { loadOptions: { zeroCopy: true } } });
    const pending = b.recv<Uint8Array>();
    await a.send(new Uint8Array(5000).fill(0x42));
    const got = await pending;
    await overwriteSharedBuffer();
    expect(got.length).toBe(5000);
    expect(got.every((v) => v === 0x42)).toBe(true);
    a.close();
    b.close();
  });
});
