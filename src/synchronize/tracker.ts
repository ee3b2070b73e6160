/**
 * The semaphore tracker (billiard's `semaphore_tracker`): named semaphores
 * outlive the process that made them unless someone unlinks them. A process
 * unlinks its own at exit ('exit' event); for a death no handler sees
 * (SIGKILL, or a signal with no listener), a small `/bin/sh` process
 * started (synchronously) on the first registration holds the names and unlinks those still
 * registered when its input pipe reaches end of file, which happens when
 * this process is gone, however it went. It ignores SIGINT, SIGTERM and
 * SIGHUP, which a terminal sends to the whole process group.
 *
 * Linux keeps a named semaphore `/x` as the file `/dev/shm/sem.x`, so the
 * tracker removes that file: what `sem_unlink` does there.
 */

import { closeSync, writeSync } from 'node:fs';

import { pipe, Semaphore } from '../native/index.js';
import { childProcess } from '../process/builtins.js';

const SCRIPT = `trap '' INT TERM HUP
set -f
names=' '
while IFS=' ' read -r op name; do
  case "$op" in
    R) names="$names$name " ;;
    U) case "$names" in *" $name "*) names="\${names%% $name *} \${names#* $name }" ;; esac ;;
  esac
done
for n in $names; do rm -f "/dev/shm/sem.\${n#/}"; done
`;

let trackerFd: number | null = null;
let trackerFailed = false;
const owned = new Set<string>();
let exitHook = false;

function send(line: string): void {
  if (trackerFailed) return;
  if (trackerFd === null) {
    try {
      const [r, w] = pipe();
      // Spawned here and now (not by the launcher thread, later): a death
      // right after the first semaphore must already find the tracker running.
      try {
        childProcess().spawn('/bin/sh', ['-c', SCRIPT], { stdio: [r, 'ignore', 'inherit'] }).unref();
      } finally {
        closeSync(r);
      }
      trackerFd = w;
    } catch {
      trackerFailed = true;
      return;
    }
  }
  try {
    writeSync(trackerFd, line);
  } catch {
    // The tracker is gone: this process still unlinks at exit.
    trackerFailed = true;
    closeSync(trackerFd);
  }
}

/** Notes a semaphore this process created: unlinked at exit, or by the tracker after a kill. */
export function registerSemaphore(name: string): void {
  owned.add(name);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', unlinkAll);
  }
  send(`R ${name}\n`);
}

/** Unlinks a semaphore this process created (its owner object was closed or collected). */
export function unlinkSemaphore(name: string): void {
  if (!owned.delete(name)) return;
  try {
    Semaphore.unlink(name);
  } catch {
    // Already gone.
  }
  send(`U ${name}\n`);
}

function unlinkAll(): void {
  for (const name of owned) {
    try {
      Semaphore.unlink(name);
    } catch {
      // Already gone.
    }
  }
  owned.clear();
}

/** The names this process created and has not unlinked (for tests). @internal */
export function ownedSemaphores(): string[] {
  return [...owned];
}
