/**
 * The compiled package the benchmarks measure. `npm run bench` builds dist/
 * once (scripts/build.ts) and, unless BENCH_SOURCE=src, loads src/'s entry
 * points from dist/ (bench/use-dist.mjs), so every row measures the code an
 * installed user runs rather than src/ compiled by tsx.
 */
import { spawnSync } from 'node:child_process';
import { register } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
let built = false;

/** Builds dist/ (npm run build), once per process. */
export function buildDist(progress: (message: string) => void = () => {}): void {
  if (built) return;
  progress('building dist/ (npm run build)');
  const build = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'build.ts')], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if (build.status !== 0) throw new Error('npm run build failed');
  built = true;
}

/** True when the benchmarks measure dist/ (the default); BENCH_SOURCE=src measures src/ under tsx. */
export const measuresDist = process.env.BENCH_SOURCE !== 'src';

/**
 * From here on, imports of src/'s entry points (src/index, src/pickle/index,
 * src/celery/index) load dist/'s (bench/dist-hooks.mjs). A child started with
 * `--import bench/use-dist.mjs` gets the same.
 */
export function loadFromDist(): void {
  register('./dist-hooks.mjs', import.meta.url);
}
