/**
 * Task functions of the pool benchmark (bench/pool.ts). Every pool runs
 * these: billiard-ts's workers import this module by URL, piscina and
 * tinypool by `{ filename, name }`, workerpool through a worker script that
 * registers them. bench/pool.ts compiles this file to plain JavaScript
 * first (esbuild, no bundling: it imports nothing), so that no worker needs
 * a TypeScript loader, as a user's compiled code would not.
 *
 * Python's are `square` and `noop` of bench/py_pool_bench.py.
 */

/** `x * x`: the task of the map and applyAsync rows. */
export function square(x: number): number {
  return x * x;
}

/** Returns its argument: the trivial task of the start and RSS rows. */
export function noop<T>(x: T): T {
  return x;
}

/**
 * `square` over a chunk. The npm thread pools have no `map`: their
 * default-chunksize map row submits the items in chunks of billiard's
 * default size, one task of this per chunk (what billiard's `mapstar` does
 * in a billiard worker).
 */
export function squareChunk(xs: readonly number[]): number[] {
  const out = new Array<number>(xs.length);
  for (let i = 0; i < xs.length; i++) out[i] = xs[i]! * xs[i]!;
  return out;
}
