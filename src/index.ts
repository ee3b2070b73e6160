/**
 * billiard-ts: Python's billiard for Node.js. This entry point is the public
 * API; each layer lives in its own folder under src/.
 */

export * from './pickle/index.js';
export * from './connection/index.js';
export * from './process/index.js';
export {
  allowConnectionPickling,
  Context,
  cpuCount,
  forkingEnable,
  forkingIsEnabled,
  forkserver,
  freezeSupport,
  getAllStartMethods,
  getContext,
  getStartMethod,
  setExecutable,
  setForkserverPreload,
  setStartMethod,
  type StartMethod,
} from './context.js';
