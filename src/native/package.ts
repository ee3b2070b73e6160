/**
 * Where the package's own files are (the native addon, the child entry
 * point, compat/), found from wherever this code was loaded: src/ under tsx,
 * dist/ or one of its bundled chunks.
 */

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory of billiard-ts's package.json. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  const here = fileURLToPath(import.meta.url);
  for (let dir = dirname(here); ; ) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'billiard-ts') return (root = dir);
      } catch {
        // Not ours, or unreadable: keep looking upwards.
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the billiard-ts package.json above ${here}`);
    dir = up;
  }
}

/** A path inside the package: `packagePath('build', 'Release', 'x.node')`. */
export function packagePath(...parts: string[]): string {
  return join(packageRoot(), ...parts);
}

/** True when this code runs from the TypeScript sources (under tsx) rather than from dist/. */
export const FROM_SOURCE = import.meta.url.endsWith('.ts');
