/**
 * The Token: what names a shared object (spec/manager.md §3). It pickles as
 * `multiprocessing.managers.Token` (NEWOBJ over an empty tuple, then BUILD
 * with the state tuple `(typeid, address, id)`), which every Python client
 * can load; `billiard.managers.Token` only when asked, since a standard
 * library client without billiard cannot import it. Both names load.
 */

import type { Address } from '../connection/index.js';
import { defaultRegistry, PyGlobal, PyTuple, reduceEx, setState, tuple, type ReduceValue } from '../pickle/index.js';

/** The module a Token (and the other manager globals this side writes) pickles under. */
export type ManagersModule = 'multiprocessing.managers' | 'billiard.managers';

export const MP_MODULE: ManagersModule = 'multiprocessing.managers';
export const BILLIARD_MODULE: ManagersModule = 'billiard.managers';

/** An address as it travels: a TCP address is a Python tuple (billiard refuses a list). */
export function wireAddress(address: Address): Address {
  if (Array.isArray(address) && !(address instanceof PyTuple)) return tuple(...(address as unknown as unknown[])) as Address;
  return address;
}

/** A stable key for an address (the cache key of serving connections, as Python keys it by the token's address value). */
export function addressKey(address: Address): string {
  if (address instanceof Uint8Array) return `b:${Buffer.from(address).toString('hex')}`;
  if (typeof address === 'string') return `s:${address}`;
  const [host, port] = address as readonly [string, number];
  return `t:${host}:${port}`;
}

/** Identifies a shared object: its typeid, its manager's address and its id (a string). */
export class Token {
  typeid: string;
  address: Address;
  id: string;
  /** The module this token pickles under. */
  module: ManagersModule;

  constructor(typeid: string, address: Address, id: string, module: ManagersModule = MP_MODULE) {
    this.typeid = typeid;
    this.address = address;
    this.id = id;
    this.module = module;
  }

  [reduceEx](): ReduceValue {
    return { kind: 'newobj', callable: new PyGlobal(this.module, 'Token'), args: [], state: tuple(this.typeid, wireAddress(this.address), this.id) };
  }

  [setState](state: unknown): void {
    if (!Array.isArray(state) || state.length !== 3) throw new TypeError('a Token state is a (typeid, address, id) tuple');
    const [typeid, address, id] = state as [unknown, unknown, unknown];
    if (typeof typeid !== 'string' || typeof id !== 'string') throw new TypeError('a Token has a str typeid and a str id');
    this.typeid = typeid;
    this.address = address as Address;
    this.id = id;
  }

  toString(): string {
    return `Token(typeid=${JSON.stringify(this.typeid)}, address=${JSON.stringify(this.address)}, id=${JSON.stringify(this.id)})`;
  }
}

for (const module of [MP_MODULE, BILLIARD_MODULE]) {
  defaultRegistry.register(module, 'Token', { newobj: () => new Token('', '', '', module) });
}
