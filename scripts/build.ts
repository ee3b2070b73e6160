/**
 * `npm run build`: dist/ for the published package.
 *
 * JavaScript: esbuild bundles the entry points (the package, its `./pickle`
 * subpath and the child entry point) with code splitting, so that a child
 * and the user's module that imports 'billiard-ts' share one copy of every
 * module (one Connection class, one currentProcess()). A child loads a
 * handful of files instead of every module of src/, which is most of what
 * the bootstrap adds to a bare Node start (see bench/process.ts).
 * The JavaScript is minified but for its names, with source maps; the names
 * esbuild changes (a self-referring class `_X`, a declaration renamed `X2`)
 * are given back at the end of each file (restoreClassNames,
 * restoreExportNames). Types: tsc writes the .d.ts files beside them.
 */

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
restoreClassNames(DIST);
restoreExportNames();

/**
 * A class whose body names itself is emitted as `var X = class _X {...}`, so
 * its `name` would be `_X` (a Process's default name `_Process-1`, reprs,
 * messages that name a class): each output file ends by giving those
 * classes their own names back.
 */
function restoreClassNames(dir: string): void {
  for (const file of jsFiles(dir)) {
    const names = new Set([...readFileSync(file, 'utf8').matchAll(/\b([A-Za-z$][\w$]*)=class _\1\b/g)].map((m) => m[1]!));
    if (names.size > 0) append(file, [...names].map((n) => `${n}.name!=="${n}"&&Object.defineProperty(${n},"name",{value:"${n}"});`).join(''));
  }
}

/** Appends `code` to a compiled file, before its source map comment. */
function append(file: string, code: string): void {
  const text = readFileSync(file, 'utf8');
  const at = text.lastIndexOf('\n//# sourceMappingURL=');
  writeFileSync(file, at < 0 ? `${text}\n${code}\n` : `${text.slice(0, at)}\n${code}${text.slice(at)}`);
}

/**
 * esbuild also renames a declaration whose name another module declares too
 * (`function sendFds2`, `Semaphore2 = class`) and drops the name of a
 * function expression (`AutoProxy = Object.assign(function (...) {...})`):
 * each export of the public entries whose name is its key so decorated, or
 * empty, gets its key as its name, where it is declared.
 */
function restoreExportNames(): void {
  const entries = ['index.js', 'pickle/index.js', 'celery/index.js'].map((e) => pathToFileURL(join(DIST, e)).href);
  const script = `const out = [];
    for (const e of ${JSON.stringify(entries)}) for (const [k, v] of Object.entries(await import(e))) if (typeof v === 'function' && v.name !== k) out.push([k, v.name]);
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`listing the exports' names failed:\n${r.stderr}`);
  const files = jsFiles(DIST).map((file) => ({ file, code: readFileSync(file, 'utf8') }));
  const fixes = new Map<string, string[]>();
  for (const [key, name] of new Map(JSON.parse(r.stdout) as Array<[string, string]>)) {
    const local = name === '' ? key : new RegExp(`^${escape(key)}\\d+$`).test(name) ? name : null;
    if (local === null) continue; // an alias: exported under another name on purpose
    const id = escape(local);
    const declared = new RegExp(`(?:(?:var|let|const)\\s+|,)${id}=(?!=)|function\\*?\\s+${id}\\(|class\\s+${id}\\b`);
    const home = files.find((f) => declared.test(f.code));
    if (home === undefined) throw new Error(`cannot find where ${local} (exported as ${key}) is declared in dist/`);
    fixes.set(home.file, [...(fixes.get(home.file) ?? []), `${local}.name!==${JSON.stringify(key)}&&Object.defineProperty(${local},"name",{value:${JSON.stringify(key)}});`]);
  }
  for (const [file, code] of fixes) append(file, code.join(''));
}

/** An identifier as a regular expression (`$` is one of its characters). */
function escape(identifier: string): string {
  return identifier.replace(/\$/g, '\\$');
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? jsFiles(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []));
}

const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--emitDeclarationOnly'], { cwd: ROOT, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
