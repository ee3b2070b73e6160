/**
 * billiard's logging (spec/api.md sections 1 and 11): getLogger,
 * logToStderr, the util helpers and the SUBDEBUG/SUBWARNING levels.
 * The lines a program prints on stderr are compared with what CPython 3.11
 * with billiard 4.1 prints for the same steps (test/fixtures/logger-lines.ts
 * and PY_STEPS below), and so are those of a parent and its Node and
 * Python children (test/fixtures/logger-children.ts and PY_CHILDREN); the
 * rest checks the logger's own behaviour in this process.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeAll, describe, expect, test } from 'vitest';

import { getContext, getLogger, Logger, logToStderr, StreamHandler, SUBDEBUG, SUBWARNING, util, ValueError, currentProcess, type LogRecord } from '../src/index.js';
import { formatMessage } from '../src/process/logger.js';
import { pythonFor } from './helpers/peers.js';

const ROOT = new URL('..', import.meta.url).pathname;

/** The steps of test/fixtures/logger-lines.ts, in Python with billiard. */
const PY_STEPS = `
import sys
import billiard
from billiard import util

sys.stdout.write('start\\n'); sys.stdout.flush()
util.warning('not yet')
util.error('not yet either')
logger = billiard.get_logger()
util.info('quiet')
util.sub_warning('below warning')
util.warning('last resort %s', 'x')
billiard.log_to_stderr()
util.info('still quiet')
util.warning('warn %r %d', 'q', 3)
util.error('err')
logger.setLevel(billiard.SUBDEBUG)
util.sub_debug('sd %s', 'deep')
util.debug('d %d%%', 50)
util.info('i')
util.sub_warning('sw 50%')
logger.critical('c')
logger.log(7, 'lvl7')
sys.stdout.write('end\\n')
`;

describe('what a program prints, against CPython with billiard', () => {
  let python: string;
  beforeAll(async () => {
    python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
  }, 60_000);

  test('the same steps print the same stderr lines in Node and in Python (lastResort, then [LEVEL/MainProcess] lines)', () => {
    const py = spawnSync(python, ['-c', PY_STEPS], { encoding: 'utf8' });
    expect(py.status, py.stderr).toBe(0);
    const node = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/logger-lines.ts'], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(node.status, node.stderr).toBe(0);
    expect(node.stdout).toBe('start\nend\n');
    expect(py.stdout).toBe('start\nend\n');
    // What Python printed, so that a change of billiard shows here first.
    expect(py.stderr.split('\n')).toEqual([
      'last resort x',
      "[WARNING/MainProcess] warn 'q' 3",
      '[ERROR/MainProcess] err',
      '[SUBDEBUG/MainProcess] sd deep',
      '[DEBUG/MainProcess] d 50%',
      '[INFO/MainProcess] i',
      '[SUBWARNING/MainProcess] sw 50%',
      '[CRITICAL/MainProcess] c',
      '[Level 7/MainProcess] lvl7',
      '',
    ]);
    expect(node.stderr).toBe(py.stderr);
  });
});

/** The parent of test/fixtures/logger-children.ts, in Python: billiard with the spawn method and Python targets only. */
const PY_CHILDREN = `
import sys
import billiard
from billiard import util
import py_targets

billiard.set_start_method('spawn')
if sys.argv[1] != 'off':
    billiard.log_to_stderr(int(sys.argv[1]))
for target, args in [(py_targets.log_in_child, (1,)), (py_targets.log_in_child, (2,)), (py_targets.log_then_fail, ())]:
    p = billiard.Process(target=target, args=args)
    p.start()
    p.join()
    util.info('joined %s with %s', p.name, p.exitcode)
`;

describe('children take over the parent’s logging, as billiard’s spawned children do', () => {
  let python: string;
  beforeAll(async () => {
    python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
  }, 60_000);

  /** The log lines of a run (tracebacks and stacks differ), with the pids made 'PID'. */
  const logLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('[')).map((l) => l.replace(/process \d+/g, 'process PID'));

  test.each(['20', '5', 'off'])('the parent logs at %s (off: no logToStderr): a Node child, a Python child and a failing Node child log the lines billiard’s children log', (level) => {
    const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
    const py = spawnSync(python, ['-c', PY_CHILDREN, level], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: fixtures }, timeout: 60_000 });
    expect(py.status, py.stderr).toBe(0);
    const node = spawnSync(process.execPath, ['--import', 'tsx', 'test/fixtures/logger-children.ts', level], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(node.status, node.stderr).toBe(0);
    const want = logLines(py.stderr);
    // What billiard printed, so that the comparison cannot pass on two empty lists.
    if (level === 'off') expect(want).toEqual([]);
    else {
      expect(want).toContain('[INFO/Process-2] child process PID calling self.run()');
      expect(want).toContain('[ERROR/Process-3] Process Process-3');
      expect(want.includes('[SUBDEBUG/Process-1] child subdebug')).toBe(level === '5');
    }
    expect(logLines(node.stderr)).toEqual(want);
    // Both print the failing child's traceback (stack) after 'Process Process-3:'.
    expect(node.stderr).toContain('Process Process-3:\nError: failing on purpose');
  });
});

describe('the logger', () => {
  const records: LogRecord[] = [];
  const collect = (r: LogRecord): void => void records.push(r);
  afterEach(() => {
    getLogger().removeHandler(collect);
    getLogger().setLevel(0);
    records.length = 0;
  });

  test('one logger named multiprocessing, also on the context; the levels have Python’s numbers', () => {
    expect(getLogger()).toBeInstanceOf(Logger);
    expect(getLogger().name).toBe('multiprocessing');
    expect(getLogger()).toBe(getLogger());
    expect(getContext().getLogger()).toBe(getLogger());
    expect([SUBDEBUG, SUBWARNING]).toEqual([5, 25]);
    expect([util.NOTSET, util.SUBDEBUG, util.DEBUG, util.INFO, util.SUBWARNING, util.WARNING, util.ERROR]).toEqual([0, 5, 10, 20, 25, 30, 40]);
    expect(util.LOGGER_NAME).toBe('multiprocessing');
    expect(util.DEFAULT_LOGGING_FORMAT).toBe('[%(levelname)s/%(processName)s] %(message)s');
    expect([5, 25, 7].map(util.getLevelName)).toEqual(['SUBDEBUG', 'SUBWARNING', 'Level 7']);
  });

  test('setLevel takes a number or a level name; the effective level is WARNING until one is set', () => {
    const l = getLogger();
    expect(l.getEffectiveLevel()).toBe(30);
    l.setLevel('SUBWARNING');
    expect(l.level).toBe(25);
    l.setLevel('DEBUG');
    expect(l.getEffectiveLevel()).toBe(10);
    expect(l.isEnabledFor(5)).toBe(false);
    expect(() => l.setLevel('LOUD')).toThrow(ValueError);
    expect(() => l.setLevel('LOUD')).toThrow("Unknown level: 'LOUD'");
  });

  test('handlers get records at or above the level, with the message formatted and the current process name', () => {
    const l = getLogger();
    l.addHandler(collect);
    l.addHandler(collect);
    expect(l.handlers.filter((h) => h === collect)).toHaveLength(1);
    util.info('below the default level');
    util.warning('worker %s exited with %d', 'w1', 7);
    l.setLevel(SUBDEBUG);
    util.subDebug('deep');
    const name = currentProcess().name;
    currentProcess().name = 'Renamed';
    try {
      util.info('renamed');
    } finally {
      currentProcess().name = name;
    }
    expect(records.map((r) => [r.levelno, r.levelname, r.message, r.processName])).toEqual([
      [30, 'WARNING', 'worker w1 exited with 7', name],
      [5, 'SUBDEBUG', 'deep', name],
      [20, 'INFO', 'renamed', 'Renamed'],
    ]);
    expect(records[0]!.name).toBe('multiprocessing');
    expect(records[0]!.msg).toBe('worker %s exited with %d');
    expect(records[0]!.process).toBe(process.pid);
  });

  test('logToStderr adds its handler once, sets the level only when given one, and returns the logger', () => {
    const before = getLogger().handlers.length;
    const written: string[] = [];
    const l = logToStderr();
    expect(l).toBe(getLogger());
    expect(l.level).toBe(0);
    expect(l.handlers.length).toBe(before + 1);
    expect(getContext().logToStderr('INFO')).toBe(l);
    expect(l.level).toBe(20);
    logToStderr(0);
    expect(l.level).toBe(20);
    // Python adds a handler per call (each line then prints twice); billiard-ts adds one.
    expect(l.handlers.length).toBe(before + 1);
    // Its handler writes to process.stderr as it is at the time.
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => (written.push(s), true)) as typeof process.stderr.write;
    try {
      util.info('to stderr %r', 'x');
    } finally {
      process.stderr.write = write;
    }
    expect(written).toEqual([`[INFO/${currentProcess().name}] to stderr 'x'\n`]);
  });

  test('a StreamHandler writes the format it was given to its stream; a handler that throws does not fail the caller', () => {
    const out: string[] = [];
    const h = new StreamHandler({ stream: { write: (s: string) => out.push(s) }, format: '%(levelname)-8s|%(name)s|%(message)s', level: 'ERROR' });
    const l = getLogger();
    const bad = (): never => {
      throw new Error('handler broke');
    };
    l.addHandler(h);
    l.addHandler(bad);
    const write = process.stderr.write;
    const errs: string[] = [];
    process.stderr.write = ((s: string) => (errs.push(s), true)) as typeof process.stderr.write;
    try {
      util.warning('not for h');
      util.error('for h %s', 1);
    } finally {
      process.stderr.write = write;
      l.removeHandler(h);
      l.removeHandler(bad);
    }
    expect(out).toEqual(['ERROR   |multiprocessing|for h 1\n']);
    expect(errs.filter((s) => s.startsWith('--- Logging error ---'))).toHaveLength(2);
  });

  test('messages format as Python’s msg % args, and only when there are args', () => {
    expect(formatMessage('100%', [])).toBe('100%');
    expect(formatMessage('%s and %r', ['a', 'b'])).toBe("a and 'b'");
    expect(formatMessage('%d|%5d|%-4s|%.2f|%x|%%', [3.7, 42, 'ab', 1.005, 255])).toBe('3|   42|ab  |1.00|ff|%');
    expect(formatMessage('%s %s', [null, true])).toBe('None True');
    expect(formatMessage('%s', [1, 2])).toBe('1 2');
    expect(formatMessage('%s %s', [1])).toBe('1 %s');
  });
});
