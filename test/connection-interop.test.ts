/**
 * billiard-ts Connections against real Python: billiard 4.1 and the standard
 * library's multiprocessing.connection on CPython 3.11, 3.12 and 3.13, over
 * TCP and Unix sockets, with Node as the server and as the client. Each pair
 * authenticates, then exchanges every value of the pickle corpus both ways,
 * a 64 MiB send_bytes message both ways, and 10,000 small messages in a
 * burst both ways.
 */
import { randomBytes } from 'node:crypto';

import { describe, expect, test } from 'vitest';

import { arbitraryAddress, Client, Listener, tuple, type Address, type Connection, type Family } from '../src/index.js';
import { exercise } from './helpers/exchange.js';
import { pythonFor, startPeer, type PyVersion } from './helpers/peers.js';

/** Integral floats stay floats, so they compare with the corpus values. */
const connection = { loadOptions: { floats: 'wrap-integral' as const } };

const PEERS: Array<{ name: string; version: PyVersion; impl: 'billiard' | 'mp' }> = [
  { name: 'billiard 4.1 (CPython 3.11)', version: '3.11', impl: 'billiard' },
  { name: 'multiprocessing (CPython 3.11)', version: '3.11', impl: 'mp' },
  { name: 'multiprocessing (CPython 3.12)', version: '3.12', impl: 'mp' },
  { name: 'multiprocessing (CPython 3.13)', version: '3.13', impl: 'mp' },
];

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
      await exercise(conn, { big: 64 * 1024 * 1024, burst: 10_000 });
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
      await exercise(conn, { big: 64 * 1024 * 1024, burst: 10_000 });
      expect(await peer.exited, peer.stderr()).toBe(0);
      conn.close();
    });
  }
});
