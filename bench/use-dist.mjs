/**
 * `node --import ./bench/use-dist.mjs`, or imported first: from here on,
 * imports of src/'s entry points load dist/ (see bench/dist-hooks.mjs).
 * Set BENCH_SOURCE=src to measure src/ under tsx instead.
 */
import { register } from 'node:module';

if (process.env.BENCH_SOURCE !== 'src') register('./dist-hooks.mjs', import.meta.url);
