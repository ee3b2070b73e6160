/**
 * Connects shared ctypes to the process layer (how they travel to
 * children) and to the synchronisation primitives (the default lock of
 * `Value`/`Array` is a new RLock; a Barrier's 8 shared bytes come from a
 * BufferWrapper). Imported by this layer's index for its effects.
 */

import { addChildRebuilders, addSpawnReducers, childFdFor } from '../process/reduction.js';
import { RLock, setBarrierMemory, setBarrierMemoryRebuilder, setBarrierMemoryReducer, type BarrierMemory } from '../synchronize/index.js';
import { allocateInts, intsOf, type SharedInts } from './heap.js';
import { registerChildRebuilders, registerSpawnReducers } from './reduction.js';
import { setDefaultLockFactory } from './sharedctypes.js';

addSpawnReducers(import.meta.url, (registry, plan) => registerSpawnReducers(registry, (fd, owner) => childFdFor(plan, fd, owner)));
addChildRebuilders(import.meta.url, registerChildRebuilders);

setDefaultLockFactory(() => new RLock());
setBarrierMemory(() => allocateInts(2));
setBarrierMemoryReducer((m: BarrierMemory) => (m as SharedInts).wrapper);
setBarrierMemoryRebuilder((wrapper: unknown) => intsOf(wrapper));
