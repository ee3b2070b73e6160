/**
 * The Python class of each error loads raises is the class CPython's
 * unpickler raises for the same bytes (spec/pickle.md 11.1): ValueError,
 * TypeError, AttributeError, OverflowError, UnicodeDecodeError where CPython
 * raises those, UnpicklingError or EOFError where it raises those. Every one
 * is still an UnpicklingError (or EOFError) with a stable `code`. CPython
 * 3.11 runs each input (compat/peers/unpickle_probe.py).
 */
import { spawnSync } from 'node:child_process';

import { beforeAll, describe, expect, test } from 'vitest';

import {
  EOFError,
  loads,
  UnpicklingAttributeError,
  UnpicklingError,
  UnpicklingOverflowError,
  UnpicklingTypeError,
  UnpicklingUnicodeDecodeError,
  UnpicklingValueError,
  type BilliardError,
} from '../src/pickle/index.js';
import { ValueError } from '../src/process/errors.js';
import { PEER_DIR, pythonFor } from './helpers/peers.js';

const latin1 = (s: string): string => Buffer.from(s, 'latin1').toString('hex');

/** Inputs where billiard-ts must raise CPython's class. */
const SAME: Array<[hex: string, what: string]> = [
  ['', 'empty input'],
  ['80044b01', 'input ending between opcodes'],
  ['800458050000006162', 'argument cut short'],
  ['80049510000000000000004b012e', 'FRAME longer than the input'],
  ['ff', 'unknown opcode'],
  ['7a', 'unknown opcode z'],
  ['80064e2e', 'PROTO 6'],
  ['302e', 'POP on an empty stack'],
  ['2e', 'STOP on an empty stack'],
  ['5d612e', 'APPEND with one item'],
  ['71002e', 'BINPUT on an empty stack'],
  ['8004942e', 'MEMOIZE on an empty stack'],
  ['282e', 'STOP on a MARK'],
  ['4b01742e', 'TUPLE without MARK'],
  ['312e', 'POP_MARK without MARK'],
  ['7d284b01752e', 'SETITEMS odd'],
  ['284b01642e', 'DICT odd'],
  ['68052e', 'BINGET missing'],
  ['6a050000002e', 'LONG_BINGET missing'],
  ['67350a2e', 'GET missing'],
  [latin1('g99999999\n.'), 'GET missing, large index'],
  [latin1('g-1\n.'), 'GET negative'],
  ['67780a2e', 'GET not a number'],
  [latin1(`g${'9'.repeat(20)}\n.`), 'GET over 2**63'],
  ['4e702d310a2e', 'PUT negative'],
  [latin1('Va\np-1\n.'), 'PUT negative after UNICODE'],
  ['4e70780a2e', 'PUT not a number'],
  [latin1(`Np${'9'.repeat(20)}\n.`), 'PUT over 2**63'],
  ['496162630a2e', 'INT abc'],
  [latin1('I9223372036854775807JUNK\n.'), 'INT with junk'],
  [latin1('I\n.'), 'INT empty'],
  [latin1('L\n.'), 'LONG empty'],
  [latin1('L12x\n.'), 'LONG 12x'],
  [`4c${'31'.repeat(5000)}0a2e`, 'LONG of 5000 digits'],
  ['466162630a2e', 'FLOAT abc'],
  ['46315f300a2e', 'FLOAT 1_0'],
  ['4631653530300a2e', 'FLOAT 1e500'],
  [latin1('F\n.'), 'FLOAT empty'],
  ['536162630a2e', 'STRING unquoted'],
  [latin1("S'\n."), 'STRING one quote'],
  [latin1("S'\\'\n."), 'STRING with a trailing backslash'],
  [latin1("S'\\x4'\n."), 'STRING with a bad \\x escape'],
  ['5327e9270a2e', 'STRING non-ASCII'],
  ['5502e9612e', 'SHORT_BINSTRING non-ASCII'],
  ['56615c7532300a2e', 'UNICODE truncated \\u'],
  [latin1('V\\U00110000\n.'), 'UNICODE \\U out of range'],
  ['5802000000fffe2e', 'BINUNICODE invalid UTF-8'],
  ['8c03c0af612e', 'SHORT_BINUNICODE overlong UTF-8'],
  [latin1('c\xff\nX\n.'), 'GLOBAL module not UTF-8'],
  [latin1('(i\xe9\nX\n.'), 'INST module not ASCII'],
  ['80028bffffffff2e', 'LONG4 negative length'],
  ['8dffffffffffffff7f61622e', 'BINUNICODE8 of 2**63 bytes'],
  ['80044b014b02932e', 'STACK_GLOBAL of ints'],
  ['8002636275696c74696e730a7374722e6a6f696e0a2e', 'dotted GLOBAL at protocol 2'],
  ['4b0129522e', 'REDUCE of an int'],
  [latin1('N)R.'), 'REDUCE of None'],
  [latin1('cbuiltins\nint\nNR.'), 'REDUCE with None arguments'],
  ['636275696c74696e730a6c656e0a4b01522e', 'REDUCE with int arguments'],
  [latin1(']]R.'), 'REDUCE of a list'],
  ['284b016f2e', 'OBJ of an int'],
  ['286f2e', 'OBJ without a class'],
  ['80024b0129812e', 'NEWOBJ of an int'],
  [latin1('\x80\x02cbuiltins\nobject\nK\x01\x81.'), 'NEWOBJ with int arguments'],
  [latin1('\x80\x04cbuiltins\nobject\nK\x01}\x92.'), 'NEWOBJ_EX with int arguments'],
  [latin1('\x80\x04cbuiltins\nobject\n)K\x01\x92.'), 'NEWOBJ_EX with int keywords'],
  [latin1('\x80\x04K\x01)}\x92.'), 'NEWOBJ_EX of an int'],
  ['800282012e', 'EXT1 unregistered'],
  ['800282002e', 'EXT1 zero'],
  [latin1('\x80\x02\x84\xff\xff\xff\xff.'), 'EXT4 negative'],
  ['80054b01982e', 'READONLY_BUFFER of an int'],
  [latin1('\x80\x05]\x98.'), 'READONLY_BUFFER of a list'],
  ['8005972e', 'NEXT_BUFFER without buffers'],
  ['50666f6f0a2e', 'PERSID without persistentLoad'],
  ['4b01512e', 'BINPERSID without persistentLoad'],
  ['7d285d4b01752e', 'a list as a dict key'],
  ['285d4b01642e', 'a list as a DICT key'],
  ['8004285d912e', 'a list in a frozenset'],
  ['8004287d912e', 'a dict in a frozenset'],
  ['80048f94285d902e', 'a list added to a set'],
  ['4b014b02612e', 'APPEND to an int'],
  ['4b01284b02652e', 'APPENDS to an int'],
  ['294b02612e', 'APPEND to a tuple'],
  ['29284b02652e', 'APPENDS to a tuple'],
  ['4e4b014b02732e', 'SETITEM into None'],
  ['4e284b014b02752e', 'SETITEMS into None'],
  ['80044e284b01902e', 'ADDITEMS on None'],
  ['80042891284b01902e', 'ADDITEMS on a frozenset'],
];

/**
 * Inputs where billiard-ts deliberately differs, with what each side does:
 * the test checks both, so that either changing is noticed.
 */
const DIFFERENT: Array<[hex: string, cpython: string | null, ours: string | null, why: string]> = [
  // spec/pickle.md 13.4: a sparse memo, never an array sized by the index.
  ['4e72ffffff7f2e', 'MemoryError', null, 'LONG_BINPUT 2**31-1: CPython grows its memo to 2**32 entries'],
  ['80047d72f0ffffff324b014b0273302e', 'MemoryError', null, 'LONG_BINPUT 0xfffffff0 then SETITEM'],
  // spec/pickle.md 13.2: text ints are an optional sign and decimal digits, without a NUL.
  [latin1('I0x10\n.'), null, 'ValueError', 'INT 0x10'],
  [latin1('I1\x00123\n.'), null, 'ValueError', 'INT with a NUL'],
  // Globals are never imported: an unknown one loads as an inert placeholder.
  [latin1('cnosuchmodule\nx\n.'), 'ModuleNotFoundError', null, 'unknown module'],
  // CPython's class depends on the exact size (OverflowError near 2**63, MemoryError below); ours is LIMIT.
  ['80048effffffffffffff7f61622e', 'OverflowError', 'UnpicklingError', 'BINBYTES8 of 2**63 - 1 bytes'],
  // CPython calls list.__setitem__ (IndexError); billiard-ts says the list takes no items.
  ['5d284b014b02752e', 'IndexError', 'TypeError', 'SETITEMS into a list'],
];

/** The Python class name of what loads threw, or null when it loaded. */
function pythonClassOf(hex: string): { name: string | null; error?: BilliardError } {
  try {
    loads(new Uint8Array(Buffer.from(hex, 'hex')));
    return { name: null };
  } catch (e) {
    const err = e as BilliardError;
    if (!(err instanceof UnpicklingError) && !(err instanceof EOFError)) throw e;
    return { name: err.pyType.slice(err.pyType.lastIndexOf('.') + 1), error: err };
  }
}

let cpython = new Map<string, { raises: string | null; message: string }>();

beforeAll(async () => {
  const python = await Promise.resolve(pythonFor('3.11') as string | Promise<string>);
  const input = [...SAME.map(([h]) => h), ...DIFFERENT.map(([h]) => h)].map((h) => `=${h}`).join('\n') + '\n';
  const r = spawnSync(python, [`${PEER_DIR}unpickle_probe.py`], { input, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  expect(r.status, r.stderr).toBe(0);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  cpython = new Map(lines.map((l) => JSON.parse(l) as { hex: string; raises: string | null; message: string }).map((o) => [o.hex, o]));
}, 60_000);

describe('errors have the class CPython 3.11 raises', () => {
  test('for each input of spec/pickle.md 11.1 and the issue', () => {
    const wrong: string[] = [];
    for (const [hex, what] of SAME) {
      const theirs = cpython.get(hex)!;
      const ours = pythonClassOf(hex);
      expect(theirs.raises, `CPython fails on ${what}`).not.toBeNull();
      if (ours.name !== theirs.raises) wrong.push(`${what}: CPython ${theirs.raises} (${theirs.message}), billiard-ts ${ours.name} (${ours.error?.message})`);
    }
    expect(wrong).toEqual([]);
  });

  test('where billiard-ts differs on purpose, both sides still do what the table says', () => {
    for (const [hex, theirs, ours, why] of DIFFERENT) {
      expect(cpython.get(hex)!.raises, `CPython: ${why}`).toBe(theirs);
      expect(pythonClassOf(hex).name, `billiard-ts: ${why}`).toBe(ours);
    }
  });
});

describe('the classes', () => {
  const cases: Array<[string, abstract new (...a: never[]) => Error, string]> = [
    ['80064e2e', UnpicklingValueError, 'UNSUPPORTED_PROTOCOL'],
    ['5802000000fffe2e', UnpicklingUnicodeDecodeError, 'DECODE'],
    ['4b0129522e', UnpicklingTypeError, 'TYPE'],
    ['4b014b02612e', UnpicklingAttributeError, 'TYPE'],
    ['4631653530300a2e', UnpicklingOverflowError, 'BAD_ARGUMENT'],
    [`4c${'31'.repeat(5000)}0a2e`, UnpicklingValueError, 'LIMIT'],
  ];

  test('are UnpicklingErrors with a code, and instanceof the billiard-ts class of their Python class', () => {
    for (const [hex, cls, code] of cases) {
      const { error } = pythonClassOf(hex);
      expect(error, hex).toBeInstanceOf(UnpicklingError);
      expect(error, hex).toBeInstanceOf(cls);
      expect(error!.code, hex).toBe(code);
      expect((error as UnpicklingError).position, hex).toBeTypeOf('number');
    }
    // A ValueError (and a UnicodeDecodeError, its subclass) is instanceof process/errors.ts's ValueError.
    expect(pythonClassOf('80064e2e').error).toBeInstanceOf(ValueError);
    expect(pythonClassOf('5802000000fffe2e').error).toBeInstanceOf(ValueError);
    expect(pythonClassOf('4b0129522e').error).not.toBeInstanceOf(ValueError);
    // ... and an UnpicklingError is none of the builtin classes.
    expect(pythonClassOf('ff').error).not.toBeInstanceOf(UnpicklingValueError);
    expect(pythonClassOf('ff').error).not.toBeInstanceOf(UnpicklingTypeError);
  });
});
