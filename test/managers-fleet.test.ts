/**
 * A mixed worker fleet on one manager: a Python producer, two Node
 * consumers (child processes) and two Python consumers share a job queue
 * and a result queue, with the manager hosted by Python (billiard 4.1) or
 * by Node (a billiard-ts manager started with start()). Every job is
 * processed exactly once.
 */
import { afterEach, describe, expect, test } from 'vitest';

import { Process, type Address } from '../src/index.js';
import { HEX, KEY, runPeerClient, type PeerResult } from './helpers/manager-peers.js';
import { pythonFor, startPeer, type Peer } from './helpers/peers.js';
import { JobsManager, nodeConsumer, PeerManager } from './peers/manager-peer.js';

const JOBS = 300;

let stop: (() => Promise<void>) | null = null;
afterEach(async () => {
  await stop?.();
  stop = null;
});

async function host(kind: 'python' | 'node'): Promise<Address> {
  if (kind === 'python') {
    const peer: Peer = await startPeer(pythonFor('3.11'), 'manager_peer.py', ['--impl', 'billiard', '--role', 'server', '--address', '["127.0.0.1", 0]', '--authkey', HEX]);
    stop = async () => {
      peer.proc.kill('SIGTERM');
      await peer.exited;
    };
    return peer.info.address as [string, number];
  }
  const m = new PeerManager({ authkey: KEY });
  await m.start();
  stop = () => m.shutdown();
  return m.address!;
}

describe.each(['python', 'node'] as const)('a manager hosted by %s', (kind) => {
  test('a Python producer, two Node and two Python consumers: every job exactly once', async () => {
    const address = await host(kind);
    const nodes = ['node-1', 'node-2'].map((name) => new Process({ target: nodeConsumer, args: [address, KEY, name] }));
    await Promise.all(nodes.map((p) => p.start()));
    // On a Node host, the two Python consumers are billiard and CPython 3.12's stdlib; on billiard's host, billiard ones.
    const pyConsumers: Array<Promise<PeerResult>> = [
      runPeerClient('3.11', 'billiard', address, 'consumer', ['--name', 'py-1']),
      kind === 'node' ? runPeerClient('3.12', 'mp', address, 'consumer', ['--name', 'py-2']) : runPeerClient('3.11', 'billiard', address, 'consumer', ['--name', 'py-2']),
    ];
    const producer = await runPeerClient(kind === 'node' ? '3.13' : '3.11', kind === 'node' ? 'mp' : 'billiard', address, 'producer', ['--n', String(JOBS), '--sentinels', '4']);
    expect(producer.failures).toEqual([]);
    const consumers = await Promise.all(pyConsumers);
    for (const c of consumers) expect(c.failures).toEqual([]);
    await Promise.all(nodes.map((p) => p.join(60)));
    for (const p of nodes) expect(p.exitcode).toBe(0);

    const m = new JobsManager({ address, authkey: KEY });
    await m.connect();
    const results = await m.get_results();
    const seen = new Map<number, string>();
    const by = new Map<string, number>();
    for (let i = 0; i < JOBS; i++) {
      const [job, name, square] = (await results.get({ timeout: 10 })) as [number, string, number];
      expect(seen.has(job), `job ${job} processed twice`).toBe(false);
      expect(square).toBe(job * job);
      seen.set(job, name);
      by.set(name, (by.get(name) ?? 0) + 1);
    }
    expect(await results.qsize()).toBe(0);
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: JOBS }, (_, i) => i));
    // What each Python consumer says it did matches what arrived under its name.
    for (const [i, c] of consumers.entries()) expect(c.count).toBe(by.get(`py-${i + 1}`) ?? 0);
    await results._decref();
  }, 120_000);
});
