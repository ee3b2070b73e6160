/**
 * `npm run soak:hostile`: a Listener (test/fixtures/listener-server.ts, in
 * a process of its own, with an authkey) serves real billiard clients while
 * hostile peers (1,000 by default) connect and reset, send garbage, send huge
 * length headers, stall in the handshake, and, having authenticated, send
 * pickle bombs (huge memo indexes, length fields, allocation through
 * handlers). It prints what the legitimate clients got and what the listener
 * process holds before and after (RSS, open descriptors).
 *
 *   npm run soak:hostile [-- --peers 1000 --concurrency 100 --transport tcp|unix]
 *
 * Nothing here asserts: it reports. The listener must still be running at
 * the end (the script exits 1 otherwise), and every legitimate request must
 * have been served.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { Client } from '../src/index.js';
import { findPython } from '../src/process/python.js';
import { collidingKeys } from '../test/helpers/v8-collisions.js';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const KEY = randomBytes(32);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
}
const PEERS = Number(arg('peers', '1000'));
const CONCURRENCY = Number(arg('concurrency', '100'));
const TRANSPORT = arg('transport', 'tcp');
const BACKLOG = process.argv.includes('--backlog') ? Number(arg('backlog', '1')) : undefined;

type Address = [string, number] | string;
const h = (hex: string): Buffer => Buffer.from(hex.replace(/\s+/g, ''), 'hex');

/** Frames a pickle with the 4-byte header. */
function frame(payload: Buffer): Buffer {
  const hdr = Buffer.alloc(4);
  hdr.writeInt32BE(payload.length);
  return Buffer.concat([hdr, payload]);
}

/** builtins.bytearray(1 MiB) called n times in one pickle (protocol 2): about 10 bytes a call. */
function bytearrayBomb(n: number): Buffer {
  const parts = [h('8002'), Buffer.from('cbuiltins\nbytearray\nq\x00', 'latin1')];
  const call = h('6800 4a00001000 85 52 30'); // BINGET 0, BININT 2**20, TUPLE1, REDUCE, POP
  for (let i = 0; i < n; i++) parts.push(call);
  parts.push(h('4e2e')); // None STOP
  return Buffer.concat(parts);
}

/** x = ['lol']; nine times x = [x] * 10 (spec/pickle.md §11.5): 10**9 leaves from a few hundred bytes. */
function billionLaughs(): Buffer {
  const parts = [h('8004'), h('5d94'), h('8c036c6f6c94'), h('61')]; // ['lol'], memo 0, 1
  let memo = 0;
  for (let level = 0; level < 9; level++) {
    parts.push(h('5d94 28')); // EMPTY_LIST MEMOIZE MARK
    for (let k = 0; k < 10; k++) parts.push(Buffer.from([0x68, memo])); // BINGET previous list
    parts.push(h('65')); // APPENDS
    memo = memo === 0 ? 2 : memo + 1;
  }
  parts.push(h('2e'));
  return Buffer.concat(parts);
}

/**
 * n far memo indexes (LONG_BINPUT) whose V8 hashes share their low 16 bits:
 * as number keys of one Map they all land in one bucket (16,000 of them took
 * 600 ms to load, where 16,000 other indexes took 8).
 */
function farMemoFlood(n: number): Buffer {
  const parts = [h('8004')];
  // Non-negative int32s whose hashes end in 16 zero bits (small integers as the far memo's keys once were).
  const ks = collidingKeys.int32s(3 * n, 0n).filter((k) => k >= 1000).slice(0, n);
  for (const k of ks) {
    const put = Buffer.from([0x4e, 0x72, 0, 0, 0, 0, 0x30]); // NONE LONG_BINPUT k POP
    put.writeUInt32LE(k, 2);
    parts.push(put);
  }
  parts.push(h('4e2e'));
  return Buffer.concat(parts);
}

/**
 * A dict of n bigint keys k << 64: V8 hashes a bigint by its low 64 bits,
 * so they all land in one bucket of the PyDict's Map (40,000 of them, a
 * 530 KB pickle, took 5.9 s to load before maxHashCollisions; 20 ms to fail
 * with it).
 */
function bigintKeyFlood(n: number): Buffer {
  const parts = [h('80047d28')]; // PROTO 4, EMPTY_DICT, MARK
  for (let k = 1; k <= n; k++) {
    let rest = BigInt(k);
    const bytes = [0, 0, 0, 0, 0, 0, 0, 0];
    do {
      bytes.push(Number(rest & 0xffn));
      rest >>= 8n;
    } while (rest > 0n || bytes[bytes.length - 1]! & 0x80);
    parts.push(Buffer.from([0x8a, bytes.length, ...bytes, 0x4e])); // LONG1 key, NONE
    if (k % 1000 === 0 || k === n) parts.push(h(k === n ? '75' : '7528')); // SETITEMS (MARK)
  }
  parts.push(h('2e'));
  return Buffer.concat(parts);
}

/** Pickles an authenticated peer sends (each one a frame of its own). */
const BOMBS: Array<[string, Buffer]> = [
  ['memo index 0xfffffff0', h('80047d72f0ffffff324b014b0273302e')],
  ['memo index through a restart', h('80027d72f0ffffff306af0ffffff4b014b02732e')],
  ['LONG_BINPUT 2**31-1', h('4e72ffffff7f2e')],
  ['BINBYTES 2 GiB, 2 bytes sent', h('800342ffffff7f61622e')],
  ['BINUNICODE8 huge', h('8dffffffffffffff7f61622e')],
  ['BINBYTES8 huge', h('80048effffffffffffff7f61622e')],
  ['BYTEARRAY8 4 GiB', h('800596000000000100000061622e')],
  ['LONG4 2 GiB', h('80028bffffff7f2e')],
  ['FRAME huge', h('80049510000000000000ff4b012e')],
  ['bytearray(1 MiB) x 250', bytearrayBomb(250)],
  ['billion laughs', billionLaughs()],
  ['200,000 nested lists', Buffer.concat([h('8004'), Buffer.alloc(200_000, 0x5d), Buffer.alloc(199_999, 0x61), h('2e')])],
  ['16,000 far memo indexes in one V8 hash bucket', farMemoFlood(16_000)],
  ['40,000 bigint dict keys in one V8 hash bucket', bigintKeyFlood(40_000)],
  ['os.system', h('636f730a73797374656d0a2853276563686f2070776e6564270a74522e')],
];

/** A hostile peer that takes longer than this is counted as an error of its own ('HUNG'). */
function withDeadline<T>(p: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error('hung'), { code: 'HUNG' })), seconds * 1000)))]).finally(() => clearTimeout(timer));
}

function connect(address: Address): Socket {
  const s = typeof address === 'string' ? createConnection(address) : createConnection(address[1], address[0]);
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  return s;
}

const connected = (s: Socket): Promise<void> => new Promise((r) => s.once('connect', () => r()).once('close', () => r()));
const closed = (s: Socket, ms: number): Promise<void> =>
  new Promise((r) => {
    const t = setTimeout(() => (s.destroy(), r()), ms);
    s.once('close', () => (clearTimeout(t), r()));
  });

/** One hostile peer of each kind; each resolves when the peer is done. */
const KINDS: Record<string, (address: Address, i: number) => Promise<void>> = {
  async reset(address) {
    const s = connect(address);
    await connected(s);
    // TCP: an RST. A Unix socket has none: closing it with the challenge unread is the nearest thing.
    if (typeof address === 'string') s.destroy();
    else s.resetAndDestroy();
  },
  async garbage(address) {
    const s = connect(address);
    await connected(s);
    s.write(randomBytes(64 + Math.floor(Math.random() * 4096)));
    await closed(s, 2000);
  },
  async hugeHeader(address, i) {
    const s = connect(address);
    await connected(s);
    const headers = ['7fffffff', 'ffffffff ffffffffffffffff', 'ffffffff 4000000000000000', 'fffffffe', '80000000'];
    s.write(h(headers[i % headers.length]!));
    s.write(randomBytes(1024));
    await closed(s, 2000);
  },
  async silent(address) {
    const s = connect(address);
    await connected(s);
    await closed(s, 3000);
  },
  async stallMidHandshake(address) {
    // Reads the challenge, then says nothing.
    const s = connect(address);
    await connected(s);
    // The challenge comes once the listener has taken the connection from the kernel's queue.
    await Promise.race([new Promise<void>((r) => s.once('data', () => r()).once('close', () => r())), new Promise((r) => setTimeout(r, 10_000))]);
    await closed(s, 3000);
  },
  async bomb(address, i) {
    const [, payload] = BOMBS[i % BOMBS.length]!;
    const c = await Client(address as never, { authkey: KEY, timeout: 30 });
    await c.sendBytes(payload);
    await c.recv().catch(() => undefined); // the listener answers nothing and closes, or echoes a harmless value
    c.close();
  },
};

async function startListener(): Promise<{ proc: ChildProcess; address: Address; stats: () => Promise<Record<string, unknown>>; exited: Promise<number | null> }> {
  const config = JSON.stringify({ family: TRANSPORT === 'unix' ? 'AF_UNIX' : 'AF_INET', authkey: KEY.toString('hex'), backlog: BACKLOG });
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/listener-server.ts'), config], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const lines = createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const waiting: Array<(l: string) => void> = [];
  lines.on('line', (l) => (waiting.length > 0 ? waiting.shift()!(l) : queue.push(l)));
  const next = (): Promise<string> => new Promise((r) => (queue.length > 0 ? r(queue.shift()!) : waiting.push(r)));
  const first = JSON.parse(await next()) as { address: Address };
  return {
    proc,
    address: first.address,
    exited,
    stats: async () => {
      proc.stdin!.write('stats\n');
      return JSON.parse(await next()) as Record<string, unknown>;
    },
  };
}

/** A billiard client making `n` requests in a row, 20 ms apart; prints a JSON summary. */
async function legitimateClients(address: Address, n: number): Promise<{ served: number; failed: number; errors: string[]; maxLatencyMs: number; medianLatencyMs: number }> {
  const python = await findPython();
  const script = `
import json, sys, time
from billiard.connection import Client
addr = json.loads(sys.argv[1]); addr = tuple(addr) if isinstance(addr, list) else addr
key = bytes.fromhex(sys.argv[2]); n = int(sys.argv[3])
served = failed = 0; errors = []; lat = []
for i in range(n):
    t = time.monotonic()
    try:
        c = Client(addr, authkey=key)
        c.send(('request', i))
        assert c.recv() == ['echo', ('request', i)]
        c.close()
        served += 1
        lat.append((time.monotonic() - t) * 1000)
    except Exception as e:
        failed += 1; errors.append(repr(e))
    time.sleep(0.02)
lat.sort()
print(json.dumps({'served': served, 'failed': failed, 'errors': errors[:5], 'maxLatencyMs': lat[-1] if lat else None, 'medianLatencyMs': lat[len(lat)//2] if lat else None}))
`;
  return new Promise((resolve, reject) => {
    const p = spawn(python, ['-c', script, JSON.stringify(address), KEY.toString('hex'), String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`legitimate client exited ${code}: ${out}`))));
  });
}

async function main(): Promise<void> {
  const server = await startListener();
  process.on('exit', () => server.proc.kill('SIGKILL'));
  // Warm up: a few legitimate requests, then the baseline.
  await legitimateClients(server.address, 5);
  const before = await server.stats();
  const started = performance.now();
  const kinds = Object.keys(KINDS);
  const legit = legitimateClients(server.address, 200);
  let next = 0;
  const inFlight = new Map<number, string>();
  const watch = setInterval(() => process.stderr.write(`in flight: ${[...inFlight.values()].join(' ')}\n`), 10_000);
  const byKind: Record<string, number> = {};
  const peerErrors: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < PEERS; i = next++) {
        const kind = kinds[i % kinds.length]!;
        byKind[kind] = (byKind[kind] ?? 0) + 1;
        if (i > 0 && i % 100 === 0) process.stderr.write(`${i} hostile peers...\n`);
        inFlight.set(i, kind);
        await withDeadline(KINDS[kind]!(server.address, Math.floor(i / kinds.length)), 40).catch((e: Error) => {
          const k = `${kind}: ${(e as { code?: string }).code ?? e.name}`;
          peerErrors[k] = (peerErrors[k] ?? 0) + 1;
        });
        inFlight.delete(i);
      }
    }),
  );
  clearInterval(watch);
  const floodSeconds = (performance.now() - started) / 1000;
  const legitResult = await legit;
  // Let the listener drop what the peers left behind (handshake deadlines are 60 s; the bombs' connections close at once).
  await new Promise((r) => setTimeout(r, 2000));
  const after = await server.stats();
  server.proc.kill('SIGTERM');
  const code = await server.exited;
  const mib = (b: unknown): string => `${((b as number) / 1024 / 1024).toFixed(1)} MiB`;
  console.log(`\nhostile peers: ${PEERS} (${Object.entries(byKind).map(([k, v]) => `${k} ${v}`).join(', ')}), ${CONCURRENCY} at a time, over ${TRANSPORT}; flood took ${floodSeconds.toFixed(1)} s`);
  console.log('\n| | before | after |\n|---|---|---|');
  console.log(`| listener RSS | ${mib(before.rss)} | ${mib(after.rss)} |`);
  console.log(`| open descriptors | ${before.fds} | ${after.fds} |`);
  console.log(`| connections held for accept() | ${before.pending} | ${after.pending} |`);
  console.log(`\nlegitimate billiard requests during the flood: ${legitResult.served} served, ${legitResult.failed} failed; latency median ${legitResult.medianLatencyMs?.toFixed(1)} ms, max ${legitResult.maxLatencyMs?.toFixed(1)} ms`);
  if (legitResult.errors.length > 0) console.log(`legitimate errors: ${legitResult.errors.join('; ')}`);
  console.log(`listener: ${after.handshakeErrors} handshakes failed, ${after.connectionErrors} accepted connections failed; by kind ${JSON.stringify(after.errorKinds)}`);
  console.log(`hostile peers' own errors: ${JSON.stringify(peerErrors)}`);
  console.log(`listener exit code after SIGTERM: ${code}`);
  process.exit(code === 0 && legitResult.failed === 0 ? 0 : 1);
}

await main();
