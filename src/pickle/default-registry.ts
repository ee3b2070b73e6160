/**
 * The registry `loads` and `dumps` use unless given another: every standard
 * library handler of ./stdlib.ts. Users may register their own globals and
 * reducers in it, or build a child with `defaultRegistry.extend()`.
 */

import { PickleRegistry } from './registry.js';
import { installStdlib } from './stdlib.js';

export const defaultRegistry: PickleRegistry = new PickleRegistry();
installStdlib(defaultRegistry);
