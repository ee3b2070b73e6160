/**
 * `npm run build`: dist/ for the published package.
 *
 * JavaScript: esbuild bundles the entry points (the package, its `./pickle`
 * subpath and the child entry point) with code splitting, so that a child
 * and the user's module that imports 'billiard-ts' share one copy of every
 * module (one Connection class, one currentProcess()). A child loads a
 * handful of files instead of every module of src/, which is most of what
 * the bootstrap adds to a bare Node start (see bench/process.ts).
 * The JavaScript is minified but for its names, with source maps.
 * Types: tsc writes the .d.ts files beside them.
 */

import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DIST = join(ROOT, 'dist');

rmSync(DIST, { recursive: true, force: true });
await build({
  absWorkingDir: ROOT,
  entryPoints: { index: 'src/index.ts', 'pickle/index': 'src/pickle/index.ts', 'process/child': 'src/process/child.ts', 'pool/worker': 'src/pool/worker.ts', 'celery/index': 'src/celery/index.ts', 'celery/cli': 'src/celery/cli.ts', 'celery/runner': 'src/celery/runner.ts' },
  // npm dependencies (ioredis, for billiard-ts/celery) stay imports.
  packages: 'external',
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  sourcemap: true,
  // Less source to parse is a faster child start-up (about 10 ms here); names
  // are kept, and `node --enable-source-maps` maps stack traces back to src/.
  minifyWhitespace: true,
  minifySyntax: true,
  logLevel: 'warning',
});
const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--emitDeclarationOnly'], { cwd: ROOT, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
