/**
 * Work a child finishes before it exits when its target returns (Python's
 * `util._exit_function` running the Finalize callbacks): the layers above
 * add theirs, e.g. a Queue's feeder writing what it still holds.
 */

const hooks = new Set<() => Promise<void>>();

/** Runs `hook` (awaited) before a child process exits. @internal */
export function addExitHook(hook: () => Promise<void>): void {
  hooks.add(hook);
}

/** Awaits every exit hook; their failures are ignored (the process is ending). @internal */
export async function runExitHooks(): Promise<void> {
  await Promise.all([...hooks].map((h) => h().catch(() => undefined)));
}
