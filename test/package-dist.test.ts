/**
 * The compiled package (`npm run build`, dist/): a plain JavaScript program
 * on plain `node` starts children with both start methods, the children run
 * the compiled child entry without a TypeScript loader and share the
 * package's module instances with the user's module (currentProcess() in
 * the target knows the child's name), and the `./pickle` entry uses nothing
 * of Node.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { beforeAll, expect, test } from 'vitest';

import { pythonClient, startRedis } from './helpers/celery.js';
import { waitUntil } from './helpers/until.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist');

beforeAll(() => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts'], { cwd: ROOT, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
}, 120_000);

test('dist/ has the entry points and their types', () => {
  for (const f of ['index.js', 'index.d.ts', 'pickle/index.js', 'pickle/index.d.ts', 'process/child.js', 'pool/worker.js']) expect(existsSync(join(DIST, f)), f).toBe(true);
});

test('importing the package loads none of the Node modules it needs only on use (node:crypto, node:child_process, node:v8, node:worker_threads, node:inspector): they cost every importer milliseconds', () => {
  const lazy = ['crypto', 'child_process', 'dgram', 'v8', 'worker_threads', 'inspector'];
  const script = `await import(${JSON.stringify(join(DIST, 'index.js'))}); console.log(JSON.stringify(${JSON.stringify(lazy)}.filter((m) => process.moduleLoadList.includes('NativeModule ' + m))));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout.trim())).toEqual([]);
});

test('a plain node program on dist/ starts spawn and forkserver children that run without tsx', () => {
  const r = spawnSync(process.execPath, ['test/fixtures/dist-check.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim()) as Record<string, { message: [string, string[], string]; exitcode: number; name: string }>;
  for (const method of ['spawn', 'forkserver']) {
    const { message, exitcode, name } = out[method]!;
    expect(exitcode).toBe(0);
    expect(message[0]).toBe(name);
    expect(message[1].join(' ')).not.toContain('tsx');
    expect(message[2]).toBe(join(DIST, 'process', 'child.js'));
  }
});

test('a plain node program on dist/ runs a Pool of each start method (the worker entry, and the spawn reducers of layers bundled into one chunk), and a Pool of Python workers', () => {
  const r = spawnSync(process.execPath, ['test/fixtures/dist-pool-check.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout.trim())).toEqual({ spawn: [1, 4, 9, 16, 25], forkserver: [1, 4, 9, 16, 25], python: [-1, -2, -3] });
});

test('a plain node program on dist/ starts managers: Manager() (SyncManager found in the bundle by the server child) and a manager class of its own main module, under each start method', () => {
  const r = spawnSync(process.execPath, ['test/fixtures/dist-manager-check.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout.trim())).toEqual({ Manager: { a: 1, b: 2 }, spawn: ['spawn', null, 0], forkserver: ['forkserver', null, 0] });
});

test('a TypeScript application (tsx) on dist/: its .ts target runs in children of both methods and pickles values made with dist/', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/dist-ts-check.ts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim()) as Record<string, { message: [string, string, string]; exitcode: number }>;
  for (const method of ['spawn', 'forkserver']) {
    expect(out[method]).toEqual({ message: ['from a .ts target', '2', join(DIST, 'process', 'child.js')], exitcode: 0 });
  }
});

/** The files an entry of dist/ loads: itself and the chunks it imports, transitively. */
function closureOf(entry: string): Map<string, string> {
  const seen = new Map<string, string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    const source = readFileSync(file, 'utf8');
    seen.set(file, source);
    for (const m of source.matchAll(/(?:from|import)\s*["'](\.[^"']+)["']/g)) visit(join(file, '..', m[1]!));
  };
  visit(join(DIST, entry));
  return seen;
}

test('the ./pickle entry and the chunks it loads import nothing of Node', () => {
  const files = closureOf(join('pickle', 'index.js'));
  for (const [file, source] of files) expect(source, file).not.toMatch(/from\s*["']node:|require\(["']node:/);
  expect(files.size).toBeGreaterThan(1);
  expect(readdirSync(join(DIST, 'chunks')).length).toBeGreaterThan(0);
});

test('a child and a pool worker load the connection, not the listener, the handshake or wait(): less code for every child to compile', () => {
  for (const entry of [join('process', 'child.js'), join('pool', 'worker.js')]) {
    const code = [...closureOf(entry).values()].join('\n');
    // (minified: `var Connection=class _Connection{...}`)
    expect(/\bConnection=class\b/.test(code), `${entry} has Connection`).toBe(true);
    for (const absent of [/\bListener=class\b/, /\bfunction deliverChallenge\(/, /\bfunction answerChallenge\(/, /\bfunction wait\(/, /\bfunction Pipe\(/]) {
      expect(absent.test(code), `${entry} loads ${absent}`).toBe(false);
    }
  }
});

test('the compiled classes and functions keep their names: a Process is named Process-1, and every export of the package and of its ./pickle and ./celery entries has the name it has when the sources run', () => {
  // esbuild names a class whose body refers to itself `_Process` (var Process = class _Process), renames a
  // declaration whose name another module also declares (Semaphore2), and drops unused function-expression names.
  const entries = ['index', 'pickle/index', 'celery/index'];
  const script = (urls: Record<string, string>): string => `
    const names = {};
    for (const [entry, url] of Object.entries(${JSON.stringify(urls)})) {
      const m = await import(url);
      names[entry] = Object.fromEntries(Object.entries(m).filter(([, v]) => typeof v === 'function').map(([k, v]) => [k, v.name]));
    }
    const { Process } = await import(${JSON.stringify(urls.index)});
    console.log(JSON.stringify({ names, process: new Process({ target: null }).name, repr: String(new Process({ target: null })) }));`;
  type Names = { names: Record<string, Record<string, string>>; process: string; repr: string };
  const run = (args: string[]): Names => {
    const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Names;
  };
  const urls = (dir: string, ext: string): Record<string, string> => Object.fromEntries(entries.map((e) => [e, pathToFileURL(join(dir, `${e}${ext}`)).href]));
  const dist = run(['--input-type=module', '-e', script(urls(DIST, '.js'))]);
  const source = run(['--import', 'tsx', '--input-type=module', '-e', script(urls(join(ROOT, 'src'), '.ts'))]);
  expect(dist.process).toBe('Process-1');
  expect(dist.repr).toBe('<Process(Process-2, initial)>');
  expect(Object.keys(dist.names)).toEqual(entries);
  for (const e of entries) expect(dist.names[e], e).toEqual(source.names[e]);
});

test('internals stay out of the public surface: not exported, not in the type declarations', async () => {
  const api = (await import(join(DIST, 'index.js'))) as Record<string, unknown>;
  for (const name of ['flushConnections', 'findPythonVersion', 'kOnReadable', 'kIsReady', 'timeoutError']) expect(api, name).not.toHaveProperty(name);
  const declarations: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith('.d.ts')) declarations.push(p);
    }
  };
  walk(DIST);
  expect(declarations.length).toBeGreaterThan(10);
  const problems: string[] = [];
  for (const file of declarations) {
    const text = readFileSync(file, 'utf8');
    for (const word of ['flushConnections', 'openedStream', 'isReady(', 'findPythonVersion']) if (text.includes(word)) problems.push(`${file}: ${word}`);
    // A member keyed by a symbol the package does not export cannot be named by its users.
    for (const m of text.matchAll(/\[(k[A-Z]\w*)\]/g)) problems.push(`${file}: [${m[1]}]`);
  }
  expect(problems).toEqual([]);
});

test('the billiard-ts command on dist/ (package.json bin, plain node) runs a Celery worker whose .mjs tasks a real Celery client calls', async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const bin = join(ROOT, pkg.bin['billiard-ts']!);
  expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node')).toBe(true);
  const redis = await startRedis();
  const worker = spawn(process.execPath, [bin, 'celery', 'worker', '--app', 'test/fixtures/celery-dist-app.mjs', '--app-name', 'tasks', '--broker', redis.url(0), '-c', '1'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  worker.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  try {
    await waitUntil(() => / ready\. Tasks: tasks\.add/.test(log), 30, `the worker to start: ${log}`);
    const [r] = await pythonClient(redis, [{ task: 'tasks.add', args: [2, 3] }], { CELERY_BACKEND: redis.url(0) });
    expect(r).toMatchObject({ ok: 5, state: 'SUCCESS' });
    expect(log).not.toMatch(/tsx/);
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    worker.kill('SIGKILL');
    await redis.stop();
  }
}, 60_000);

test('the billiard-ts command on dist/ given a .ts app runs itself again under tsx (found from the current directory) and serves its tasks', async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const bin = join(ROOT, pkg.bin['billiard-ts']!);
  const redis = await startRedis();
  const worker = spawn(process.execPath, [bin, 'celery', 'worker', '--app', 'examples/celery/tasks.ts', '--broker', redis.url(0), '-c', '1'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  worker.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
  try {
    await waitUntil(() => / ready\. Tasks: tasks\.add, tasks\.careful, tasks\.slow/.test(log), 30, `the worker to start: ${log}`);
    const [r] = await pythonClient(redis, [{ task: 'tasks.add', args: [20, 22] }], { CELERY_BACKEND: redis.url(0) });
    expect(r).toMatchObject({ ok: 42, state: 'SUCCESS' });
    worker.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(log).toMatch(/warm shutdown/);
  } finally {
    worker.kill('SIGKILL');
    await redis.stop();
  }
}, 60_000);
