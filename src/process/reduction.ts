/**
 * What travels to a child besides plain values: Connections (and the
 * authkey, see authkey.ts). While a child
 * is being started, a Connection pickles as billiard's own spawn form,
 * `billiard.connection.rebuild_connection(billiard.popen_spawn_posix._DupFd(fd), readable, writable)`,
 * where `fd` is the descriptor number in the child (spec/api.md §10). A
 * billiard child (Python) and a billiard-ts child (Node) both rebuild it.
 */

import type { Duplex } from 'node:stream';

import { Connection } from '../connection/index.js';
import { AuthenticationString } from './authkey.js';
import { defaultRegistry, PyGlobal, PyObject, setState, tuple, type PickleRegistry } from '../pickle/index.js';

const kRebuild = new PyGlobal('billiard.connection', 'rebuild_connection');
const kDupFd = new PyGlobal('billiard.popen_spawn_posix', '_DupFd');

/** The descriptors a child gets: `childFd` is its number in the child, `parentFd` the one passed. */
export interface FdPlan {
  /** Child descriptor numbers start here (0-2 are stdio; 3 is the bootstrap channel). */
  next: number;
  readonly fds: Array<{ childFd: number; parentFd: number; conn: Connection }>;
}

/** A registry that pickles Connections for a child, assigning them child descriptor numbers. */
export function spawnRegistry(plan: FdPlan): PickleRegistry {
  const registry = defaultRegistry.extend();
  registry.registerReducer(Connection, (conn: Connection) => {
    let entry = plan.fds.find((f) => f.conn === conn);
    if (entry === undefined) {
      entry = { childFd: plan.next++, parentFd: conn.fileno(), conn };
      plan.fds.push(entry);
    }
    const dup = new PyObject('newobj', kDupFd, tuple());
    dup.state = { __proto__: null, fd: entry.childFd };
    return { callable: kRebuild, args: [dup, conn.readable, conn.writable] };
  });
  return registry;
}

/**
 * A registry that rebuilds billiard's spawn-form Connections in a child:
 * from inherited descriptors, or, in a warm child of the fork server, from
 * the sockets the parent sent (keyed by descriptor number).
 */
export function childRegistry(sockets?: ReadonlyMap<number, Duplex>): PickleRegistry {
  const registry = defaultRegistry.extend();
  for (const module of ['billiard.popen_spawn_posix', 'multiprocessing.popen_spawn_posix']) {
    registry.register(module, '_DupFd', {
      newobj: () => {
        const holder = {
          fd: -1,
          [setState](state: unknown): void {
            const fd = state instanceof Map ? state.get('fd') : (state as { fd?: unknown } | null)?.fd;
            if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw new TypeError('_DupFd state needs an fd');
            holder.fd = fd;
          },
        };
        return holder;
      },
    });
  }
  // The authkey in the preparation data (billiard's and multiprocessing's spell it alike).
  for (const module of ['billiard.process', 'multiprocessing.process']) {
    registry.register(module, 'AuthenticationString', {
      call: (args) => {
        if (!(args[0] instanceof Uint8Array)) throw new TypeError('AuthenticationString needs bytes');
        return new AuthenticationString(args[0]);
      },
    });
  }
  for (const module of ['billiard.connection', 'multiprocessing.connection']) {
    registry.register(module, 'rebuild_connection', {
      call: (args) => {
        const [df, readable, writable] = args;
        const fd = typeof df === 'number' ? df : (df as { fd?: number } | null)?.fd;
        if (typeof fd !== 'number' || fd < 0) throw new TypeError('rebuild_connection needs a descriptor');
        const options = { readable: readable !== false, writable: writable !== false };
        const socket = sockets?.get(fd);
        return socket !== undefined ? new Connection(socket, options) : Connection.fromFd(fd, options);
      },
    });
  }
  return registry;
}
