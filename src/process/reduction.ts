/**
 * What travels to a child besides plain values: Connections (and the
 * authkey, see authkey.ts). While a child
 * is being started, a Connection pickles as billiard's own spawn form,
 * `billiard.connection.rebuild_connection(billiard.popen_spawn_posix._DupFd(fd), readable, writable)`,
 * where `fd` is the descriptor number in the child (spec/api.md §10). A
 * billiard child (Python) and a billiard-ts child (Node) both rebuild it.
 */

import { Connection } from '../connection/connection.js';
import { AuthenticationString } from './authkey.js';
import { defaultRegistry, PyGlobal, PyObject, setState, tuple, type PickleRegistry, type Reducer } from '../pickle/index.js';

const kRebuild = new PyGlobal('billiard.connection', 'rebuild_connection');
const kDupFd = new PyGlobal('billiard.popen_spawn_posix', '_DupFd');

/** The descriptors a child gets: `childFd` is its number in the child, `parentFd` the one passed. */
export interface FdPlan {
  /** Child descriptor numbers start here (0-2 are stdio; 3 is the bootstrap channel). */
  next: number;
  /** `owner` is what the descriptor belongs to (a Connection, an arena, a queue's pipe end). */
  readonly fds: Array<{ childFd: number; parentFd: number; owner: object }>;
  /**
   * Modules a Node child imports before it loads the arguments: those that
   * register the rebuilders of what was pickled (see {@link addSpawnReducers}).
   */
  readonly modules?: Set<string>;
}

/**
 * The child descriptor number of `parentFd` (owned by `owner`), given one
 * the first time it is asked for.
 */
export function childFdFor(plan: FdPlan, parentFd: number, owner: object): number {
  let entry = plan.fds.find((f) => f.owner === owner && f.parentFd === parentFd);
  if (entry === undefined) {
    entry = { childFd: plan.next++, parentFd, owner };
    plan.fds.push(entry);
  }
  return entry.childFd;
}

/** billiard's `_DupFd` of a descriptor a child gets while spawning: `fd` is its number in the child. */
export function dupFdObject(childFd: number): PyObject {
  const dup = new PyObject('newobj', kDupFd, tuple());
  dup.state = { __proto__: null, fd: childFd };
  return dup;
}

/** What a layer above adds to the pickler of a child's bootstrap data. */
export type SpawnReducers = (registry: PickleRegistry, plan: FdPlan) => void;
/** What a layer above adds to a Node child's unpickler: `fdFor` maps a child descriptor number to the real one. */
export type ChildRebuilders = (registry: PickleRegistry, fdFor: (childFd: number) => number) => void;

// Keyed by the hook, not the URL: a bundle (dist/) puts several layers' modules in one chunk, one URL.
const spawnHooks = new Map<SpawnReducers, string>();
const childHooks = new Set<ChildRebuilders>();

/**
 * Lets the module at `moduleUrl` (its `import.meta.url`) pickle its objects
 * into a child's bootstrap data: `reducers` runs for every child started.
 * The child imports `moduleUrl` before it loads its arguments, and that
 * import registers the rebuilders ({@link addChildRebuilders}).
 * The process layer so stays ignorant of the layers above it.
 * @internal
 */
export function addSpawnReducers(moduleUrl: string, reducers: SpawnReducers): void {
  spawnHooks.set(reducers, moduleUrl);
}

/** The counterpart of {@link addSpawnReducers} in a child. @internal */
export function addChildRebuilders(moduleUrl: string, rebuilders: ChildRebuilders): void {
  void moduleUrl;
  childHooks.add(rebuilders);
}

/** A registry that pickles Connections (and what layers above add) for a child, assigning child descriptor numbers. */
export function spawnRegistry(plan: FdPlan): PickleRegistry {
  const registry = defaultRegistry.extend();
  registry.registerReducer(Connection, (conn: Connection) => {
    const childFd = childFdFor(plan, conn.fileno(), conn);
    return { callable: kRebuild, args: [dupFdObject(childFd), conn.readable, conn.writable] };
  });
  for (const [hook, url] of spawnHooks) {
    // The child imports a layer's module only if one of its objects is really among the arguments:
    // importing every loaded layer (the managers' with the rest) took 13 ms of a 95 ms start.
    const modules = plan.modules;
    if (modules === undefined) {
      hook(registry, plan);
      continue;
    }
    const tracking = new Proxy(registry, {
      get(target, key) {
        if (key === 'registerReducer') {
          return <T>(cls: abstract new (...args: never[]) => T, reducer: Reducer<T>) =>
            target.registerReducer(cls, (obj: T, protocol: number) => {
              modules.add(url);
              return reducer(obj, protocol);
            });
        }
        const v = Reflect.get(target, key, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    hook(tracking, plan);
  }
  return registry;
}

/**
 * Teaches `registry` the `_DupFd` of billiard's and multiprocessing's spawn
 * pickles: an object whose `fd` is the descriptor number the child has it
 * under. @internal
 */
export function registerDupFd(registry: PickleRegistry): void {
  for (const module of ['billiard.popen_spawn_posix', 'multiprocessing.popen_spawn_posix']) {
    if (registry.lookup(module, '_DupFd') !== undefined) continue;
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
}

/**
 * A registry that rebuilds what a child is handed in billiard's spawn form
 * (Connections, and what the layers above add). `fdFor` turns a descriptor
 * number of the pickles into this process's descriptor: by default the
 * number itself (a spawned child inherits its descriptors under those
 * numbers); a warm child of the fork server maps the descriptors it
 * received (fd-channel.ts), and throws for a number it did not receive.
 */
export function childRegistry(fdFor: (childFd: number) => number = (childFd) => childFd): PickleRegistry {
  const registry = defaultRegistry.extend();
  registerDupFd(registry);
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
        return Connection.fromFd(fdFor(fd), options);
      },
    });
  }
  for (const hook of childHooks) hook(registry, fdFor);
  return registry;
}
