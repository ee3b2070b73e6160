/**
 * Four processes add to one C int in shared memory, each addition under the
 * Value's lock (README, "Locks and shared values").
 *
 *   npx tsx examples/shared-counter.ts     # prints 4000
 */
import { isMainProcess, Process, Value, type Synchronized } from '../src/index.js';

export async function add(counter: Synchronized<'i'>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await counter.withLock(() => {
      counter.getObj().value += 1;
    });
  }
}

if (isMainProcess(import.meta)) {
  const counter = Value('i', 0); // a C int in shared memory, with an RLock
  const ps = [1, 2, 3, 4].map(() => new Process({ target: add, args: [counter, 1000] }));
  for (const p of ps) p.start();
  for (const p of ps) await p.join();
  console.log(counter.value); // 4000
}
