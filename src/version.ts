/**
 * The package's version, as billiard's `__version__` and `VERSION`: these
 * are billiard-ts's own (package.json's `version`, which a test keeps them
 * equal to), not the version of the billiard it mirrors (4.1 to 4.3, see
 * spec/api.md section 0).
 */

import { tuple, type PyTuple } from './pickle/types.js';

/** The version string, e.g. `'0.1.0'` (billiard's `__version__`). */
export const __version__ = '0.1.0';

/**
 * The version as a tuple (billiard's `VERSION`): `(0, 1, 0)`, with a
 * pre-release as a fourth, string item as billiard 4.3 has it (`'0.2.0-rc1'`
 * is `(0, 2, 0, 'rc1')`). Pickles as a Python tuple.
 */
export const VERSION: PyTuple<number | string> = versionTuple(__version__);

function versionTuple(version: string): PyTuple<number | string> {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-(.+))?$/.exec(version);
  if (m === null) return tuple(version);
  return tuple(Number(m[1]), Number(m[2]), Number(m[3]), ...(m[4] === undefined ? [] : [m[4]]));
}
