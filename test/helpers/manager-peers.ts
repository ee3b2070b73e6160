/**
 * Running compat/peers/manager_peer.py clients to their end (their final
 * JSON line: ok, passed, failures, extras).
 */
import { spawn } from 'node:child_process';

import type { Address } from '../../src/index.js';
import { PEER_DIR, pythonFor, type PyVersion } from './peers.js';

/** The key of the manager tests' Node managers. */
export const KEY = new TextEncoder().encode('node-manager-key');
export const HEX = Buffer.from(KEY).toString('hex');

export interface PeerResult {
  ok: boolean;
  passed: string[];
  failures: Array<{ name: string; error: string }>;
  [extra: string]: unknown;
}

/** Runs a manager_peer.py client scenario to its end; its final JSON line. */
export function runPeerClient(version: PyVersion, impl: 'billiard' | 'mp', address: Address, scenario: string, extra: string[] = [], hex = HEX): Promise<PeerResult> {
  const addr = JSON.stringify(Array.isArray(address) ? [...address] : address);
  const proc = spawn(pythonFor(version), [PEER_DIR + 'manager_peer.py', '--impl', impl, '--role', 'client', '--address', addr, '--authkey', hex, '--scenario', scenario, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    proc.on('exit', () => {
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as PeerResult);
      } catch {
        reject(new Error(`manager_peer.py ${scenario} printed no result: ${out}\n${err}`));
      }
    });
  });
}

