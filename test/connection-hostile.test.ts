/**
 * What a hostile or broken network peer can do to a Listener and its
 * connections, and what it must not achieve: ending the process (an
 * uncaught error), keeping legitimate clients out (handshakes one at a
 * time, an unbounded queue, running out of descriptors), growing memory
 * without bound (floods of empty frames, huge headers before the handshake),
 * or deleting another listener's socket. The listener runs in a process of
 * its own (test/fixtures/listener-server.ts) where a crash shows as an exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

import { afterAll, describe, expect, test } from 'vitest';

import { arbitraryAddress, Client, Connection, DEFAULT_MAX_MESSAGE_SIZE, Listener, OSError, Pipe, wait } from '../src/index.js';
import { pythonFor } from './helpers/peers.js';

const KEY = new TextEncoder().encode('hostile tests');
const ROOT = new URL('..', import.meta.url).pathname;

interface Server {
  proc: ChildProcess;
  address: [string, number] | string;
  exited: Promise<number | null>;
  stderr(): string;
  stats(): Promise<Record<string, unknown>>;
}

const servers: ChildProcess[] = [];
afterAll(() => {
  for (const p of servers) p.kill('SIGKILL');
});

/** Starts test/fixtures/listener-server.ts, optionally under a descriptor limit. */
async function startServer(config: Record<string, unknown>, fdLimit?: number): Promise<Server> {
  const node = `exec "${process.execPath}" --import tsx test/fixtures/listener-server.ts '${JSON.stringify(config)}'`;
  const proc = spawn('sh', ['-c', fdLimit === undefined ? node : `ulimit -n ${fdLimit} && ${node}`], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  servers.push(proc);
  let err = '';
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lines = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const readers: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    const r = readers.shift();
    if (r) r(l);
    else queue.push(l);
  });
  const nextLine = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const l = queue.shift();
      if (l !== undefined) return resolve(l);
      readers.push(resolve);
      void exited.then((code) => reject(new Error(`listener process exited (${code}): ${err}`)));
    });
  const first = JSON.parse(await nextLine()) as { address: [string, number] | string };
  return {
    proc,
    address: first.address,
    exited,
    stderr: () => err,
    stats: async () => {
      proc.stdin!.write('stats\n');
      return JSON.parse(await nextLine()) as Record<string, unknown>;
    },
  };
}

/** Opens `n` TCP or Unix connections, one after the other, that never say anything. */
async function silentPeers(address: [string, number] | string, n: number): Promise<Socket[]> {
  const peers: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = typeof address === 'string' ? createConnection(address) : createConnection(address[1], address[0]);
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    peers.push(s);
    await new Promise<void>((r) => s.once('connect', () => r()).once('close', () => r()));
  }
  return peers;
}

/** A real billiard Client: connects with the key, sends 'hello', prints the answer. */
function pythonClient(address: [string, number] | string, key: Uint8Array): Promise<{ code: number | null; out: string; err: string }> {
  const script = [
    'import sys',
    'from billiard.connection import Client',
    'addr = sys.argv[1]',
    'addr = (addr.split(":")[0], int(addr.split(":")[1])) if ":" in addr else addr',
    'c = Client(addr, authkey=bytes.fromhex(sys.argv[2]))',
    "c.send('hello')",
    'print(c.recv())',
  ].join('\n');
  const addr = typeof address === 'string' ? address : `${address[0]}:${address[1]}`;
  return new Promise((resolve) => {
    const p = spawn(pythonFor('3.11'), ['-c', script, addr, Buffer.from(key).toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 45_000 });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

describe('a Listener survives its peers', () => {
  test.each([
    ['with', KEY],
    ['without', null],
  ])('peers that connect and reset before accept() (%s an authkey) do not end the process', async (_, key) => {
    const server = await startServer({ authkey: key === null ? null : Buffer.from(key).toString('hex'), acceptAfter: 1 });
    const [host, port] = server.address as [string, number];
    for (let i = 0; i < 20; i++) {
      const s = createConnection(port, host);
      s.on('error', () => undefined);
      // SO_LINGER 0: the close is a TCP RST, which the listener's side sees as ECONNRESET.
      await new Promise<void>((r) => s.once('connect', () => (s.resetAndDestroy(), r())));
    }
    // A legitimate client is served once the accept loop starts.
    const c = await Client(server.address as [string, number], { authkey: key, timeout: 20 });
    await c.send('after the resets');
    expect(await c.recv()).toEqual(['echo', 'after the resets']);
    c.close();
    server.proc.kill('SIGTERM');
    expect(await server.exited, server.stderr()).toBe(0);
  });

  test('200 silent peers do not keep a billiard client out, even with 128 descriptors', async () => {
    const server = await startServer({ authkey: Buffer.from(KEY).toString('hex') }, 128);
    const peers = await silentPeers(server.address, 200);
    const started = performance.now();
    const r = await pythonClient(server.address, KEY);
    const seconds = (performance.now() - started) / 1000;
    expect(r.err).toBe('');
    expect(r.out.trim()).toBe("['echo', 'hello']");
    expect(r.code).toBe(0);
    const stats = await server.stats();
    expect(stats.fds as number).toBeLessThan(128);
    for (const p of peers) p.destroy();
    server.proc.kill('SIGTERM');
    expect(await server.exited, server.stderr()).toBe(0);
    console.log(`billiard client served ${seconds.toFixed(2)} s after 200 silent peers connected; listener: ${JSON.stringify(stats)}`);
  });

  test('connections waiting for accept() are bounded: a listener without a key refuses newcomers once full', async () => {
    const listener = await Listener.create({ maxPending: 4 });
    const peers = await silentPeers(listener.address as string, 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(listener.pending).toBe(4);
    for (const p of peers) p.destroy();
    listener.close();
  });

  test('a peer may not send more than the handshake needs before it has authenticated', async () => {
    const listener = await Listener.create({ authkey: KEY });
    const reported = new Promise<Error>((r) => listener.once('handshakeError', (e) => r(e)));
    const raw = createConnection(listener.address as string);
    raw.on('error', () => undefined);
    raw.on('data', () => undefined);
    // A 1 MiB frame where the response to the challenge belongs, and its payload.
    raw.write(Buffer.from('00100000', 'hex'));
    raw.write(new Uint8Array(64 * 1024));
    const e = await reported;
    expect(e).toBeInstanceOf(OSError);
    expect((e as OSError).code).toBe('BAD_MESSAGE_LENGTH');
    expect(listener.pending).toBe(0);
    raw.destroy();
    listener.close();
  });

  test('accepted connections have a 64 MiB receive limit by default; Pipes have none', async () => {
    expect(DEFAULT_MAX_MESSAGE_SIZE).toBe(64 * 1024 * 1024);
    const listener = await Listener.create();
    const [server, client] = await Promise.all([listener.accept(), Client(listener.address)]);
    expect(server.maxMessageSize).toBe(DEFAULT_MAX_MESSAGE_SIZE);
    expect(client.maxMessageSize).toBe(Number.MAX_SAFE_INTEGER);
    client.stream.write(Buffer.from('04000001', 'hex')); // 64 MiB + 1
    await expect(server.recvBytes()).rejects.toMatchObject({ code: 'BAD_MESSAGE_LENGTH' });
    server.close();
    client.close();
    listener.close();
    const [a, b] = Pipe();
    expect(a.maxMessageSize).toBe(Number.MAX_SAFE_INTEGER);
    a.close();
    b.close();
  });

  test("closing a listener that failed to bind leaves the other listener's socket file alone", async () => {
    const path = arbitraryAddress('AF_UNIX') as string;
    const live = await Listener.create({ address: path });
    const failed = new Listener({ address: path });
    await expect(failed.ready).rejects.toMatchObject({ code: 'EADDRINUSE' });
    failed.close();
    expect(existsSync(path)).toBe(true);
    const [s, c] = await Promise.all([live.accept(), Client(path)]);
    s.close();
    c.close();
    live.close();
    expect(existsSync(path)).toBe(false);
  });
});

describe('memory a peer can make a connection hold', () => {
  test('a flood of empty frames nobody reads pauses the stream (each frame counts)', async () => {
    const [a, b] = Pipe();
    expect(await b.poll()).toBe(false); // b reads from now on
    const heapBefore = process.memoryUsage().heapUsed;
    // 4 Mi empty frames: 16 MiB on the wire; queued as objects they would take about a gigabyte of heap.
    const block = new Uint8Array(1024 * 1024);
    let written = 0;
    const raw = a.stream;
    while (written < 16 && raw.write(block)) written++;
    for (let i = 0; i < 40 && !b.stream.isPaused(); i++) await new Promise((r) => setTimeout(r, 25));
    expect(b.stream.isPaused()).toBe(true);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(128 * 1024 * 1024);
    // Reading drains the queue and lets the rest in.
    for (let i = 0; i < 1000; i++) expect((await b.recvBytes()).length).toBe(0);
    a.close();
    b.close();
  });

  test('a 64 MiB frame is assembled in one buffer of its size (one copy of the payload)', async () => {
    const [a, b] = Pipe();
    const payload = new Uint8Array(64 * 1024 * 1024);
    payload[0] = 1;
    payload[payload.length - 1] = 2;
    const before = process.memoryUsage().arrayBuffers;
    const got = b.recvBytes();
    await a.sendBytes(payload);
    const frame = await got;
    expect(frame.length).toBe(payload.length);
    expect([frame[0], frame[frame.length - 1]]).toEqual([1, 2]);
    expect(frame.byteOffset).toBe(0);
    expect(frame.buffer.byteLength).toBe(payload.length);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(payload.length * 1.5);
    a.close();
    b.close();
  });
});

describe('one copy of a large message on each side', () => {
  test('send() of a 64 MiB bytes value writes the caller\'s array: no copy is made', async () => {
    const [a, b] = Pipe();
    const payload = new Uint8Array(64 * 1024 * 1024).fill(7);
    const before = process.memoryUsage().arrayBuffers;
    const sent = a.send(payload); // pickling happens before send() returns its promise
    const during = process.memoryUsage().arrayBuffers - before;
    const got = (await b.recv()) as Uint8Array;
    await sent;
    expect(during).toBeLessThan(1024 * 1024);
    expect(got.length).toBe(payload.length);
    expect(got[got.length - 1]).toBe(7);
    a.close();
    b.close();
  });
});

describe('one copy of a large message on receiving', () => {
  test('recv() of a 64 MiB bytes value keeps one copy: the value is a view of the message buffer', async () => {
    const [a, b] = Pipe();
    const payload = new Uint8Array(64 * 1024 * 1024).fill(9);
    const sent = a.send(payload);
    const before = process.memoryUsage().arrayBuffers;
    const got = (await b.recv()) as Uint8Array;
    const grown = process.memoryUsage().arrayBuffers - before;
    await sent;
    expect(got.length).toBe(payload.length);
    expect(got[0]).toBe(9);
    expect(grown).toBeLessThan(payload.length * 1.5);
    // Small values of the same message are still copies of their own.
    const sent2 = a.send([new Uint8Array(10), payload]); // not awaited: it completes as b reads
    const [small, big] = (await b.recv()) as [Uint8Array, Uint8Array];
    await sent2;
    expect(small.buffer.byteLength).toBe(10);
    expect(big.buffer.byteLength).toBeGreaterThan(payload.length);
    a.close();
    b.close();
  });
});

describe('timeouts past setTimeout\'s cap wait, and Infinity waits for ever', () => {
  test.each([
    ['poll(Infinity)', (c: Connection) => c.poll(Infinity)],
    ['poll(3e6)', (c: Connection) => c.poll(3e6)],
    ['wait([c], 1e7)', (c: Connection) => wait([c], 1e7).then((r) => r.length > 0)],
  ])('%s is still waiting after 200 ms, then sees the data', async (_, call) => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const [a, b] = Pipe();
    let settled = false;
    const pending = call(b).then((v) => ((settled = true), v));
    await new Promise((r) => setTimeout(r, 200));
    expect(settled).toBe(false);
    await a.send('now');
    expect(await pending).toBe(true);
    process.off('warning', onWarning);
    expect(warnings).not.toContain('TimeoutOverflowWarning');
    a.close();
    b.close();
  });
});
