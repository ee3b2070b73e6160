/**
 * billiard's second documented example, in TypeScript: a pool of four
 * worker processes squares five numbers.
 *
 *   npx tsx examples/pool-square.ts
 *
 * Python:
 *   def square(x):
 *       return x * x
 *   if __name__ == '__main__':
 *       with Pool(processes=4) as pool:
 *           print(pool.map(square, [1, 2, 3, 4, 5]))
 *
 * `square` is exported: the workers import this module to find it (its
 * guarded section below does not run in them).
 */
import { isMainProcess, Pool } from '../src/index.js';

export function square(x: number): number {
  return x * x;
}

if (isMainProcess(import.meta)) {
  await using pool = Pool({ processes: 4 });
  const squares = await pool.map(square, [1, 2, 3, 4, 5]);
  console.log(`[${squares.join(', ')}]`); // as Python prints it: [1, 4, 9, 16, 25]
}
