/**
 * Fuzzer for the pickle decoder, `loads`, that survives its targets.
 *
 *   npm run fuzz:pickle -- [--count N] [--seed S] [--seconds S] [--target DIR] [limits...]
 *   npm run fuzz:pickle -- --replay <hex | file> [--spec N] [--in-process]
 *   npm run fuzz:pickle -- --index N --seed S        (rebuild input N of seed S and run it)
 *
 * Inputs run in child processes (bench/fuzz/child.ts) under a supervisor
 * (bench/fuzz/supervisor.ts) that kills a child whose input runs too long or
 * grows too much, notices a child that dies (a V8 fatal error, an abort, a
 * signal), records the input that did it and goes on with a fresh child.
 * Input i is a pure function of (seed, i): see bench/fuzz/generate.ts and,
 * for the generators aimed at resource bugs, bench/fuzz/hostile.ts. What
 * counts as a finding is in bench/fuzz/oracle.ts; bench/README.md has the
 * options, the findings format and how to replay one.
 */

import { randomInt } from 'node:crypto';
import { resolve } from 'node:path';

import { FAMILIES, parseFamilies } from './fuzz/generate.js';
import { type Config, DEFAULT_TARGET, fuzzMain, replayMain } from './fuzz/supervisor.js';

const USAGE = `usage: npm run fuzz:pickle -- [options]
  --count N            inputs to run (default 200000)
  --seconds S          stop after S seconds even if --count is not reached (default 0: no time limit)
  --seed N             PRNG seed (default: random, printed); input i is a pure function of (seed, i)
  --target DIR         repository whose src/pickle is fuzzed (default: this one), e.g. a git worktree of HEAD
  --out DIR            findings directory (default /tmp/billiard-fuzz-findings); each run writes a subdirectory
  --jobs N             child processes running inputs at once (default 1)
  --batch N            inputs per batch sent to a child (default 2000)
  --batch-ms MS        a child reports back at least this often (default 100)
  --time-limit-ms MS   kill the child when one input runs longer (default 2000): a 'timeout' finding
  --memory-limit-mb M  an input that grows memory by more (measured in the child, or the child's RSS
                       while the input runs) is a 'memory' finding (default 256)
  --max-rss-mb M       kill a child whose RSS passes this (default 2048)
  --child-heap-mb M    --max-old-space-size of each child (default 1024)
  --slow-ms MS         an input that completes slower than this is a 'slow' finding (default 1000)
  --amp-ratio R        an input whose memory grew by more than R bytes per input byte ...
  --amp-min-mb M       ... and by more than M MiB is an 'amplification' finding (defaults 1000 and 128)
  --check-every N      full pollution check and known-good pickles every N inputs (default 500)
  --max-seed-bytes N   skip corpus pickles larger than this (default 65536)
  --replay HEX|FILE    run one input (hex, a file of hex or raw bytes, or a finding .json) in a child with
                       the same limits, and print what happened
  --index N            rebuild input N of --seed and run it as --replay does
  --spec N             the options bitmask for --replay/--index (see SPEC_BITS in bench/fuzz/core.ts)
  --families SPEC      generator weights, e.g. 'memo-huge=100,handler-bomb=50' or 'only,memo-huge' (families:
                       truncate-seed, ${FAMILIES.map(([n, w]) => `${n} (${w})`).join(', ')})
  --in-process         replay in this process instead of a child (stack traces, but a fatal error kills it)`;

function parseArgs(argv: readonly string[]): Config {
  const cfg: Config = {
    count: 200_000,
    seconds: 0,
    seed: randomInt(0, 2 ** 31),
    out: '/tmp/billiard-fuzz-findings',
    target: DEFAULT_TARGET,
    jobs: 1,
    batch: 2000,
    batchMs: 100,
    slowMs: 1000,
    timeLimitMs: 2000,
    memoryLimitMb: 256,
    maxRssMb: 2048,
    childHeapMb: 1024,
    ampRatio: 1000,
    ampMinMb: 128,
    checkEvery: 500,
    maxSeedBytes: 65536,
    replay: undefined,
    index: undefined,
    spec: undefined,
    inProcess: false,
    families: undefined,
  };
  const num = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n < 0) throw new Error(`${name} needs a non-negative number`);
    return n;
  };
  const int = (name: string, v: string | undefined, min = 0): number => {
    const n = Math.floor(num(name, v));
    if (n < min) throw new Error(`${name} must be at least ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--count': cfg.count = int(a, v); i++; break;
      case '--seconds': cfg.seconds = num(a, v); i++; break;
      case '--seed': cfg.seed = int(a, v) >>> 0; i++; break;
      case '--target': if (v === undefined) throw new Error('--target needs a directory'); cfg.target = resolve(v); i++; break;
      case '--out': if (v === undefined) throw new Error('--out needs a directory'); cfg.out = v; i++; break;
      case '--jobs': cfg.jobs = int(a, v, 1); i++; break;
      case '--batch': cfg.batch = int(a, v, 1); i++; break;
      case '--batch-ms': cfg.batchMs = int(a, v, 1); i++; break;
      case '--time-limit-ms': cfg.timeLimitMs = int(a, v, 1); i++; break;
      case '--memory-limit-mb': cfg.memoryLimitMb = int(a, v, 1); i++; break;
      case '--max-rss-mb': cfg.maxRssMb = int(a, v, 64); i++; break;
      case '--child-heap-mb': cfg.childHeapMb = int(a, v, 64); i++; break;
      case '--slow-ms': cfg.slowMs = num(a, v); i++; break;
      case '--amp-ratio': cfg.ampRatio = num(a, v); i++; break;
      case '--amp-min-mb': cfg.ampMinMb = num(a, v); i++; break;
      case '--check-every': cfg.checkEvery = int(a, v, 1); i++; break;
      case '--max-seed-bytes': cfg.maxSeedBytes = int(a, v); i++; break;
      case '--replay': if (v === undefined) throw new Error('--replay needs hex or a file'); cfg.replay = v; i++; break;
      case '--index': cfg.index = int(a, v); i++; break;
      case '--spec': cfg.spec = int(a, v); i++; break;
      case '--in-process': cfg.inProcess = true; break;
      case '--families': if (v === undefined) throw new Error('--families needs name=weight,...'); parseFamilies(v); cfg.families = v; i++; break;
      case '--help': case '-h': console.log(USAGE); process.exit(0); break;
      default: throw new Error(`unknown argument ${a}\n${USAGE}`);
    }
  }
  return cfg;
}

let cfg: Config;
try {
  cfg = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error((e as Error).message);
  process.exit(2);
}
process.exitCode = cfg.replay !== undefined || cfg.index !== undefined ? await replayMain(cfg) : await fuzzMain(cfg);
