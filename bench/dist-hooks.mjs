/**
 * Module resolution hooks that make benchmark code measure the compiled
 * package (dist/), as installed users run it, instead of src/ under tsx.
 * tsx compiles src/ with esbuild's keepNames, which wraps every class and
 * function in a `__name` call: in `loads` that alone cost about 30%.
 *
 * Only the package's entry points are redirected (src/index, src/pickle/index,
 * src/celery/index -> the same under dist/): internal helpers a benchmark
 * imports directly (findPython, the Celery message builder) stay on src/,
 * which is safe because none of them creates objects the measured code
 * checks with instanceof. Registered by bench/use-dist.mjs.
 */
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join, relative, sep } from 'node:path';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');
const ENTRIES = new Map([
  ['index', 'index.js'],
  [`pickle${sep}index`, `pickle${sep}index.js`],
  [`celery${sep}index`, `celery${sep}index.js`],
]);

export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  if (!result.url.startsWith('file:')) return result;
  const path = fileURLToPath(result.url);
  if (!path.startsWith(SRC + sep)) return result;
  const rel = relative(SRC, path).replace(/\.(ts|js)$/, '');
  const target = ENTRIES.get(rel);
  if (target === undefined) return result;
  return { url: pathToFileURL(join(ROOT, 'dist', target)).href, format: 'module', shortCircuit: true };
}
