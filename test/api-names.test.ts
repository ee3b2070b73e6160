/**
 * The top-level names of billiard (spec/api.md section 1), asked of the real
 * billiard 4.1: every name of `billiard.__all__`, camelCased as DESIGN.md
 * says (`get_logger` -> `getLogger`, classes unchanged), is an export of
 * billiard-ts and a member of its context objects, but for the ones listed
 * as not there yet; and the other top-level attributes (`VERSION`,
 * `__version__`, `SUBDEBUG`, `SUBWARNING`) are exported with billiard's
 * shapes.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { beforeAll, expect, test } from 'vitest';

import * as api from '../src/index.js';
import { pythonFor } from './helpers/peers.js';

/** Names billiard-ts does not have yet. */
const NOT_YET: string[] = [];
/** Python's context methods that billiard-ts has only at the top level (deprecated in billiard). */
const TOP_LEVEL_ONLY = ['forkingEnable'];

const camel = (name: string): string => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

interface PyFacts {
  all: string[];
  SUBDEBUG: number;
  SUBWARNING: number;
  VERSION: unknown[];
  version: string;
}

let py: PyFacts;
beforeAll(async () => {
  const python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
  const r = spawnSync(
    python,
    ['-c', 'import billiard, json; print(json.dumps({"all": billiard.__all__, "SUBDEBUG": billiard.SUBDEBUG, "SUBWARNING": billiard.SUBWARNING, "VERSION": billiard.VERSION, "version": billiard.__version__}))'],
    { encoding: 'utf8' },
  );
  expect(r.status, r.stderr).toBe(0);
  py = JSON.parse(r.stdout) as PyFacts;
}, 60_000);

test("every name of billiard.__all__ is an export of billiard-ts, camelCased (but those not there yet)", () => {
  expect(py.all.length).toBeGreaterThanOrEqual(40);
  const missing = py.all.map(camel).filter((n) => !(n in api));
  expect(missing).toEqual(NOT_YET.filter((n) => missing.includes(n)));
  for (const n of NOT_YET) expect(py.all.map(camel), n).toContain(n);
});

test("every name of billiard.__all__ is a member of a context, as Python's context methods", () => {
  const ctx = api.getContext() as unknown as Record<string, unknown>;
  const missing = py.all.map(camel).filter((n) => !(n in ctx) && !NOT_YET.includes(n) && !TOP_LEVEL_ONLY.includes(n));
  expect(missing).toEqual([]);
  expect(ctx.getLogger).toBeTypeOf('function');
  expect(ctx.logToStderr).toBeTypeOf('function');
});

test("SUBDEBUG, SUBWARNING, VERSION and __version__ have billiard's shapes; the version is package.json's", () => {
  expect(api.SUBDEBUG).toBe(py.SUBDEBUG);
  expect(api.SUBWARNING).toBe(py.SUBWARNING);
  // billiard's VERSION is the tuple of __version__'s numbers (4.1.0: (4, 1, 0)).
  expect(py.VERSION.join('.')).toBe(py.version);
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  expect(api.__version__).toBe(pkg.version);
  expect(api.VERSION).toBeInstanceOf(api.PyTuple);
  const [major, minor, patch, pre] = api.VERSION;
  expect(`${major}.${minor}.${patch}${pre === undefined ? '' : `-${pre}`}`).toBe(pkg.version);
});
