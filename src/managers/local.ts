/**
 * The manager servers running in this process, by address: a proxy
 * unpickled here for an object one of them holds is that object itself
 * (billiard's rule for `RebuildProxy`).
 */

import type { Address } from '../connection/index.js';
import { addressKey, type Token } from './token.js';

export interface LocalServer {
  referent(id: string): { found: boolean; value?: unknown };
}

const servers = new Map<string, LocalServer>();

export function addLocalServer(address: Address, server: LocalServer): void {
  servers.set(addressKey(address), server);
}

export function removeLocalServer(address: Address, server: LocalServer): void {
  const k = addressKey(address);
  if (servers.get(k) === server) servers.delete(k);
}

export function localReferent(token: Token): { found: boolean; value?: unknown } {
  const s = servers.get(addressKey(token.address));
  return s === undefined ? { found: false } : s.referent(token.id);
}
