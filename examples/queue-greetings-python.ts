/**
 * billiard's first documented example with a Node parent and Python
 * workers: three billiard children (CPython, started through billiard's own
 * spawn entry point) run `greetings_worker.worker_task`, each putting a
 * greeting on the Node parent's Queue; the parent prints them and joins the
 * children. examples/queue-greetings.ts is the same with Node workers.
 *
 *   npx tsx examples/queue-greetings-python.ts
 *
 * The Python worker (examples/greetings_worker.py):
 *   def worker_task(name, result_queue):
 *       result_queue.put(f'Hello, {name}! (from Python process {os.getpid()})')
 */
import { fileURLToPath } from 'node:url';

import { Process, pyfunc, Queue } from '../src/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));

const resultQueue = new Queue();
const names = ['Alice', 'Bob', 'Charlie'];
const processes = names.map((name) => new Process({ target: pyfunc('greetings_worker.worker_task'), args: [name, resultQueue], pythonPath: [here] }));
for (const p of processes) p.start();
for (let i = 0; i < names.length; i++) console.log(await resultQueue.get());
for (const p of processes) await p.join();
console.log('exit codes:', processes.map((p) => p.exitcode).join(' '));
