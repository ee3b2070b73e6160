/**
 * The layering rule of DESIGN.md: each layer imports only from the layers
 * above it, nothing imports src/index.ts, and the pickle layer uses nothing
 * of Node (it must also run in a browser).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, test } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/**
 * Layer order (DESIGN.md's table: native sits below the wire layer, which
 * uses it for socket pairs, pipes and abstract Unix names). A folder may
 * import from folders earlier in this list, and from itself.
 */
const ORDER = ['pickle', 'native', 'connection', 'process', 'synchronize', 'sharedctypes', 'queues', 'pool', 'managers', 'celery'];
const MAY_IMPORT: Record<string, string[]> = {
  pickle: [],
  // The native layer takes only the error base class from pickle (NativeError is a BilliardError).
  native: ['pickle'],
  connection: ['pickle', 'native'],
  process: ['pickle', 'connection', 'native'],
  synchronize: ['pickle', 'connection', 'native', 'process', 'sharedctypes', 'queues'],
  sharedctypes: ['pickle', 'connection', 'native', 'process', 'synchronize'],
  queues: ['pickle', 'connection', 'native', 'process', 'synchronize'],
  pool: ['pickle', 'connection', 'native', 'process', 'synchronize', 'sharedctypes', 'queues'],
  managers: ['pickle', 'connection', 'native', 'process', 'synchronize', 'sharedctypes', 'queues', 'pool'],
  // billiard-ts/celery: its own entry point, so that only its users load the Redis client.
  celery: ['pickle', 'connection', 'native', 'process', 'synchronize', 'sharedctypes', 'queues', 'pool'],
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function imports(source: string): string[] {
  return [...source.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+['"]([^'"]+)['"]/gms), ...source.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!).concat(
    [...source.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]!),
  );
}

test('MAY_IMPORT follows ORDER: a layer imports only layers listed before it', () => {
  for (const [layer, allowed] of Object.entries(MAY_IMPORT)) {
    for (const other of allowed) {
      // synchronize/sharedctypes/queues are one tier (DESIGN.md's "sync" row) and may use each other.
      const sameTier = ['synchronize', 'sharedctypes', 'queues'].includes(layer) && ['synchronize', 'sharedctypes', 'queues'].includes(other);
      if (!sameTier) expect(ORDER.indexOf(other), `${layer} -> ${other}`).toBeLessThan(ORDER.indexOf(layer));
    }
  }
});

test('the native layer takes nothing from pickle but the error base class', () => {
  const problems: string[] = [];
  for (const file of files(join(SRC, 'native'))) {
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('../') && spec !== '../pickle/errors.js') problems.push(`${relative(SRC, file)} imports ${spec}`);
    }
  }
  expect(problems).toEqual([]);
});

test('layers import only from the layers above them', () => {
  const problems: string[] = [];
  for (const file of files(SRC)) {
    const rel = relative(SRC, file);
    const layer = rel.includes('/') ? rel.split('/')[0]! : 'facade';
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = relative(SRC, join(file, '..', spec));
      if (target === 'index.js' && layer !== 'facade') problems.push(`${rel} imports src/index`);
      const targetLayer = target.includes('/') ? target.split('/')[0]! : 'facade';
      if (layer === 'facade' || targetLayer === layer) continue;
      if (!ORDER.includes(layer)) problems.push(`${rel}: folder ${layer} is not a layer of DESIGN.md`);
      else if (!MAY_IMPORT[layer]!.includes(targetLayer)) problems.push(`${rel} (${layer}) imports ${target} (${targetLayer})`);
    }
  }
  expect(problems).toEqual([]);
});

test('the pickle layer uses nothing of Node', () => {
  const problems: string[] = [];
  for (const file of files(join(SRC, 'pickle'))) {
    const source = readFileSync(file, 'utf8');
    for (const spec of imports(source)) if (!spec.startsWith('.')) problems.push(`${relative(SRC, file)} imports ${spec}`);
    const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    for (const [name, re] of [['Buffer', /\bBuffer\b/], ['process', /\bprocess\./], ['require', /\brequire\(/]] as const) {
      if (re.test(code)) problems.push(`${relative(SRC, file)} uses ${name}`);
    }
  }
  expect(problems).toEqual([]);
});

test('only the celery layer loads the Redis client, and nothing outside it imports the celery layer', () => {
  const problems: string[] = [];
  for (const file of files(SRC)) {
    const rel = relative(SRC, file);
    const layer = rel.includes('/') ? rel.split('/')[0]! : 'facade';
    for (const spec of imports(readFileSync(file, 'utf8'))) {
      if (spec === 'ioredis' && layer !== 'celery') problems.push(`${rel} imports ioredis`);
      if (spec.startsWith('.') && layer !== 'celery' && relative(SRC, join(file, '..', spec)).startsWith('celery/')) problems.push(`${rel} imports ${spec}`);
    }
  }
  expect(problems).toEqual([]);
});
