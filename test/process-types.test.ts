/**
 * Process's options are typed against its target: test/fixtures/typed-args.ts
 * holds uses that compile and uses that must not (each marked
 * @ts-expect-error, which is itself an error when the line compiles). This
 * runs the TypeScript compiler on that file alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expect, test } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = join(ROOT, 'test', 'fixtures', 'typed-args.ts');

test('args must match the target: a wrong argument, a missing one, an extra one or wrong kwargs does not compile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'billiard-ts-types-'));
  try {
    const config = join(dir, 'tsconfig.json');
    const compilerOptions = { noEmit: true, rootDir: ROOT, typeRoots: [join(ROOT, 'node_modules', '@types')] };
    writeFileSync(config, JSON.stringify({ extends: join(ROOT, 'tsconfig.json'), compilerOptions, include: [FIXTURE] }));
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config, '--pretty', 'false'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    // Only this file's diagnostics count (others may be mid-edit elsewhere in src/).
    const mine = r.stdout.split('\n').filter((line) => line.includes('typed-args.ts'));
    expect(mine).toEqual([]);
    // Errors of the whole program (a configuration tsc refused, types it could not find) would hide the file's.
    expect(r.stdout.split('\n').filter((line) => line.startsWith('error TS'))).toEqual([]);
    expect(r.error).toBeUndefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
