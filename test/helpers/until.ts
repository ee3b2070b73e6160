/** Polls `check` every 10 ms: true once it holds, false if it still does not after `seconds`. */
export async function until(check: () => boolean, seconds = 20): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

/**
 * Polls `check` (sync or async) every 50 ms until it holds; throws naming
 * `what` after `seconds`. For conditions read over a network (Redis keys,
 * remote-control replies), where {@link until}'s 10 ms would flood.
 */
export async function waitUntil(check: () => boolean | Promise<boolean>, seconds = 20, what = 'a condition'): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
