/**
 * Finding the Python interpreter that runs billiard: `BILLIARD_PYTHON` if
 * set, else the first of `python3` and `/usr/bin/python3` that can
 * `import billiard` (the first `python3` on PATH may be an interpreter
 * without it).
 *
 * {@link findPython} asks the candidates without blocking the event loop
 * (each is a child process that tries the imports); {@link findPythonSync}
 * is the blocking variant for scripts that need the path at once. Both keep
 * their answers, so each question is asked once per process.
 */

import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

import { BilliardError } from '../pickle/errors.js';
import { childProcess } from './builtins.js';
import { launch } from './launcher.js';

/** The command that installs billiard (and the test peers) on Debian. */
export const BILLIARD_INSTALL_COMMAND = 'apt-get install -y python3-billiard python3-pytest python3-hypothesis';

/** No Python interpreter with billiard was found. */
export class PythonNotFoundError extends BilliardError {
  static override readonly brand: string = 'billiard-ts.PythonNotFoundError';
  constructor(message: string) {
    super(message, { code: 'PYTHON_NOT_FOUND' });
  }
}

/** Options of {@link findPython} and {@link findPythonSync}. */
export interface FindPythonOptions {
  /** Modules the interpreter must import. Defaults to `['billiard']`. */
  modules?: readonly string[];
  /** The environment whose `BILLIARD_PYTHON` is honoured. Defaults to this process's. */
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_CANDIDATES = ['python3', '/usr/bin/python3'];
/** How long one interpreter may take to try the imports, in milliseconds. */
const PROBE_TIMEOUT_MS = 30_000;

/** Answers found so far, by question (see `keyOf`). */
const found = new Map<string, string>();
/** Questions being asked now, without blocking. */
const pending = new Map<string, Promise<string>>();

function importLine(modules: readonly string[]): string {
  return modules.map((m) => `import ${m}`).join('; ');
}

function question(options: FindPythonOptions | undefined): { key: string; modules: readonly string[]; explicit: string | undefined } {
  const modules = options?.modules ?? ['billiard'];
  const explicit = (options?.env ?? process.env).BILLIARD_PYTHON || undefined;
  return { key: `${explicit ?? ''}\n${modules.join(',')}`, modules, explicit };
}

function notFound(modules: readonly string[], explicit: string | undefined): PythonNotFoundError {
  if (explicit) return new PythonNotFoundError(`BILLIARD_PYTHON=${explicit} cannot import ${modules.join(', ')}. On Debian: ${BILLIARD_INSTALL_COMMAND} (for /usr/bin/python3)`);
  return new PythonNotFoundError(
    `no Python interpreter that can import ${modules.join(', ')} was found (tried BILLIARD_PYTHON, ${DEFAULT_CANDIDATES.join(', ')}). On Debian, as root: ${BILLIARD_INSTALL_COMMAND}`,
  );
}

/** True when `python` runs and can import every module of `modules` (blocks: for the *Sync path). */
function canImportSync(python: string, modules: readonly string[]): boolean {
  const r = childProcess().spawnSync(python, ['-c', importLine(modules)], { stdio: 'ignore', timeout: PROBE_TIMEOUT_MS });
  return r.status === 0;
}

/** Resolves true when `python` runs and can import every module of `modules` (spawned by the launcher thread). */
function canImport(python: string, modules: readonly string[]): Promise<boolean> {
  return new Promise((resolve) => {
    const child = launch({ file: python, args: ['-c', importLine(modules)], env: null, stdio: ['ignore', 'ignore', 'ignore'], timeoutMs: PROBE_TIMEOUT_MS });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
}

/**
 * The path of a Python interpreter that can import `modules` (default:
 * `billiard`), without blocking the event loop. Rejects with
 * {@link PythonNotFoundError}, naming the install command, when there is none.
 */
export function findPython(options?: FindPythonOptions): Promise<string> {
  const { key, modules, explicit } = question(options);
  const hit = found.get(key);
  if (hit !== undefined) return Promise.resolve(hit);
  let asking = pending.get(key);
  if (asking === undefined) {
    asking = (async () => {
      for (const candidate of explicit ? [explicit] : DEFAULT_CANDIDATES) {
        if (await canImport(candidate, modules)) {
          found.set(key, candidate);
          return candidate;
        }
      }
      throw notFound(modules, explicit);
    })().finally(() => pending.delete(key));
    pending.set(key, asking);
  }
  return asking;
}

/**
 * The path {@link findPython} would give, at once: a known answer, or
 * undefined when the question has not been answered yet (never blocks).
 * @internal
 */
export function knownPython(options?: FindPythonOptions): string | undefined {
  return found.get(question(options).key);
}

/**
 * {@link findPython}, blocking: the process waits for each candidate
 * interpreter in turn. For scripts and tools that need the path at once;
 * throws {@link PythonNotFoundError}.
 */
export function findPythonSync(options?: FindPythonOptions): string {
  const { key, modules, explicit } = question(options);
  const hit = found.get(key);
  if (hit !== undefined) return hit;
  for (const candidate of explicit ? [explicit] : DEFAULT_CANDIDATES) {
    if (canImportSync(candidate, modules)) {
      found.set(key, candidate);
      return candidate;
    }
  }
  throw notFound(modules, explicit);
}

/** Interpreters found to import billiard by {@link requirePythonSync}. */
const verified = new Set<string>();

/**
 * The interpreter `python` (default: {@link findPythonSync}'s), checked, once
 * per interpreter, to run and import billiard; throws
 * {@link PythonNotFoundError} naming the install command otherwise. Blocks:
 * for constructors that must fail at once, as a Python pool's does.
 * @internal
 */
export function requirePythonSync(python?: string): string {
  if (python === undefined) return findPythonSync();
  if (verified.has(python)) return python;
  const r = childProcess().spawnSync(python, ['-c', 'import billiard'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: PROBE_TIMEOUT_MS, encoding: 'utf8' });
  if (r.error !== undefined) throw new PythonNotFoundError(`the Python interpreter ${python} cannot be run (${r.error.message}). On Debian, as root: ${BILLIARD_INSTALL_COMMAND}`);
  if (r.status !== 0) {
    const why = (r.stderr ?? '').trim().split('\n').pop() ?? '';
    throw new PythonNotFoundError(`the Python interpreter ${python} cannot import billiard${why ? ` (${why})` : ''}. On Debian, as root: ${BILLIARD_INSTALL_COMMAND} (for /usr/bin/python3)`);
  }
  verified.add(python);
  return python;
}

/**
 * The path of a CPython `major.minor` interpreter (standard library only):
 * `BILLIARD_PYTHON<major><minor>` (e.g. BILLIARD_PYTHON312) if set, else
 * `python<version>` on PATH, else a pyenv installation of that version
 * (`$PYENV_ROOT/versions/<version>.*`), else /usr/bin and /usr/local/bin.
 * Throws {@link PythonNotFoundError} when there is none. Blocks: for tests.
 * @internal
 */
export function findPythonVersion(version: string, env: NodeJS.ProcessEnv = process.env): string {
  const key = `version:${version}`;
  const hit = found.get(key);
  if (hit !== undefined) return hit;
  const works = (exe: string): boolean => {
    const r = childProcess().spawnSync(exe, ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])'], { encoding: 'utf8', timeout: PROBE_TIMEOUT_MS });
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
      found.set(key, exe);
      return exe;
    }
  }
  throw new PythonNotFoundError(`no CPython ${version} interpreter was found (tried ${candidates.join(', ')}); install CPython ${version} or set BILLIARD_PYTHON${version.replace('.', '')}`);
}
