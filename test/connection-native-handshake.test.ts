/**
 * The native handshake (native/handshake.h, src/connection/handshake.ts
 * `handshakeNative`), which Listener and Client use on sockets: every peer
 * behaviour ends in the same error, and the same bytes on the wire, as
 * with the JavaScript handshake (`setNativeHandshake(false)`); the bytes a
 * peer sends after its last handshake frame reach the connection; a
 * listener that drops or closes peers mid-handshake frees their sockets at
 * once. Real CPython peers on both sides are in connection-interop.
 */
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

import { afterEach, describe, expect, test } from 'vitest';

import { arbitraryAddress, Client, Listener, type Address } from '../src/index.js';
import { nativeHandshakeUsable, setNativeHandshake } from '../src/connection/handshake.js';
import { pythonFor } from './helpers/peers.js';

const KEY = new TextEncoder().encode('native-key');
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const cat = (...parts: Array<Uint8Array | string>): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
const CHALLENGE = '#CHALLENGE#';

function frame(payload: Uint8Array | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const header = Buffer.alloc(4);
  header.writeInt32BE(body.length);
  return Buffer.concat([header, body]);
}

const md5 = (msg: Uint8Array): Buffer => createHmac('md5', KEY).update(msg).digest();

/** A raw peer: reads frames, writes bytes, records all it received. */
class RawPeer {
  received = Buffer.alloc(0);
  #waiting: (() => void) | null = null;
  #ended = false;
  constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.#waiting?.();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#waiting?.();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#waiting?.();
    });
    socket.on('error', () => undefined);
  }

  #at = 0;

  /** The next frame's payload, or null at end of file. */
  async recvFrame(): Promise<Buffer | null> {
    for (;;) {
      const have = this.received.length - this.#at;
      if (have >= 4) {
        const n = this.received.readInt32BE(this.#at);
        if (have >= 4 + n) {
          const out = this.received.subarray(this.#at + 4, this.#at + 4 + n);
          this.#at += 4 + n;
          return out;
        }
      }
      if (this.#ended) return null;
      await new Promise<void>((r) => (this.#waiting = r));
      this.#waiting = null;
    }
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Resolves once the other side has closed the connection. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => (this.#ended ? resolve() : void setTimeout(check, 5));
      check();
    });
  }
}

/** What a failed handshake produced, for comparing the two implementations. */
interface Seen {
  error: { name: string; code: unknown; message: string } | null;
  /** What the peer received, in hex, the random bytes of a {sha256} challenge masked. */
  wire: string;
}

const masked = (wire: Buffer): string => wire.toString('hex').replace(/(234348414c4c454e4745237b7368613235367d)[0-9a-f]{80}/g, '$1<random>');

function describeError(e: unknown): Seen['error'] {
  if (e === null) return null;
  const err = e as Error & { code?: unknown };
  return { name: err.constructor.name, code: err.code, message: err.message };
}

type PeerScript = (peer: RawPeer) => Promise<void>;

const servers: Server[] = [];
afterEach(() => {
  setNativeHandshake(true);
  for (const s of servers.splice(0)) s.close();
});

/** A raw server running `script` on each connection; its TCP address, and the peers it saw. */
async function rawServer(script: PeerScript): Promise<{ address: Address; peers: RawPeer[] }> {
  const peers: RawPeer[] = [];
  const server = createServer((socket) => {
    const peer = new RawPeer(socket);
    peers.push(peer);
    void script(peer).catch(() => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { address: ['127.0.0.1', (server.address() as AddressInfo).port], peers };
}

/** Client() against a raw server playing `script`: its error and what the server received. */
async function asClient(native: boolean, script: PeerScript, options: { timeout?: number } = {}): Promise<Seen> {
  setNativeHandshake(native);
  const { address, peers } = await rawServer(script);
  let error: unknown = null;
  try {
    (await Client(address, { authkey: KEY, timeout: options.timeout })).close();
  } catch (e) {
    error = e;
  }
  await peers[0]!.closed();
  return { error: describeError(error), wire: masked(peers[0]!.received) };
}

/** A raw client playing `script` against a Listener: the listener's handshakeError and what the client received. */
async function asServer(native: boolean, script: PeerScript): Promise<Seen> {
  setNativeHandshake(native);
  const listener = await Listener.create(['127.0.0.1', 0], { authkey: KEY, handshakeTimeout: 5 });
  const reported = new Promise<Error>((r) => listener.once('handshakeError', (e: Error) => r(e)));
  const [, port] = listener.address as [string, number];
  const peer = new RawPeer(connect(port, '127.0.0.1'));
  void script(peer).catch(() => undefined);
  const error = await reported;
  await peer.closed();
  listener.close();
  return { error: describeError(error), wire: masked(peer.received) };
}

/** A challenge for the legacy (20-byte) form. */
const LEGACY = new Uint8Array(20).fill(7);

/** The server's half done right (legacy form), then `after` for the client's challenge. */
const goodServerThen =
  (after: (peer: RawPeer, challenge: Buffer) => void): PeerScript =>
  async (peer) => {
    peer.send(frame(cat(CHALLENGE, LEGACY)));
    await peer.recvFrame(); // the response
    peer.send(frame('#WELCOME#'));
    const ours = await peer.recvFrame();
    if (ours === null) return;
    after(peer, ours);
    await peer.recvFrame(); // the verdict
    peer.socket.end();
  };

/** The client's answer to the listener's challenge done right, then `after` (then it reads what comes, and hangs up). */
const goodClientThen =
  (after: (peer: RawPeer) => void | Promise<void>): PeerScript =>
  async (peer) => {
    const challenge = await peer.recvFrame();
    if (challenge === null) return;
    const message = challenge.subarray(CHALLENGE.length);
    // The listener sends the {sha256} form.
    const mac = createHmac('sha256', KEY).update(message).digest();
    peer.send(frame(cat('{sha256}', mac)));
    await peer.recvFrame(); // #WELCOME#
    await after(peer);
    await peer.recvFrame();
    peer.socket.end();
  };

const clientCases: Array<[string, PeerScript, Partial<NonNullable<Seen['error']>>]> = [
  ['garbage instead of a challenge', async (p) => p.send(frame('hello')), { name: 'AuthenticationError', message: "Protocol error, expected challenge: message=b'hello'" }],
  ['a challenge too short', async (p) => p.send(frame(cat(CHALLENGE, new Uint8Array(5)))), { message: 'challenge too short: 5 bytes', code: 'PROTOCOL' }],
  ['a challenge with an unknown digest', async (p) => p.send(frame(cat(CHALLENGE, '{sha512}', new Uint8Array(40)))), { code: 'BAD_DIGEST' }],
  ['a frame over 256 bytes', async (p) => p.send(frame(new Uint8Array(300))), { name: 'OSError', code: 'BAD_MESSAGE_LENGTH' }],
  ['a negative length', async (p) => p.send(Buffer.from('fffffffb', 'hex')), { name: 'OSError', code: 'BAD_HEADER' }],
  ['a 64-bit length of 2**53', async (p) => p.send(Buffer.from('ffffffff0020000000000000', 'hex')), { name: 'OSError', code: 'BAD_HEADER' }],
  ['a 64-bit length over the limit', async (p) => p.send(Buffer.from('ffffffff0000000000000200', 'hex')), { name: 'OSError', code: 'BAD_MESSAGE_LENGTH' }],
  ['a hang-up before a frame', async (p) => void p.socket.end(), { name: 'EOFError' }],
  [
    'a hang-up inside a frame',
    async (p) => {
      p.send(cat(Buffer.from('00000014', 'hex'), new Uint8Array(5)));
      p.socket.end();
    },
    { name: 'EOFError', code: 'TRUNCATED_FRAME' },
  ],
  [
    'our response rejected',
    async (p) => {
      p.send(frame(cat(CHALLENGE, LEGACY)));
      await p.recvFrame();
      p.send(frame('#FAILURE#'));
      p.socket.end();
    },
    { code: 'REJECTED', message: 'digest sent was rejected' },
  ],
  ['a response of the wrong length', goodServerThen((p) => p.send(frame(new Uint8Array(20)))), { message: "expected 'md5' of length 16 got 20" }],
  ['a wrong response', goodServerThen((p) => p.send(frame(cat('{sha256}', new Uint8Array(32))))), { code: 'WRONG_DIGEST' }],
  ['a response with an unsupported digest', goodServerThen((p) => p.send(frame(cat('{sha1}', new Uint8Array(20))))), { code: 'BAD_DIGEST' }],
];

describe('Client: the same errors and bytes as the JavaScript handshake', () => {
  test('the addon found HMAC, so the native handshake is what Listener and Client use here', () => {
    expect(nativeHandshakeUsable()).toBe(true);
  });

  test.each(clientCases)('%s', async (_name, script, expected) => {
    const native = await asClient(true, script);
    const js = await asClient(false, script);
    expect(native.error).toMatchObject(expected);
    expect(native).toEqual(js);
  });

  test('a good handshake writes the same frames, and a wrong key the same #FAILURE#', async () => {
    const good = goodServerThen((p, ours) => {
      const message = ours.subarray(CHALLENGE.length);
      p.send(frame(cat('{sha256}', createHmac('sha256', KEY).update(message).digest())));
    });
    for (const native of [true, false]) {
      const seen = await asClient(native, good);
      expect(seen.error).toBeNull();
      // Its response to the legacy challenge (raw MD5), then its {sha256} challenge, then #WELCOME#.
      expect(seen.wire).toBe(`${frame(md5(LEGACY)).toString('hex')}0000003b234348414c4c454e4745237b7368613235367d<random>${frame('#WELCOME#').toString('hex')}`);
    }
  });

  test('a reset: OSError ECONNRESET (seen while connecting or while reading, as the timing falls)', async () => {
    const reset: PeerScript = async (p) => void p.socket.resetAndDestroy();
    for (const native of [true, false]) {
      const seen = await asClient(native, reset);
      expect(seen.error).toMatchObject({ name: 'OSError', code: 'ECONNRESET' });
      expect(seen.wire).toBe('');
    }
  });

  test('a silent peer: the timeout, then the signal, end it', async () => {
    for (const native of [true, false]) {
      setNativeHandshake(native);
      const { address } = await rawServer(async () => undefined);
      const timedOut = await Client(address, { authkey: KEY, timeout: 0.2 }).catch((e: Error) => e);
      expect(timedOut).toMatchObject({ name: 'TimeoutError' });
      expect((timedOut as Error).message).toMatch(/^authentication timed out after 0\.\d+ s$/);
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('stop')), 50);
      await expect(Client(address, { authkey: KEY, signal: ac.signal })).rejects.toThrow('stop');
    }
  });

  test('a refused connection: the same OSError', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const seen = [];
    for (const native of [true, false]) {
      setNativeHandshake(native);
      seen.push(describeError(await Client(['127.0.0.1', port], { authkey: KEY }).catch((e: unknown) => e)));
    }
    expect(seen[0]).toMatchObject({ name: 'OSError', code: 'ECONNREFUSED' });
    expect(seen[0]).toEqual(seen[1]);
  });

  test('over AF_UNIX, on the socket Node connected', async () => {
    const path = arbitraryAddress('AF_UNIX') as string;
    const server = createServer((s) => {
      const peer = new RawPeer(s);
      void (async () => {
        peer.send(frame(cat(CHALLENGE, LEGACY)));
        await peer.recvFrame();
        peer.send(frame('#FAILURE#'));
      })();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    const seen = [];
    for (const native of [true, false]) {
      setNativeHandshake(native);
      seen.push(describeError(await Client(path, { authkey: KEY }).catch((e: unknown) => e)));
    }
    expect(seen[0]).toMatchObject({ code: 'REJECTED' });
    expect(seen[0]).toEqual(seen[1]);
  });

  test("a frame the server sends with its last handshake frame reaches the connection, not the handshake's reader", async () => {
    const pickleOfHello = Buffer.from('80049509000000000000008c0568656c6c6f942e', 'hex'); // pickle.dumps('hello', 4)
    for (const native of [true, false]) {
      setNativeHandshake(native);
      const { address } = await rawServer(
        goodServerThen((p, ours) => {
          const message = ours.subarray(CHALLENGE.length);
          // The response and an application frame in one write.
          p.send(cat(frame(cat('{sha256}', createHmac('sha256', KEY).update(message).digest())), frame(pickleOfHello)));
        }),
      );
      const conn = await Client(address, { authkey: KEY });
      expect(await conn.recv()).toBe('hello');
      conn.close();
    }
  });
});

const serverCases: Array<[string, PeerScript, Partial<NonNullable<Seen['error']>>]> = [
  ['a response of the wrong length', async (p) => void ((await p.recvFrame()) && p.send(frame(new Uint8Array(20)))), { message: "expected 'md5' of length 16 got 20" }],
  ['a wrong response', async (p) => void ((await p.recvFrame()) && p.send(frame(cat('{sha256}', new Uint8Array(32))))), { code: 'WRONG_DIGEST' }],
  ['an unsupported digest', async (p) => void ((await p.recvFrame()) && p.send(frame(cat('{sha1}', new Uint8Array(20))))), { code: 'BAD_DIGEST' }],
  ['a frame over 256 bytes', async (p) => void ((await p.recvFrame()) && p.send(frame(new Uint8Array(257)))), { code: 'BAD_MESSAGE_LENGTH' }],
  ['a hang-up', async (p) => void ((await p.recvFrame()) && p.socket.end()), { name: 'EOFError' }],
  ['garbage instead of its challenge', goodClientThen((p) => p.send(frame('nope'))), { message: "Protocol error, expected challenge: message=b'nope'" }],
  ['a challenge too short', goodClientThen((p) => p.send(frame(cat(CHALLENGE, new Uint8Array(3))))), { message: 'challenge too short: 3 bytes' }],
  ['a challenge with an unknown digest', goodClientThen((p) => p.send(frame(cat(CHALLENGE, '{md4}', new Uint8Array(40))))), { code: 'BAD_DIGEST' }],
  [
    'a rejection of the listener',
    goodClientThen(async (p) => {
      p.send(frame(cat(CHALLENGE, LEGACY)));
      await p.recvFrame();
      p.send(frame('#FAILURE#'));
    }),
    { code: 'REJECTED' },
  ],
];

describe('Listener: the same errors and bytes as the JavaScript handshake', () => {
  test.each(serverCases)('%s', async (_name, script, expected) => {
    const native = await asServer(true, script);
    const js = await asServer(false, script);
    expect(native.error).toMatchObject(expected);
    expect(native).toEqual(js);
  });

  test('a frame the client sends with its #WELCOME# reaches accept(), not the handshake', async () => {
    const pickleOfHi = Buffer.from('80049506000000000000008c026869942e', 'hex'); // pickle.dumps('hi', 4)
    for (const native of [true, false]) {
      setNativeHandshake(native);
      const listener = await Listener.create(['127.0.0.1', 0], { authkey: KEY });
      const [, port] = listener.address as [string, number];
      const peer = new RawPeer(connect(port, '127.0.0.1'));
      const accepted = listener.accept();
      const challenge = (await peer.recvFrame())!;
      peer.send(frame(cat('{sha256}', createHmac('sha256', KEY).update(challenge.subarray(CHALLENGE.length)).digest())));
      expect((await peer.recvFrame())!.toString()).toBe('#WELCOME#');
      peer.send(frame(cat(CHALLENGE, LEGACY)));
      expect(await peer.recvFrame()).toEqual(md5(LEGACY));
      // #WELCOME# and a message in one write.
      peer.send(cat(frame('#WELCOME#'), frame(pickleOfHi)));
      const c = await accepted;
      expect(await c.recv()).toBe('hi');
      c.close();
      peer.socket.destroy();
      listener.close();
    }
  });

  test('peers dropped or closed mid-handshake are hung up on at once; the listener goes on', async () => {
    const listener = await Listener.create(['127.0.0.1', 0], { authkey: KEY, maxPending: 4 });
    const [, port] = listener.address as [string, number];
    const dropped: string[] = [];
    listener.on('handshakeError', (e: Error & { code?: string }) => dropped.push(String(e.code)));
    // Six silent peers: the two oldest are dropped for the four newer ones.
    const silent = Array.from({ length: 6 }, () => new RawPeer(connect(port, '127.0.0.1')));
    await Promise.all(silent.slice(0, 2).map((p) => p.closed()));
    expect(dropped).toEqual(['PENDING_QUEUE_FULL', 'PENDING_QUEUE_FULL']);
    expect(listener.pending).toBe(4);
    // The listener still serves a real client (dropping the oldest silent one for it).
    const [server, client] = await Promise.all([listener.accept(), Client(listener.address, { authkey: KEY })]);
    await client.send('through');
    expect(await server.recv()).toBe('through');
    // close() hangs up on those still in their handshake.
    listener.close();
    await Promise.all(silent.map((p) => p.closed()));
    server.close();
    client.close();
  });
});

describe("a billiard client's first request after the handshake", () => {
  test('is not held for a delayed acknowledgement: the listener acknowledges its #WELCOME# at once', async () => {
    // billiard leaves Nagle's algorithm on: its first request, written right after its #WELCOME#, waits
    // until #WELCOME# is acknowledged, and the kernel delays that acknowledgement (at least 40 ms) while
    // the listener has nothing to send. Every manager call on a new connection paid it (a Python
    // client made a dict proxy in 143 ms, against a billiard server too). The client reports the
    // segments its socket still has unacknowledged once the listener has accepted (TCP_INFO).
    const listener = await Listener.create(['127.0.0.1', 0], { authkey: KEY });
    const [, port] = listener.address as [string, number];
    const code = [
      'import socket, struct, sys',
      'from billiard.connection import Client',
      `c = Client(('127.0.0.1', ${port}), authkey=bytes.fromhex('${Buffer.from(KEY).toString('hex')}'))`,
      'print("connected", flush=True)',
      'sys.stdin.readline()',
      's = socket.fromfd(c.fileno(), socket.AF_INET, socket.SOCK_STREAM)',
      "print(struct.unpack_from('I', s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0], flush=True)",
      'c.send("request")',
      'print(c.recv(), flush=True)',
    ].join('\n');
    const child = spawn(pythonFor('3.11'), ['-c', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const conn = await listener.accept();
    expect((await lines.next()).value).toBe('connected');
    child.stdin!.write('\n');
    expect((await lines.next()).value).toBe('0');
    expect(await conn.recv()).toBe('request');
    await conn.send('reply');
    expect((await lines.next()).value).toBe('reply');
    conn.close();
    listener.close();
  });
});
