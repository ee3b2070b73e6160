/**
 * billiard-ts Connections against real Python: billiard 4.1 and the standard
 * library's multiprocessing.connection on CPython 3.11, 3.12 and 3.13, over
 * TCP and Unix sockets, with Node as the server and as the client. Each pair
 * authenticates, then exchanges every value of the pickle corpus both ways,
 * a 64 MiB send_bytes message both ways, and 10,000 small messages in a
 * burst both ways.
 */
import { createHash, randomBytes } from 'node:crypto';

import { describe, expect, test } from 'vitest';

import { arbitraryAddress, Client, Listener, tuple, type Address, type Connection, type Family } from '../src/index.js';
import { buildValue } from './helpers/describe.js';
import { goldenPickles } from './helpers/fixtures.js';
import { pythonFor, startPeer, type PyVersion } from './helpers/peers.js';
import { pyDiff } from './helpers/pyequal.js';

const BIG = 64 * 1024 * 1024;
/** Integral floats stay floats, so they compare with the corpus values. */
const connection = { loadOptions: { floats: 'wrap-integral' as const } };
const BURST = 10_000;

const PEERS: Array<{ name: string; version: PyVersion; impl: 'billiard' | 'mp' }> = [
  { name: 'billiard 4.1 (CPython 3.11)', version: '3.11', impl: 'billiard' },
  { name: 'multiprocessing (CPython 3.11)', version: '3.11', impl: 'mp' },
  { name: 'multiprocessing (CPython 3.12)', version: '3.12', impl: 'mp' },
  { name: 'multiprocessing (CPython 3.13)', version: '3.13', impl: 'mp' },
];

/** The corpus values by name, built from the golden descriptors. */
function corpus(group: 'builtin' | 'stdlib'): Array<[string, unknown]> {
  return goldenPickles()
    .cases.filter((c) => c.group === group)
    .map((c) => [c.name, buildValue(c.desc)]);
}

function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i & 0xff;
  return out;
}

async function exercise(conn: Connection): Promise<void> {
  // Python -> Node: every corpus value, as Python's ForkingPickler writes it.
  for (const group of ['builtin', 'stdlib'] as const) {
    const want = new Map(corpus(group));
    await conn.send(tuple('corpus', group));
    const bad: string[] = [];
    for (;;) {
      const [name, value] = (await conn.recv()) as [string, unknown];
      if (name === 'done') {
        expect(value).toBe(want.size);
        break;
      }
      const diff = want.has(name) ? pyDiff(value, want.get(name), { unorderedSets: true }) : 'unknown name';
      if (diff !== null) bad.push(`${name}: ${diff}`);
    }
    expect(bad, `${group} values from Python`).toEqual([]);
  }
  // Node -> Python: every corpus value as billiard-ts pickles it; Python checks each.
  for (const group of ['builtin', 'stdlib'] as const) {
    const items = corpus(group);
    await conn.send(tuple('check', group, items.length));
    for (const [name, value] of items) void conn.send(tuple(name, value));
    expect(await conn.recv(), `${group} values Python found different`).toEqual([]);
  }
  // 64 MiB both ways.
  const big = pattern(BIG);
  await conn.send(tuple('recv_big'));
  await conn.sendBytes(big);
  expect(await conn.recv()).toEqual([BIG, createHash('sha256').update(big).digest('hex')]);
  await conn.send(tuple('big', BIG));
  const got = await conn.recvBytes();
  expect(got.length).toBe(BIG);
  expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  // 10,000 small messages in a burst, both ways, in order.
  await conn.send(tuple('expect_burst', BURST));
  await Promise.all(Array.from({ length: BURST }, (_, i) => conn.send(i)));
  expect(await conn.recv()).toEqual([true, BURST]);
  await conn.send(tuple('burst', BURST));
  const received: unknown[] = [];
  for (let i = 0; i < BURST; i++) received.push(await conn.recv());
  expect(received.every((v, i) => v === i)).toBe(true);
  await conn.send(tuple('exit'));
}

function peerArgs(impl: string, role: string, family: Family, address: Address | null, key: Uint8Array): string[] {
  const args = ['--impl', impl, '--role', role, '--family', family, '--authkey', Buffer.from(key).toString('hex')];
  if (address !== null) args.push('--address', JSON.stringify(address));
  return args;
}

describe.each(PEERS)('$name', ({ version, impl }) => {
  for (const family of ['AF_INET', 'AF_UNIX'] as const) {
    test(`Node Listener, Python Client, ${family}`, async () => {
      const key = new Uint8Array(randomBytes(32));
      const listener = await Listener.create(family === 'AF_INET' ? ['127.0.0.1', 0] : arbitraryAddress('AF_UNIX'), { authkey: key, connection });
      const peer = await startPeer(pythonFor(version), 'conn_peer.py', peerArgs(impl, 'client', family, listener.address, key));
      expect(peer.info.python).toMatch(new RegExp(`^${version.replace('.', '\\.')}`));
      const conn = await listener.accept();
      await exercise(conn);
      expect(await peer.exited, peer.stderr()).toBe(0);
      conn.close();
      listener.close();
    });

    test(`Python Listener, Node Client, ${family}`, async () => {
      const key = new Uint8Array(randomBytes(32));
      const address = family === 'AF_INET' ? ['127.0.0.1', 0] : (arbitraryAddress('AF_UNIX') as string);
      const peer = await startPeer(pythonFor(version), 'conn_peer.py', peerArgs(impl, 'server', family, address as Address, key));
      const bound = peer.info.address as Address;
      const conn = await Client(Array.isArray(bound) ? tuple(...(bound as [string, number])) : bound, { authkey: key, connection });
      await exercise(conn);
      expect(await peer.exited, peer.stderr()).toBe(0);
      conn.close();
    });
  }
});
