/**
 * The managers layer (spec/manager.md): `BaseManager`, `SyncManager` and
 * `Manager()`, the server, proxies, `Token` and `RemoteError`; Node clients
 * of Python managers and Python clients of Node managers alike.
 */

export { BaseManager, Manager, runManagerServer, State, SyncManager, type BaseManagerOptions, type ManagerContext, type RegisterOptions } from './manager.js';
export { publicMethods, Server, type ManagerCallable, type Registry, type ServerEvents, type ServerOptions, type TypeidEntry } from './server.js';
export {
  AcquirerProxy,
  ArrayProxy,
  AutoProxy,
  BarrierProxy,
  BaseProxy,
  ConditionProxy,
  DictProxy,
  EventProxy,
  IteratorProxy,
  ListProxy,
  MakeProxyType,
  NamespaceProxy,
  PoolProxy,
  QueueProxy,
  registerProxyClass,
  RLockProxy,
  ValueProxy,
  type AsyncResultMethods,
  type AutoProxyFactory,
  type PoolFunc,
  type ProxyAcquireOptions,
  type ProxyManager,
  type ProxyOptions,
  type ProxyPutOptions,
  type ProxyType,
} from './proxy.js';
export { Token, type ManagersModule } from './token.js';
export { RemoteError } from './errors.js';
export { convertToError, dispatch } from './protocol.js';
export type { CallOptions } from './client.js';
export {
  ManagedArray,
  ManagedBarrier,
  ManagedCondition,
  ManagedDict,
  ManagedEvent,
  ManagedIterator,
  ManagedList,
  ManagedLock,
  ManagedNamespace,
  ManagedQueue,
  ManagedValue,
  Managed,
  type CallContext,
} from './objects.js';
export { PyArray } from './array.js';
export { ManagerValue, Namespace } from './values.js';
