/**
 * A Node parent and a Python child: a Process whose target is a Python
 * function (`pyfunc('module.func')`) runs in a Python child started through
 * billiard's own spawn entry point, and shares a Pipe with its Node parent.
 */
import { expect, test } from 'vitest';

import { currentProcess, Pipe, Process, pyfunc, tuple } from '../src/index.js';
import { exercise } from './helpers/exchange.js';
import { PEER_DIR, pythonFor } from './helpers/peers.js';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

test('the Python child shares a Pipe with its Node parent: every corpus value, 16 MiB and a burst, both ways', async () => {
  const [parent, child] = Pipe({ connection: { loadOptions: { floats: 'wrap-integral' } } });
  const p = new Process({ target: pyfunc('conn_peer.serve'), args: [child], pythonPath: [PEER_DIR], python: pythonFor('3.11') });
  p.start();
  child.close();
  await exercise(parent, { big: 16 * 1024 * 1024, burst: 10_000 });
  await p.join();
  expect(p.exitcode).toBe(0);
  parent.close();
});

test("the Python child gets its name, the parent's authkey and its identity, as billiard's children do", async () => {
  const [parent, child] = Pipe();
  const p = new Process({ target: pyfunc('py_targets.whoami'), args: [child], pythonPath: [FIXTURES], name: 'PyKid' });
  p.start();
  child.close();
  const [name, authkey, identity, authkeyType] = (await parent.recv()) as [string, Uint8Array, number[], string];
  await p.join();
  expect(name).toBe('PyKid');
  expect(Buffer.from(authkey).equals(Buffer.from(currentProcess().authkey))).toBe(true);
  expect(authkeyType).toBe('AuthenticationString');
  expect(identity).toEqual(tuple(...identity));
  expect(identity.length).toBeGreaterThan(0);
  parent.close();
});

test("the Python child's own send of its authkey is refused by billiard, as a Node child's is by billiard-ts", async () => {
  const [parent, child] = Pipe();
  const p = new Process({ target: pyfunc('py_targets.send_authkey'), args: [child], pythonPath: [FIXTURES] });
  p.start();
  child.close();
  expect(await parent.recv()).toEqual(['refused', 'TypeError', 'Pickling an AuthenticationString object is disallowed for security reasons']);
  await p.join();
  expect(p.exitcode).toBe(0);
  parent.close();
});

test("exit codes of a Python child are billiard's: raise 1, sys.exit(n) n", async () => {
  const raised = new Process({ target: pyfunc('py_targets.boom'), pythonPath: [FIXTURES] });
  const exited = new Process({ target: pyfunc('py_targets.exit_with'), args: [3], pythonPath: [FIXTURES] });
  raised.start();
  exited.start();
  await raised.join();
  await exited.join();
  expect([raised.exitcode, exited.exitcode]).toEqual([1, 3]);
});

test('examples/python-child.ts: a Python child squares numbers, a Python client reaches a Node Listener', async () => {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/python-child.ts'], { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout).toContain("python child says: PyTuple(3) [ 'PySquares', 3, 9 ]");
  expect(r.stdout).toContain('1208925819614629174706176n');
  expect(r.stdout).toContain('PySquares exited with 0');
  expect(r.stdout).toMatch(/node listener got: .*\n\s+from: 'python 3\.\d+',/);
  expect(r.stdout).toContain("python client got: ['thanks', 'from', 'node']");
});
