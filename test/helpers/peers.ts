/**
 * Starting the Python peers of compat/peers/ for tests. Interpreters:
 * '3.11' is the one with billiard (findPythonSync); '3.12' and '3.13' are
 * found by findPythonVersion (PATH, then pyenv; standard library only). A missing
 * interpreter is an error that names what to install, never a skip.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { findPythonSync, findPythonVersion } from '../../src/process/python.js';

export type PyVersion = '3.11' | '3.12' | '3.13';

const cache = new Map<PyVersion, string>();

export function pythonFor(version: PyVersion): string {
  const hit = cache.get(version);
  if (hit) return hit;
  const exe = version === '3.11' ? findPythonSync() : findPythonVersion(version);
  cache.set(version, exe);
  return exe;
}

export const PEER_DIR = fileURLToPath(new URL('../../compat/peers/', import.meta.url));

export interface Peer {
  proc: ChildProcess;
  /** The first JSON line the peer printed. */
  info: Record<string, unknown>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  stderr(): string;
}

/** Starts `compat/peers/<script>` with `args` and waits for its first JSON line. */
export async function startPeer(python: string, script: string, args: string[], options?: { stdio?: Array<'pipe' | 'ignore' | 'inherit' | number> }): Promise<Peer> {
  const proc = spawn(python, [PEER_DIR + script, ...args], { stdio: options?.stdio ?? ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lines = createInterface({ input: proc.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    exited.then((code) => reject(new Error(`peer ${script} exited (${code}) before it was ready: ${err}`)));
  });
  return { proc, info: JSON.parse(first) as Record<string, unknown>, exited, stderr: () => err };
}
