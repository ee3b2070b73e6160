/** Polls `check` every 10 ms: true once it holds, false if it still does not after `seconds`. */
export async function until(check: () => boolean, seconds = 20): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
