/**
 * A Node pool whose workers are Python processes running billiard's own
 * Worker: Python functions, called from Node, with billiard's time limits
 * and restarts.
 *
 *   npx tsx examples/pool-python.ts
 *
 * `python: { path }` puts this directory on the workers' sys.path (for
 * py_tasks.py); the interpreter is BILLIARD_PYTHON, else the first python3
 * that can import billiard. Tasks are Python globals named with pyfunc().
 */
import { isMainProcess, Pool, pyfunc, PythonException } from '../src/index.js';

if (isMainProcess(import.meta)) {
  await using pool = new Pool({ processes: 2, python: { path: [import.meta.dirname] }, timeout: 30 });
  console.log('operator.mul(6, 7) =', await pool.apply(pyfunc('operator.mul'), [6, 7]));
  console.log('score =', await pool.apply(pyfunc('py_tasks.score'), ['billiard'], { kwds: { weight: 3 } }));
  console.log('squares =', await pool.map(pyfunc('py_tasks.square'), [1, 2, 3, 4, 5]));
  try {
    await pool.apply(pyfunc('builtins.int'), ['not a number']);
  } catch (e) {
    if (!(e instanceof PythonException)) throw e;
    console.log(`a Python error came back, typed (${e.pyName}): ${e.message}`);
  }
}
