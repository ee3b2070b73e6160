/**
 * Daemonic children die with their parent, even when the parent is killed
 * with SIGKILL (prctl PR_SET_PDEATHSIG); non-daemonic children are waited
 * for when the parent's main section ends, as CPython does at exit.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, describe, expect, test } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'billiard-ts-lifecycle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** True while `pid` runs: a zombie (dead, not yet reaped by its new parent) counts as gone. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone; resolves with the time it took (a hang guard bounds it). */
async function gone(pid: number, limitMs: number): Promise<number> {
  const t0 = Date.now();
  while (alive(pid)) {
    if (Date.now() - t0 > limitMs) throw new Error(`process ${pid} still alive after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

interface Pids {
  parent: number;
  daemon: number;
  worker: number;
  /** The fork server's waiting children. */
  warm: number[];
}

function startParent(mode: 'hang' | 'exit', file: string, method: string): Promise<{ pids: Pids; exited: Promise<number | null> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/lifecycle.ts', mode, file, method], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    createInterface({ input: proc.stdout }).once('line', (l) => resolve({ pids: JSON.parse(l), exited }));
    proc.once('exit', (code) => reject(new Error(`parent exited early (${code})`)));
  });
}

describe.each(['spawn', 'forkserver'])('start method %s', (method) => {
  test('a SIGKILLed parent takes its daemonic child (and the waiting fork server children) with it; its non-daemonic child lives on', async () => {
    const file = join(dir, `sigkill-${method}`);
    const { pids, exited } = await startParent('hang', file, method);
    if (method === 'forkserver') expect(pids.warm.length).toBeGreaterThan(0);
    expect(alive(pids.daemon)).toBe(true);
    await new Promise((r) => setTimeout(r, 300)); // the children are running their targets
    process.kill(pids.parent, 'SIGKILL');
    await exited;
    // The worker sleeps 2 s from its start: it must still be there now, whatever the waits below take.
    expect(alive(pids.worker)).toBe(true);
    // Within a second in practice; the bound here only guards against a hang.
    const ms = await gone(pids.daemon, 5000);
    console.log(`${method}: daemonic child gone ${ms} ms after its parent was killed`);
    for (const pid of pids.warm) await gone(pid, 5000);
    await gone(pids.worker, 10_000);
    expect(existsSync(file)).toBe(true);
  });

  test('when the main section ends, the parent waits for its non-daemonic child and then terminates the daemonic one', async () => {
    const file = join(dir, `exit-${method}`);
    const { pids, exited } = await startParent('exit', file, method);
    expect(await exited).toBe(0);
    // The worker finished (and wrote its file) before the parent exited.
    expect(existsSync(file)).toBe(true);
    await gone(pids.daemon, 5000);
    for (const pid of pids.warm) await gone(pid, 5000);
  });
});
