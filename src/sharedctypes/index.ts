/**
 * billiard-ts shared ctypes (spec/api.md §7): `Value`, `Array`,
 * `RawValue`, `RawArray`, `copy`, `synchronized` and their wrappers, the
 * shared-memory heap, and how they travel to spawned children. See
 * ./README.md.
 */

import './wiring.js';

export {
  Array,
  CArray,
  copy,
  CValue,
  RawArray,
  RawValue,
  setDefaultLockFactory,
  Synchronized,
  SynchronizedArray,
  SynchronizedBase,
  synchronized,
  SynchronizedString,
  Value,
  type LockContext,
  type RawOptions,
  type RawShared,
  type SliceInputOf,
  type SliceOf,
  type SynchronizedOptions,
  type SyncLock,
  type ValueOptions,
} from './sharedctypes.js';
export { allocateInts, Arena, BufferWrapper, Heap, intsOf, NATIVE_ARENAS, PAGESIZE, setArenaBackend, type ArenaBackend, type Block, type SharedInts } from './heap.js';
export { registerChildRebuilders, registerSpawnReducers } from './reduction.js';
export { getTempDir } from './tempdir.js';
export { TYPECODES, typecodeInfo, type InputOf, type Typecode, type TypecodeInfo, type TypedArrayOf, type ValueOf } from './typecodes.js';
export { AttributeError, IndexError, OverflowError, TypeError } from './errors.js';
