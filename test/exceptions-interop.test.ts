/**
 * billiard-ts's exception classes travel as the Python classes they mirror
 * (spec/api.md section 2 and 18.1 rule 5), both ways, against real
 * interpreters: CPython 3.11 with billiard 4.1, and CPython 3.13 (standard
 * library only) for the multiprocessing and builtin names. Python pickles
 * each exception at protocols 0-5 (compat/peers/exceptions_peer.py) and
 * billiard-ts loads the right class with its args; billiard-ts pickles its
 * own instance, which must be Python's bytes, and Python loads it as the
 * right class with equal args.
 */
import { spawnSync } from 'node:child_process';

import { beforeAll, describe, expect, test } from 'vitest';

import {
  AssertionError,
  AuthenticationError,
  BilliardError,
  BufferTooShort,
  CoroStop,
  dumps,
  EOFError,
  getContext,
  loads,
  OSError,
  PickleError,
  PicklingError,
  ProcessError,
  PyFloat,
  PythonException,
  RestartFreqExceeded,
  RuntimeError,
  SoftTimeLimitExceeded,
  Terminated,
  TimeLimitExceeded,
  TimeoutError,
  UnpicklingError,
  ValueError,
  WorkerLostError,
} from '../src/index.js';
import { PEER_DIR, pythonFor, type PyVersion } from './helpers/peers.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));

type ErrorClass = abstract new (...args: never[]) => Error;

interface Expected {
  /** billiard-ts's own instance of the case (none: Python's class has no billiard-ts counterpart). */
  make?: () => BilliardError;
  /** What loads gives must be `instanceof` each of these. */
  is: ErrorClass[];
  /** The Python type name the loaded value reports (`pyType`). */
  pyType: string;
  /** Its args, with floats as numbers. */
  args: unknown[];
}

const EXPECTED: Record<string, Expected> = {
  ProcessError: { make: () => new ProcessError('boom'), is: [ProcessError], pyType: 'multiprocessing.context.ProcessError', args: ['boom'] },
  'ProcessError()': { make: () => new ProcessError('', { args: [] }), is: [ProcessError], pyType: 'multiprocessing.context.ProcessError', args: [] },
  BufferTooShort: { make: () => new BufferTooShort(bytes('00616263')), is: [BufferTooShort, ProcessError], pyType: 'multiprocessing.context.BufferTooShort', args: [bytes('00616263')] },
  TimeoutError: { make: () => new TimeoutError(), is: [TimeoutError, ProcessError], pyType: 'multiprocessing.context.TimeoutError', args: [] },
  'TimeoutError(msg)': { make: () => new TimeoutError('late'), is: [TimeoutError, ProcessError], pyType: 'multiprocessing.context.TimeoutError', args: ['late'] },
  AuthenticationError: {
    make: () => new AuthenticationError('digest received was wrong'),
    is: [AuthenticationError, ProcessError],
    pyType: 'multiprocessing.context.AuthenticationError',
    args: ['digest received was wrong'],
  },
  // Builtins load as PythonException, which is instanceof billiard-ts's class of the same builtin.
  ValueError: { make: () => new ValueError('bad value'), is: [PythonException, ValueError], pyType: 'builtins.ValueError', args: ['bad value'] },
  EOFError: { make: () => new EOFError(), is: [PythonException, EOFError], pyType: 'builtins.EOFError', args: ['Ran out of input'] },
  OSError: { make: () => new OSError('handle is closed', { code: 'HANDLE_CLOSED' }), is: [PythonException, OSError], pyType: 'builtins.OSError', args: ['handle is closed'] },
  AssertionError: { make: () => new AssertionError('cannot start a process twice'), is: [PythonException, AssertionError], pyType: 'builtins.AssertionError', args: ['cannot start a process twice'] },
  RuntimeError: { make: () => new RuntimeError('context has already been set'), is: [PythonException, RuntimeError], pyType: 'builtins.RuntimeError', args: ['context has already been set'] },
  // At protocols 0-2 Python writes it as exceptions.OSError (Python's OSError(2, ...) then makes a FileNotFoundError again).
  FileNotFoundError: { is: [PythonException, OSError], pyType: 'builtins.FileNotFoundError', args: [2, 'No such file or directory'] },
  // Python writes pickle's own errors under _pickle; they load as billiard-ts's classes, which pickle under pickle (the same Python classes).
  UnpicklingError: { is: [UnpicklingError, PickleError], pyType: 'pickle.UnpicklingError', args: ['pickle data was truncated'] },
  PicklingError: { is: [PicklingError, PickleError], pyType: 'pickle.PicklingError', args: ['cannot pickle'] },
  PickleError: { is: [PickleError], pyType: 'pickle.PickleError', args: ['base'] },
  TimeLimitExceeded: { make: () => new TimeLimitExceeded(3), is: [TimeLimitExceeded], pyType: 'billiard.exceptions.TimeLimitExceeded', args: [3] },
  'TimeLimitExceeded(2.5)': { make: () => new TimeLimitExceeded(2.5), is: [TimeLimitExceeded], pyType: 'billiard.exceptions.TimeLimitExceeded', args: [2.5] },
  SoftTimeLimitExceeded: { make: () => new SoftTimeLimitExceeded(), is: [SoftTimeLimitExceeded], pyType: 'billiard.exceptions.SoftTimeLimitExceeded', args: [] },
  WorkerLostError: {
    make: () => new WorkerLostError('Worker exited prematurely: exitcode 7 Job: 12.'),
    is: [WorkerLostError],
    pyType: 'billiard.exceptions.WorkerLostError',
    args: ['Worker exited prematurely: exitcode 7 Job: 12.'],
  },
  Terminated: { make: () => new Terminated(9), is: [Terminated], pyType: 'billiard.exceptions.Terminated', args: [9] },
  RestartFreqExceeded: { make: () => new RestartFreqExceeded('5 in 1s'), is: [RestartFreqExceeded], pyType: 'billiard.exceptions.RestartFreqExceeded', args: ['5 in 1s'] },
  CoroStop: { make: () => new CoroStop(), is: [CoroStop], pyType: 'billiard.exceptions.CoroStop', args: [] },
};

/** The cases of billiard's own classes (billiard.exceptions), which CPython without billiard lacks. */
const BILLIARD_ONLY = ['TimeLimitExceeded', 'TimeLimitExceeded(2.5)', 'SoftTimeLimitExceeded', 'WorkerLostError', 'Terminated', 'RestartFreqExceeded', 'CoroStop'];

/** The classes that must not match a case (a loaded TimeoutError is no AuthenticationError...). */
const ALL_CLASSES: ErrorClass[] = [PickleError, PicklingError, UnpicklingError, ProcessError, BufferTooShort, TimeoutError, AuthenticationError, TimeLimitExceeded, SoftTimeLimitExceeded, WorkerLostError, Terminated, RestartFreqExceeded, CoroStop, ValueError, EOFError, OSError, AssertionError, RuntimeError];

interface PeerDump {
  info: { python: string; billiard: boolean; cases: string[] };
  /** case -> pickles at protocols 0..5 */
  pickles: Map<string, Uint8Array[]>;
}

/** The interpreters, resolved once (findPython may answer with a promise). */
const interpreters = new Map<PyVersion, string>();
beforeAll(async () => {
  for (const v of ['3.11', '3.13'] as const) interpreters.set(v, await Promise.resolve(pythonFor(v) as string | Promise<string>));
}, 60_000);

function runPeer(version: PyVersion, mode: 'dump' | 'load', input?: string): string[] {
  const r = spawnSync(interpreters.get(version)!, [`${PEER_DIR}exceptions_peer.py`, mode], { input, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split('\n').filter((l) => l !== '');
}

function peerDump(version: PyVersion): PeerDump {
  const [first, ...lines] = runPeer(version, 'dump');
  const pickles = new Map<string, Uint8Array[]>();
  for (const line of lines) {
    const { case: name, protocol, hex: h } = JSON.parse(line) as { case: string; protocol: number; hex: string };
    const list = pickles.get(name) ?? [];
    list[protocol] = bytes(h);
    pickles.set(name, list);
  }
  return { info: JSON.parse(first!) as PeerDump['info'], pickles };
}

interface Loaded {
  label: string;
  type?: string;
  args?: string;
  str?: string;
  error?: string;
}

/** Python's pickle.loads of each labelled pickle: the type it gave, repr(args), str(). */
function pythonLoads(version: PyVersion, items: Array<[string, Uint8Array]>): Map<string, Loaded> {
  const input = items.map(([label, b]) => JSON.stringify({ label, hex: hex(b) })).join('\n') + '\n';
  const [, ...lines] = runPeer(version, 'load', input);
  return new Map(lines.map((l) => JSON.parse(l) as Loaded).map((o) => [o.label, o]));
}

const plainArgs = (args: readonly unknown[]): unknown[] => args.map((a) => (a instanceof PyFloat ? a.value : a));

describe.each(['3.11', '3.13'] as const)('CPython %s', (version) => {
  let dump: PeerDump;

  beforeAll(() => {
    dump = peerDump(version);
  }, 60_000);

  test('the peer runs the expected interpreter and cases', () => {
    expect(dump.info.python.startsWith(version)).toBe(true);
    expect(dump.info.billiard).toBe(version === '3.11');
    const want = Object.keys(EXPECTED).filter((c) => version === '3.11' || !BILLIARD_ONLY.includes(c));
    expect([...dump.info.cases].sort()).toEqual(want.sort());
  });

  test("Python's pickles load as the billiard-ts class with Python's args, at protocols 0-5", () => {
    for (const name of dump.info.cases) {
      const want = EXPECTED[name]!;
      const pickles = dump.pickles.get(name)!;
      expect(pickles.length, name).toBe(6);
      pickles.forEach((p, protocol) => {
        const label = `${name} p${protocol}`;
        const v = loads(p) as BilliardError;
        for (const cls of want.is) expect(v, `${label} instanceof ${cls.name}`).toBeInstanceOf(cls);
        // ... and of no other class (a loaded TimeoutError is no AuthenticationError), but the bases of those.
        for (const cls of ALL_CLASSES) {
          const expected = want.is.some((c) => c === cls || c.prototype instanceof cls);
          expect(v instanceof cls, `${label} instanceof ${cls.name}`).toBe(expected);
        }
        expect(v.pyType, label).toBe(name === 'FileNotFoundError' && protocol < 3 ? 'builtins.OSError' : want.pyType);
        expect(plainArgs(v.args), label).toEqual(want.args);
      });
    }
  });

  test("billiard-ts writes Python's bytes for each, at protocols 0-5", () => {
    for (const name of dump.info.cases) {
      const make = EXPECTED[name]!.make;
      if (make === undefined) continue;
      dump.pickles.get(name)!.forEach((want, protocol) => {
        expect(hex(dumps(make(), { protocol })), `${name} p${protocol}`).toBe(hex(want));
      });
    }
  });

  test("Python loads billiard-ts's pickles as the Python class, with equal args and str()", () => {
    const items: Array<[string, Uint8Array]> = [];
    for (const name of dump.info.cases) {
      const make = EXPECTED[name]!.make;
      if (make === undefined) continue;
      for (let protocol = 0; protocol <= 5; protocol++) {
        items.push([`node ${name} p${protocol}`, dumps(make(), { protocol })]);
        items.push([`python ${name} p${protocol}`, dump.pickles.get(name)![protocol]!]);
      }
    }
    const got = pythonLoads(version, items);
    expect(got.size).toBe(items.length);
    for (const [label] of items) {
      if (!label.startsWith('node ')) continue;
      const ours = got.get(label)!;
      const theirs = got.get(`python ${label.slice(5)}`)!;
      expect(ours.error, label).toBeUndefined();
      expect(ours.type, label).toBe(EXPECTED[label.slice(5, label.lastIndexOf(' '))]!.pyType);
      expect({ type: ours.type, args: ours.args, str: ours.str }, label).toEqual({ type: theirs.type, args: theirs.args, str: theirs.str });
    }
  });

  test('billiard errors, loaded or made here, carry Python’s str() as their message', () => {
    for (const name of BILLIARD_ONLY) {
      if (!dump.info.cases.includes(name)) continue;
      const p = dump.pickles.get(name)![2]!;
      const str = pythonLoads(version, [['x', p]]).get('x')!.str;
      expect((loads(p) as Error).message, name).toBe(str);
      expect(EXPECTED[name]!.make!().message, `new ${name}`).toBe(str);
    }
  });
});

describe('names billiard and multiprocessing reach the classes by', () => {
  // Python never writes these aliases (each class pickles under its __module__),
  // but each names the same class object, so a pickle may carry them.
  const aliases: Array<[string, ErrorClass]> = [
    ['multiprocessing.TimeoutError', TimeoutError],
    ['billiard.exceptions.TimeoutError', TimeoutError],
    ['billiard.context.TimeoutError', TimeoutError],
    ['billiard.TimeoutError', TimeoutError],
    ['billiard.exceptions.ProcessError', ProcessError],
    ['billiard.AuthenticationError', AuthenticationError],
    ['billiard.context.BufferTooShort', BufferTooShort],
    ['billiard.TimeLimitExceeded', TimeLimitExceeded],
    ['billiard.context.SoftTimeLimitExceeded', SoftTimeLimitExceeded],
    ['billiard.WorkerLostError', WorkerLostError],
  ];
  /** `module.name()` as protocol 3 writes it (no name mapping at load). */
  const pickleOf = (qualified: string): Uint8Array => {
    const dot = qualified.lastIndexOf('.');
    return new Uint8Array(Buffer.from(`\x80\x03c${qualified.slice(0, dot)}\n${qualified.slice(dot + 1)}\n)R.`, 'latin1'));
  };

  test('each alias loads as the class in Python (3.11 + billiard) and in billiard-ts', () => {
    const got = pythonLoads('3.11', aliases.map(([q]) => [q, pickleOf(q)]));
    for (const [qualified, cls] of aliases) {
      const py = got.get(qualified)!;
      expect(py.error, qualified).toBeUndefined();
      const v = loads(pickleOf(qualified)) as BilliardError;
      expect(v, qualified).toBeInstanceOf(cls);
      expect(py.type, qualified).toBe(v.pyType);
    }
  });

  test('with fixImports off, protocol 2 names load too', () => {
    const p = new Uint8Array(Buffer.from('\x80\x02cmultiprocessing\nTimeoutError\n)R.', 'latin1'));
    expect(loads(p, { fixImports: false })).toBeInstanceOf(TimeoutError);
    expect(loads(p)).toBeInstanceOf(TimeoutError);
  });
});

describe('classes and contexts', () => {
  test('the context carries the exception classes Python contexts carry', () => {
    const ctx = getContext();
    expect(ctx.ProcessError).toBe(ProcessError);
    expect(ctx.TimeoutError).toBe(TimeoutError);
    expect(ctx.TimeLimitExceeded).toBe(TimeLimitExceeded);
    expect(ctx.SoftTimeLimitExceeded).toBe(SoftTimeLimitExceeded);
    expect(ctx.WorkerLostError).toBe(WorkerLostError);
  });

  test('billiard-ts errors keep their codes and Python args', () => {
    expect(new TimeoutError().args).toEqual([]);
    expect(new TimeoutError().message).toBe('timed out');
    expect(new TimeoutError().code).toBe('TIMEOUT');
    expect(new TimeLimitExceeded(3).message).toBe('TimeLimitExceeded(3.0,)');
    expect(new TimeLimitExceeded(3).timeout).toBe(3);
    expect(new SoftTimeLimitExceeded().message).toBe('SoftTimeLimitExceeded()');
    expect(new Terminated(9).code).toBe('TERMINATED');
    // A builtin exception from Python is instanceof the billiard-ts class of its builtin bases.
    const fnf = new PythonException('builtins.FileNotFoundError', [2, 'x']);
    expect(fnf).toBeInstanceOf(OSError);
    expect(fnf).not.toBeInstanceOf(ValueError);
    expect(new PythonException('builtins.UnicodeDecodeError')).toBeInstanceOf(ValueError);
    expect(new PythonException('mymod.ValueError')).not.toBeInstanceOf(ValueError);
  });
});
