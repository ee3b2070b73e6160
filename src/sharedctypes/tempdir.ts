/**
 * billiard's `util.get_temp_dir()` (spec/api.md §11): one `pymp-XXXXXXXX`
 * directory under the system's temporary directory per process, made the
 * first time it is asked for and removed with its contents when the process
 * exits. The heap's arenas are created in it (and unlinked at once).
 *
 * (Kept here until a util module exists; it belongs there.)
 */

import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The characters of Python's `tempfile._RandomNameSequence`. */
const NAME_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789_';
/** How many names `tempfile.mkdtemp` tries before it gives up (`TMP_MAX`). */
const TMP_MAX = 10000;

let tempDir: string | undefined;

function randomName(): string {
  let s = '';
  // node:crypto on first use: importing it costs every program that imports billiard-ts milliseconds.
  const { randomInt } = process.getBuiltinModule('node:crypto');
  for (let i = 0; i < 8; i++) s += NAME_CHARS[randomInt(NAME_CHARS.length)];
  return s;
}

/**
 * The path of this process's `pymp-XXXXXXXX` directory (8 random
 * characters, as Python's `tempfile.mkdtemp(prefix='pymp-')` names it, mode
 * 0700), made on the first call. It is removed, with its contents, when the
 * process exits.
 */
export function getTempDir(): string {
  if (tempDir !== undefined) return tempDir;
  const base = tmpdir();
  for (let attempt = 0; ; attempt++) {
    const path = join(base, `pymp-${randomName()}`);
    try {
      mkdirSync(path, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && attempt < TMP_MAX) continue;
      throw e;
    }
    tempDir = path;
    process.once('exit', () => {
      try {
        rmSync(path, { recursive: true, force: true });
      } catch {
        // Nothing to report at exit; Python's finalizer ignores it too.
      }
    });
    return path;
  }
}
