/**
 * Hostile and broken peers, played by a raw socket that writes exactly the
 * bad bytes: every case ends in a typed error (AuthenticationError, OSError
 * with a code, EOFError, UnpicklingError, TimeoutError), nothing is
 * unpickled before authentication, and a connection that can go on does.
 */
import { createConnection, createServer, type Socket } from 'node:net';

import { describe, expect, test } from 'vitest';

import {
  answerChallenge,
  arbitraryAddress,
  AuthenticationError,
  Client,
  Connection,
  deliverChallenge,
  dumps,
  EOFError,
  Listener,
  OSError,
  Pipe,
  PickleRegistry,
  PyGlobal,
  PyObject,
  TimeoutError,
  tuple,
  UnpicklingError,
} from '../src/index.js';

const KEY = new TextEncoder().encode('key');
const h = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex.replace(/ /g, ''), 'hex'));

/** A Connection whose peer is a raw stream the test writes bytes to. */
function rawPair(): { conn: Connection; raw: Connection['stream'] } {
  const [conn, other] = Pipe();
  return { conn, raw: other.stream };
}

/** The first peer the listener drops for a failed handshake: [error, peer address]. */
function firstHandshakeError(listener: Listener): Promise<[Error, unknown]> {
  return new Promise((resolve) => listener.once('handshakeError', (e, peer) => resolve([e, peer])));
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('framing', () => {
  test('a negative length header (not -1) is a protocol error', async () => {
    const { conn, raw } = rawPair();
    raw.write(h('fffffffe 00000001 5a'));
    const e = await rejection(conn.recvBytes());
    expect(e).toBeInstanceOf(OSError);
    expect((e as OSError).code).toBe('BAD_HEADER');
    conn.close();
  });

  test('an oversized header is refused by maxlength before its body arrives', async () => {
    const { conn, raw } = rawPair();
    const pending = conn.recvBytes(256);
    raw.write(h('7fffffff 00'));
    const e = await rejection(pending);
    expect((e as OSError).code).toBe('BAD_MESSAGE_LENGTH');
    // A duplex end stops reading but can still write, as in CPython.
    expect(conn.readable).toBe(false);
    expect(conn.writable).toBe(true);
    await expect(conn.recvBytes()).rejects.toMatchObject({ code: 'WRITE_ONLY' });
    conn.close();
  });

  test('maxMessageSize refuses a huge header as soon as it arrives', async () => {
    const [a, b] = Pipe({ connection: { maxMessageSize: 1024 } });
    b.stream.write(h('7fffffff'));
    const e = await rejection(a.recv());
    expect((e as OSError).code).toBe('BAD_MESSAGE_LENGTH');
    a.close();
    b.close();
  });

  test('a header claiming 2 GiB followed by a hang-up costs no allocation and ends in EOFError', async () => {
    const { conn, raw } = rawPair();
    const before = process.memoryUsage().arrayBuffers;
    raw.write(h('7fffffff 616263'));
    raw.end();
    const e = await rejection(conn.recvBytes());
    expect(e).toBeInstanceOf(EOFError);
    expect((e as EOFError).code).toBe('TRUNCATED_FRAME');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    conn.close();
  });

  test('a peer hanging up mid-header and mid-body raises EOFError; between frames a clean EOFError', async () => {
    for (const [bytes, code] of [
      ['0000', 'TRUNCATED_FRAME'],
      ['00000005 6162', 'TRUNCATED_FRAME'],
      ['00000005', 'TRUNCATED_FRAME'],
      ['', 'EOF'],
    ] as const) {
      const { conn, raw } = rawPair();
      raw.end(h(bytes));
      const e = await rejection(conn.recvBytes());
      expect(e, bytes).toBeInstanceOf(EOFError);
      expect((e as EOFError).code, bytes).toBe(code);
      conn.close();
    }
  });

  test('the -1 long header is read (as CPython 3.8+ writes it), with any length', async () => {
    const { conn, raw } = rawPair();
    raw.write(h('ffffffff 0000000000000003 78797a 00000001 21'));
    expect(Buffer.from(await conn.recvBytes()).toString()).toBe('xyz');
    expect(Buffer.from(await conn.recvBytes()).toString()).toBe('!');
    conn.close();
  });

  test('a frame that is not a pickle raises UnpicklingError and the next frame still loads', async () => {
    const { conn, raw } = rawPair();
    const good = dumps({ after: 'garbage' });
    raw.write(h('00000003 616263 00000000 00000002 8003'));
    const header = Buffer.alloc(4);
    header.writeInt32BE(good.length);
    raw.write(Buffer.concat([header, good]));
    const e1 = await rejection(conn.recv());
    expect(e1).toBeInstanceOf(UnpicklingError);
    expect((e1 as UnpicklingError).code).toBe('STACK_UNDERFLOW');
    const e2 = await rejection(conn.recv());
    expect(e2).toBeInstanceOf(UnpicklingError); // an empty frame is not EOF
    const e3 = await rejection(conn.recv());
    expect(e3).toBeInstanceOf(UnpicklingError); // truncated pickle
    expect(await conn.recv()).toEqual({ __proto__: null, after: 'garbage' });
    conn.close();
  });

  test('frames split over many reads and many frames in one read', async () => {
    const { conn, raw } = rawPair();
    const frames = Buffer.concat(Array.from({ length: 50 }, (_, i) => {
      const body = Buffer.from(dumps(i));
      const hdr = Buffer.alloc(4);
      hdr.writeInt32BE(body.length);
      return Buffer.concat([hdr, body]);
    }));
    // One byte per write for the first half, everything at once for the rest.
    const half = Math.floor(frames.length / 2);
    for (let i = 0; i < half; i++) raw.write(frames.subarray(i, i + 1));
    raw.write(frames.subarray(half));
    for (let i = 0; i < 50; i++) expect(await conn.recv()).toBe(i);
    conn.close();
  });
});

describe('handshake', () => {
  test('a wrong authkey fails on both sides, with #FAILURE# sent; the listener drops the peer and reports it', async () => {
    const listener = await Listener.create({ authkey: KEY });
    const accepted = listener.accept();
    const reported = firstHandshakeError(listener);
    const ce = await rejection(Client(listener.address, { authkey: new TextEncoder().encode('other') }));
    const [se, peer] = await reported;
    expect(se).toBeInstanceOf(AuthenticationError);
    expect(se.message).toBe('digest received was wrong');
    expect(peer).toBe('');
    expect(ce).toBeInstanceOf(AuthenticationError);
    expect(ce.message).toBe('digest sent was rejected');
    // The failed peer never reaches accept(); a good one does.
    const [server, client] = await Promise.all([accepted, Client(listener.address, { authkey: KEY })]);
    await client.send('good');
    expect(await server.recv()).toBe('good');
    server.close();
    client.close();
    listener.close();
  });

  test('a pickle sent instead of the response is taken as a (wrong) response, never unpickled', async () => {
    const calls: unknown[] = [];
    const registry = new PickleRegistry();
    registry.register('evil', 'payload', { call: (args) => calls.push(args) });
    // evil.payload() as a pickle: loading it calls the registered handler.
    const pickle = dumps(new PyObject('reduce', new PyGlobal('evil', 'payload'), tuple()));
    const listener = await Listener.create({ authkey: KEY, connection: { loadOptions: { registry } } });
    const reported = firstHandshakeError(listener);
    const raw = createConnection(listener.address as string);
    const hdr = Buffer.alloc(4);
    hdr.writeInt32BE(pickle.length);
    raw.on('data', () => undefined);
    raw.on('error', () => undefined);
    raw.once('connect', () => raw.write(Buffer.concat([hdr, pickle])));
    const [e] = await reported;
    expect(e).toBeInstanceOf(AuthenticationError);
    expect(calls).toEqual([]);
    // The same frame, once authenticated, is unpickled with that registry: the payload is live.
    const [server, client] = await Promise.all([listener.accept(), Client(listener.address, { authkey: KEY })]);
    await client.sendBytes(pickle);
    await server.recv();
    expect(calls).toHaveLength(1);
    raw.destroy();
    server.close();
    client.close();
    listener.close();
  });

  test('garbage instead of a challenge', async () => {
    const { conn, raw } = rawPair();
    raw.write(h('00000005 68656c6c6f'));
    const e = await rejection(answerChallenge(conn, KEY));
    expect(e).toBeInstanceOf(AuthenticationError);
    expect(e.message).toBe("Protocol error, expected challenge: message=b'hello'");
    conn.close();
  });

  test('a challenge too short, and one with an unknown digest', async () => {
    for (const [payload, message] of [
      ['234348414c4c454e474523 0102030405', 'challenge too short: 5 bytes'],
      [`234348414c4c454e474523 7b7368613531327d ${'00'.repeat(40)}`, 'unsupported message length'],
    ] as const) {
      const { conn, raw } = rawPair();
      const body = h(payload);
      const hdr = Buffer.alloc(4);
      hdr.writeInt32BE(body.length);
      raw.write(Buffer.concat([hdr, body]));
      const e = await rejection(answerChallenge(conn, KEY));
      expect(e).toBeInstanceOf(AuthenticationError);
      expect(e.message).toContain(message);
      conn.close();
    }
  });

  test('a response of the wrong length or digest sends #FAILURE#', async () => {
    for (const [response, message] of [
      ['00'.repeat(20), "expected 'md5' of length 16 got 20"],
      [`7b7368613235367d${'00'.repeat(31)}`, "expected 'sha256' of length 32 got 31"],
      [`7b736861317d${'00'.repeat(20)}`, 'unsupported message length'],
    ] as const) {
      const [node, peer] = Pipe();
      const challenger = rejection(deliverChallenge(node, KEY));
      await peer.recvBytes(256);
      await peer.sendBytes(h(response));
      const e = await challenger;
      expect(e).toBeInstanceOf(AuthenticationError);
      expect(e.message).toContain(message);
      expect(Buffer.from(await peer.recvBytes(256)).toString()).toBe('#FAILURE#');
      node.close();
      peer.close();
    }
  });

  test('a handshake frame over 256 bytes fails with no #FAILURE#', async () => {
    const [node, peer] = Pipe();
    const challenger = rejection(deliverChallenge(node, KEY));
    await peer.recvBytes(256);
    await peer.sendBytes(new Uint8Array(300));
    expect(((await challenger) as OSError).code).toBe('BAD_MESSAGE_LENGTH');
    expect(await peer.poll(0.05)).toBe(false);
    node.close();
    peer.close();
  });

  test('a peer that never answers: the timeout wins, then the AbortSignal', async () => {
    const silent = createServer((s: Socket) => s.on('data', () => undefined));
    const path = arbitraryAddress('AF_UNIX') as string;
    await new Promise<void>((r) => silent.listen(path, r));
    const e = await rejection(Client(path, { authkey: KEY, timeout: 0.2 }));
    expect(e).toBeInstanceOf(TimeoutError);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('stop')), 100);
    const e2 = await rejection(Client(path, { authkey: KEY, signal: ac.signal }));
    expect(e2.message).toBe('stop');
    silent.close();
  });

  test('a client that connects and sends nothing is dropped after the handshake timeout; the listener stays usable', async () => {
    const listener = await Listener.create({ authkey: KEY, handshakeTimeout: 0.2 });
    const reported = firstHandshakeError(listener);
    const idle = createConnection(listener.address as string);
    idle.on('data', () => undefined);
    idle.on('error', () => undefined);
    const [e] = await reported;
    expect(e).toBeInstanceOf(TimeoutError);
    expect(listener.pending).toBe(0);
    const [server, client] = await Promise.all([listener.accept(), Client(listener.address, { authkey: KEY })]);
    await client.send('still works');
    expect(await server.recv()).toBe('still works');
    idle.destroy();
    server.close();
    client.close();
    listener.close();
  });
});
