/**
 * `npm test`: sets up the Python peers, then runs the vitest suite and the
 * pytest suite (pytests/, where Python drives and Node answers).
 *
 * The peers are a Python that can import billiard, pytest and hypothesis
 * (BILLIARD_PYTHON, else python3, else /usr/bin/python3). When none is found
 * and this runs as root on Debian, it installs them with apt-get and says
 * so; anywhere else it fails with the command to run. Tests never skip for
 * a missing peer.
 *
 *   npm test                                  everything
 *   npm test -- --only vitest|pytest          one suite
 *   npm test -- --hypothesis-examples 5000    a longer property run
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { BILLIARD_INSTALL_COMMAND, findPythonSync, PythonNotFoundError } from '../src/process/python.js';

const PEER_MODULES = ['billiard', 'pytest', 'hypothesis', 'celery', 'redis'];
/** Everything the tests need from Debian: billiard's peers, and for billiard-ts/celery a Redis server and Celery 5. */
const PEERS_INSTALL_COMMAND = `${BILLIARD_INSTALL_COMMAND} python3-celery python3-redis redis-server`;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  console.log(`\n$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env });
  if (r.error) {
    console.error(`could not run ${cmd}: ${r.error.message}`);
    return 1;
  }
  return r.status ?? 1;
}

function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

function setUpPython(): string {
  try {
    if (!hasRedisServer()) throw new PythonNotFoundError('redis-server is not installed');
    return findPythonSync({ modules: PEER_MODULES });
  } catch (e) {
    if (!(e instanceof PythonNotFoundError)) throw e;
    const isRoot = process.getuid?.() === 0;
    if (!isRoot || !existsSync('/etc/debian_version')) {
      console.error(`\nThe Python peers are missing: ${e.message}\nInstall them (as root on Debian): ${PEERS_INSTALL_COMMAND}`);
      process.exit(1);
    }
    console.log(`The Python peers are missing (${e.message}).\nInstalling them: apt-get update && ${PEERS_INSTALL_COMMAND}`);
    if (run('apt-get', ['update']) !== 0 || run('apt-get', PEERS_INSTALL_COMMAND.split(' ').slice(1)) !== 0) {
      console.error(`apt-get failed; install the peers by hand: ${PEERS_INSTALL_COMMAND}`);
      process.exit(1);
    }
    return findPythonSync({ modules: PEER_MODULES, env: { ...process.env, BILLIARD_PYTHON: '' } });
  }
}

const only = arg('--only');
const python = setUpPython();
const version = spawnSync(python, ['-c', 'import sys, billiard; print(sys.version.split()[0], "billiard", billiard.__version__)'], { encoding: 'utf8' }).stdout.trim();
console.log(`Python peer: ${python} (${version})`);

const env: NodeJS.ProcessEnv = { ...process.env, BILLIARD_PYTHON: python };
const examples = arg('--hypothesis-examples');
if (examples !== undefined) env.HYPOTHESIS_EXAMPLES = examples;

const results: Array<[string, number]> = [];
if (only === undefined || only === 'vitest') results.push(['vitest', run(process.execPath, ['node_modules/vitest/vitest.mjs', 'run'], env)]);
if (only === undefined || only === 'pytest') results.push(['pytest', run(python, ['-m', 'pytest', 'pytests', '-q', '-p', 'no:cacheprovider'], env)]);

console.log('');
for (const [name, code] of results) console.log(`${name}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`}`);
process.exit(results.every(([, code]) => code === 0) ? 0 : 1);
