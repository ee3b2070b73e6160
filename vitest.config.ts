import { availableParallelism } from 'node:os';

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Vitest's default is one worker fewer than the CPUs: on the project's 2-CPU machines, one
    // file at a time. A file spends most of its time waiting for the processes it starts, so two
    // at once nearly halve the suite (2026-12-07: 557 s -> 310 s, all 724 tests passing).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
