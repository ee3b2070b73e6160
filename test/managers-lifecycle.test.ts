/**
 * A manager's life: Manager() and ctx.Manager() (a started SyncManager in
 * a Node child), `await using`, start/connect/shutdown rules, getServer()
 * served in this process and stopped by a Python client's `shutdown`, and
 * reference counting across collection, child exit and child death.
 */
import { spawnSync } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, test } from 'vitest';

import { EOFError, getContext, Manager, Pipe, Process, ProcessError, State, SyncManager } from '../src/index.js';
import { KEY, runPeerClient } from './helpers/manager-peers.js';
import { childCreates, PeerManager } from './peers/manager-peer.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('starting and stopping', () => {
  test('Manager() starts a SyncManager server in a child named SyncManager-N; await using shuts it down', async () => {
    let proc: Process | null;
    {
      await using m = await Manager();
      expect(m).toBeInstanceOf(SyncManager);
      expect(m.state).toBe(State.STARTED);
      proc = m.process;
      expect(proc?.name).toMatch(/^SyncManager-\d+$/);
      expect(proc?.isAlive()).toBe(true);
      const l = await m.list([1, 2]);
      expect(await l.len()).toBe(2);
    }
    expect(proc?.isAlive()).toBe(false);
    expect(proc?.exitcode).toBe(0);
  }, 60_000);

  test("ctx.Manager() starts the server with the context's start method (forkserver)", async () => {
    const m = await getContext('forkserver').Manager({ authkey: KEY });
    try {
      expect(m.process?.constructor.name).toBe('ForkServerProcess');
      const v = await m.Value('i', 3);
      expect(await v.get()).toBe(3);
    } finally {
      await m.shutdown();
    }
    expect(m.state).toBe(State.SHUTDOWN);
  }, 60_000);

  test('start() twice, start() after shutdown, shutdown() of a connected manager: ProcessError; a server that cannot bind: EOFError', async () => {
    const m = new PeerManager({ authkey: KEY });
    await m.start();
    try {
      await expect(m.start()).rejects.toThrow(/Already started server/);
      const client = new PeerManager({ address: m.address, authkey: KEY });
      await client.connect();
      await expect(client.shutdown()).rejects.toBeInstanceOf(ProcessError);
      // the address is taken: the child fails before it reports one
      await expect(new PeerManager({ address: m.address, authkey: KEY }).start()).rejects.toBeInstanceOf(EOFError);
    } finally {
      await m.shutdown();
    }
    await expect(m.start()).rejects.toThrow(/Manager has shut down/);
    // proxies released after shutdown send nothing and do not fail
  }, 60_000);

  test('getServer().serveForever() serves from this process until a Python client sends shutdown', async () => {
    const m = new PeerManager({ address: ['127.0.0.1', 0], authkey: KEY });
    const server = m.getServer();
    const served = server.serveForever();
    await server.ready;
    expect(m.address).toEqual(server.address);
    const r = await runPeerClient('3.11', 'billiard', server.address, 'shutdown');
    expect(r.failures).toEqual([]);
    await served;
    expect(server.closed).toBe(true);
  }, 60_000);
});

test('a manager class in an unguarded main module: the server child refuses the start at its top level (RuntimeError), and start() rejects with EOFError, as Python\'s', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/unguarded-main.ts'], {
    encoding: 'utf8',
    cwd: new URL('..', import.meta.url).pathname,
    env: { ...process.env, UNGUARDED_KIND: 'manager' },
    timeout: 60_000,
  });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual({ started: false, name: 'EOFError', message: 'Ran out of input' });
  expect(r.stderr).toMatch(/Process LocalManager-1:\nRuntimeError: An attempt has been made to start a new process before the current process has finished its bootstrapping phase/);
});

test('examples/manager-queue.ts: a Node manager serves a job queue to the classic Python client', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/manager-queue.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe('Python summed the jobs: 6\n');
  expect(r.status).toBe(0);
}, 60_000);

describe('reference counting', () => {
  test('a proxy collected by the garbage collector releases its reference', async () => {
    const m = await Manager({ authkey: KEY });
    try {
      const n0 = await m._numberOfObjects();
      await (async () => {
        const d = await m.dict({ a: 1 });
        expect(await d.len()).toBe(1);
      })();
      expect(await m._numberOfObjects()).toBe(n0 + 1);
      await until(async () => {
        gc();
        return (await m._numberOfObjects()) === n0;
      }, 'the collected proxy to decref');
    } finally {
      await m.shutdown();
    }
  }, 60_000);

  test("a Node child's proxies are released when it exits; a killed child's are kept, as CPython keeps them", async () => {
    const m = await Manager({ authkey: KEY });
    try {
      const n0 = await m._numberOfObjects();
      const ok = new Process({ target: childCreates, args: [m.address!, KEY, 3, null] });
      await ok.start();
      await ok.join(30);
      expect(ok.exitcode).toBe(0);
      expect(await m._numberOfObjects()).toBe(n0);

      const [r, w] = Pipe();
      const killed = new Process({ target: childCreates, args: [m.address!, KEY, 2, w] });
      await killed.start();
      expect(await r.recv()).toBe('created');
      killed.kill();
      await killed.join(30);
      expect(await m._numberOfObjects()).toBe(n0 + 2);
    } finally {
      await m.shutdown();
    }
  }, 60_000);
});
