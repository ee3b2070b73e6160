/**
 * V8's tier-up budget in processes that run billiard-ts's own loop for
 * their whole life: pool workers, and the Celery worker's main process.
 * @internal
 */

/** V8's `--interrupt-budget` in those processes, unless BILLIARD_TS_INTERRUPT_BUDGET says otherwise. */
const INTERRUPT_BUDGET = 20_000;

/**
 * Lets V8 optimize this process's hot functions after about a seventh of the
 * bytecode it would run first by default (132 KiB per function). A pool
 * worker runs the same few functions (frame reads, the pickler, its task
 * loop) for every job: a new worker measured 20 to 30 µs of CPU per job
 * over its first ten thousand jobs with V8's default and 9 to 15 µs with
 * this (bench/README.md, "a new worker's first ten thousand jobs").
 * Process-wide, so it reaches the task's code too.
 * BILLIARD_TS_INTERRUPT_BUDGET=N sets another budget in bytes, 0 leaves
 * V8's own; an `--interrupt-budget` among the process's Node flags wins.
 */
export function quickenTierUp(): void {
  if (process.execArgv.some((a) => a.startsWith('--interrupt-budget') || a.startsWith('--interrupt_budget'))) return;
  const env = process.env.BILLIARD_TS_INTERRUPT_BUDGET;
  const budget = env === undefined || env === '' ? INTERRUPT_BUDGET : Number(env);
  if (!Number.isSafeInteger(budget) || budget <= 0) return;
  // node:v8 only here: importing it up front costs every program that imports billiard-ts 1 to 2 ms.
  process.getBuiltinModule('node:v8').setFlagsFromString(`--interrupt-budget=${budget}`);
}
