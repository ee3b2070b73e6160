/**
 * Finding the Python interpreter that runs billiard: `BILLIARD_PYTHON` if
 * set, else the first of `python3` and `/usr/bin/python3` that can
 * `import billiard` (the first `python3` on PATH may be an interpreter
 * without it).
 */

import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import { BilliardError } from '../pickle/errors.js';
import { childProcess } from './builtins.js';

/** The command that installs billiard (and the test peers) on Debian. */
export const BILLIARD_INSTALL_COMMAND = 'apt-get install -y python3-billiard python3-pytest python3-hypothesis';

/** No Python interpreter with billiard was found. */
export class PythonNotFoundError extends BilliardError {
  static override readonly brand: string = 'billiard-ts.PythonNotFoundError';
  constructor(message: string) {
    super(message, { code: 'PYTHON_NOT_FOUND' });
  }
}

const DEFAULT_CANDIDATES = ['python3', '/usr/bin/python3'];
const cache = new Map<string, string>();

/** True when `python` runs and can import every module of `modules`. */
export function canImport(python: string, modules: readonly string[]): boolean {
  const r = childProcess().spawnSync(python, ['-c', modules.map((m) => `import ${m}`).join('; ')], { stdio: 'ignore', timeout: 30_000 });
  return r.status === 0;
}

/**
 * The path of a Python interpreter that can import `modules` (default:
 * `billiard`). Throws {@link PythonNotFoundError}, naming the install
 * command, when there is none.
 */
export function findPython(options?: { modules?: readonly string[]; env?: NodeJS.ProcessEnv }): string {
  const modules = options?.modules ?? ['billiard'];
  const env = options?.env ?? process.env;
  const key = `${env.BILLIARD_PYTHON ?? ''}\n${modules.join(',')}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const explicit = env.BILLIARD_PYTHON;
  if (explicit) {
    if (!canImport(explicit, modules)) {
      throw new PythonNotFoundError(`BILLIARD_PYTHON=${explicit} cannot import ${modules.join(', ')}. On Debian: ${BILLIARD_INSTALL_COMMAND} (for /usr/bin/python3)`);
    }
    cache.set(key, explicit);
    return explicit;
  }
  for (const candidate of DEFAULT_CANDIDATES) {
    if (canImport(candidate, modules)) {
      cache.set(key, candidate);
      return candidate;
    }
  }
  throw new PythonNotFoundError(
    `no Python interpreter that can import ${modules.join(', ')} was found (tried BILLIARD_PYTHON, ${DEFAULT_CANDIDATES.join(', ')}). On Debian, as root: ${BILLIARD_INSTALL_COMMAND}`,
  );
}

/**
 * The path of a CPython `major.minor` interpreter (standard library only):
 * `BILLIARD_PYTHON<major><minor>` (e.g. BILLIARD_PYTHON312) if set, else
 * `python<version>` on PATH, else a pyenv installation of that version
 * (`$PYENV_ROOT/versions/<version>.*`), else /usr/bin and /usr/local/bin.
 * Throws {@link PythonNotFoundError} when there is none.
 */
export function findPythonVersion(version: string, env: NodeJS.ProcessEnv = process.env): string {
  const key = `version:${version}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const works = (exe: string): boolean => {
    const r = childProcess().spawnSync(exe, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8', timeout: 30_000 });
    return r.status === 0 && r.stdout.trim() === version;
  };
  const candidates: string[] = [];
  const explicit = env[`BILLIARD_PYTHON${version.replace('.', '')}`];
  if (explicit) candidates.push(explicit);
  candidates.push(`python${version}`);
  const pyenvRoot = env.PYENV_ROOT ?? join(homedir(), '.pyenv');
  const versions = join(pyenvRoot, 'versions');
  if (existsSync(versions)) {
    for (const v of readdirSync(versions).filter((d) => d === version || d.startsWith(`${version}.`)).sort().reverse()) {
      candidates.push(join(versions, v, 'bin', `python${version}`));
    }
  }
  candidates.push(`/usr/bin/python${version}`, `/usr/local/bin/python${version}`);
  for (const exe of candidates) {
    if (works(exe)) {
      cache.set(key, exe);
      return exe;
    }
  }
  throw new PythonNotFoundError(`no CPython ${version} interpreter was found (tried ${candidates.join(', ')}); install CPython ${version} or set BILLIARD_PYTHON${version.replace('.', '')}`);
}
