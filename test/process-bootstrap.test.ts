/**
 * What a spawned Node child is told to import before it loads its
 * arguments: the module of each layer whose objects are really among them,
 * and nothing else (importing every layer the parent had loaded cost a
 * child 13 ms of its start). And the profiling switch for children.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect, test } from 'vitest';

import { Lock, Pipe, Queue, Value } from '../src/index.js';
import { loads } from '../src/pickle/index.js';
import { AuthenticationString } from '../src/process/authkey.js';
import { childRegistry } from '../src/process/reduction.js';
import { bootstrapPickles, childExecArgv, type ProcessSpec } from '../src/process/spawn.js';

function modulesFor(args: unknown[]): string[] {
  const prep = {
    name: 'P',
    authkey: new AuthenticationString([1, 2, 3]),
    identity: [1],
    daemon: false,
    parentPid: process.pid,
    parentName: 'MainProcess',
    dir: process.cwd(),
    startMethod: 'spawn',
  };
  const spec: ProcessSpec = { target: 'file:///t.mjs#f', cls: null, args, kwargs: {}, state: {} };
  const { prepBytes } = bootstrapPickles(prep, spec);
  const decoded = loads(prepBytes, { registry: childRegistry() }) as Record<string, unknown>;
  return (decoded.modules as string[]).map((url) => url.replace(/^.*\/src\//, ''));
}

test('a child is told to import only the layers of the objects among its arguments', () => {
  // Every layer is loaded in this process (src/index.js), so each has a spawn hook.
  const [a, b] = Pipe();
  const q = new Queue();
  const lock = new Lock();
  const v = Value('i', 7);
  try {
    expect(modulesFor([1, 'two', b])).toEqual([]);
    expect(modulesFor([q])).toContain('queues/reduce.ts');
    expect(modulesFor([lock])).toEqual(['synchronize/reduce.ts']);
    expect(modulesFor([v]).sort()).toContain('sharedctypes/wiring.ts');
    expect(modulesFor([1, 'two', b])).toEqual([]);
  } finally {
    a.close();
    b.close();
    q.close();
  }
});

test('BILLIARD_TS_CHILD_CPU_PROF=DIR: every Node child (a Process, a pool worker) writes a V8 CPU profile into DIR as it exits', () => {
  const dir = mkdtempSync(join(tmpdir(), 'billiard-ts-prof-'));
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/child-profile.ts'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, BILLIARD_TS_CHILD_CPU_PROF: dir },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('0 4999950000');
    const profiles = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    // CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile; under tsx its loader thread writes one too.
    expect(new Set(profiles.map((f) => f.split('.')[3])).size).toBe(2);
    for (const f of profiles) expect(JSON.parse(readFileSync(join(dir, f), 'utf8')).nodes.length).toBeGreaterThan(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a child keeps the parent's Node flags except what to run, debuggers and profiles, each dropped with its value", () => {
  const kept = ['--import', 'tsx', '--max-old-space-size=512', '--conditions', 'dev', '--no-warnings', '--expose-gc'];
  const dropped = [
    '--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', '/tmp/p', '--cpu-prof-name=x.cpuprofile',
    '--heap-prof', '--heap-prof-interval', '4096', '--heap-prof-dir=/tmp/h',
    '--inspect=9229', '--inspect-port', '9230', '--debug-port', '9231', '--inspect-brk',
    '--test', '--test-concurrency', '2', '--test-timeout', '1000', '--test-shard', '1/2', '--test-reporter', 'dot', '--test-reporter-destination', 'stdout',
    '--watch', '--watch-path', 'src', '--prof', '-e', 'code', '--input-type', 'module',
  ];
  expect(childExecArgv([...dropped.slice(0, 6), ...kept.slice(0, 2), ...dropped.slice(6), ...kept.slice(2)])).toEqual(kept);
});
