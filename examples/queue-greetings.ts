/**
 * billiard's first documented example, in TypeScript: three processes put
 * a greeting on a Queue that the parent reads, then the parent joins them.
 *
 *   npx tsx examples/queue-greetings.ts
 *
 * Python:
 *   def worker_task(name, result_queue):
 *       result_queue.put(f'Hello, {name}!')
 *   if __name__ == '__main__':
 *       q = Queue()
 *       ps = [Process(target=worker_task, args=(n, q)) for n in names]
 *       ...
 */
import { isMainProcess, Process, Queue } from '../src/index.js';

export async function workerTask(name: string, resultQueue: Queue): Promise<void> {
  await resultQueue.put(`Hello, ${name}! (from process ${process.pid})`);
}

if (isMainProcess(import.meta)) {
  const resultQueue = new Queue();
  const names = ['Alice', 'Bob', 'Charlie'];
  const processes = names.map((name) => new Process({ target: workerTask, args: [name, resultQueue] }));
  for (const p of processes) p.start();
  for (let i = 0; i < names.length; i++) console.log(await resultQueue.get());
  for (const p of processes) await p.join();
  console.log('exit codes:', processes.map((p) => p.exitcode).join(' '));
}
