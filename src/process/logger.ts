/**
 * billiard's logging (spec/api.md sections 1 and 11): `getLogger()`,
 * `logToStderr(level?)`, the helpers `subDebug`, `debug`, `info`,
 * `subWarning`, `warning`, `error`, and the levels `SUBDEBUG` (5) and
 * `SUBWARNING` (25) beside Python's own.
 *
 * A small Node logger with the semantics of Python's `logging` as billiard
 * uses it: one package logger named `'multiprocessing'` (no hierarchy: its
 * `propagate` is off in billiard), levels with Python's numbers and names,
 * `setLevel` (a number or a level name), handlers, and `%`-style messages
 * (`info('process %s exiting with exitcode %d', name, code)`), formatted
 * only when a record is emitted.
 *
 * What is printed, and when (as in Python, checked against billiard 4.1 by
 * test/logger.test.ts):
 * - Nothing by default. The helpers do nothing until the logger exists
 *   (`getLogger()` or `logToStderr()` made it), as billiard's check
 *   `if _logger:`.
 * - Once the logger exists, its level is unset (`NOTSET`) and its
 *   effective level is `WARNING` (Python's root logger's default). A record
 *   at `WARNING` or above with no handler on the logger goes to stderr as
 *   the bare message: Python's `logging.lastResort`.
 * - `logToStderr(level?)` adds a stderr handler with the format
 *   `[%(levelname)s/%(processName)s] %(message)s` (`[INFO/MainProcess]
 *   hello`, `processName` being `currentProcess().name` when the record is
 *   made) and sets the level when one is given (Python's `if level:`: `0`
 *   does not). Unlike Python's, a second call adds no second handler (in
 *   Python every call adds one, and each line then prints once per call).
 */

import { inspect } from 'node:util';

import { currentProcess } from './current.js';
import { ValueError } from './errors.js';

export const NOTSET = 0;
/** billiard's level below `DEBUG`. */
export const SUBDEBUG = 5;
export const DEBUG = 10;
export const INFO = 20;
/** billiard's level between `INFO` and `WARNING`. */
export const SUBWARNING = 25;
export const WARNING = 30;
export const ERROR = 40;
export const CRITICAL = 50;

/** The name of billiard's logger (shared with Python's multiprocessing). */
export const LOGGER_NAME = 'multiprocessing';
/** The format of {@link logToStderr}'s handler. */
export const DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s';

const LEVEL_NAMES = new Map<number, string>([
  [CRITICAL, 'CRITICAL'],
  [ERROR, 'ERROR'],
  [WARNING, 'WARNING'],
  [SUBWARNING, 'SUBWARNING'],
  [INFO, 'INFO'],
  [DEBUG, 'DEBUG'],
  [SUBDEBUG, 'SUBDEBUG'],
  [NOTSET, 'NOTSET'],
]);
const NAME_LEVELS = new Map<string, number>([...[...LEVEL_NAMES].map(([n, s]) => [s, n] as [string, number]), ['FATAL', CRITICAL], ['WARN', WARNING]]);

/** A level: its number, or one of the names `'SUBDEBUG'`, `'DEBUG'`, `'INFO'`, `'SUBWARNING'`, `'WARNING'`, `'ERROR'`, `'CRITICAL'`, `'NOTSET'`. */
export type LogLevel = number | string;

/** Python's `logging.getLevelName(level)` for a number: `'INFO'`, `'SUBDEBUG'`, or `'Level 7'`. */
export function getLevelName(level: number): string {
  return LEVEL_NAMES.get(level) ?? `Level ${level}`;
}

/** A level as a number (Python's `_checkLevel`): a name must be one of the known ones. */
function checkLevel(level: LogLevel): number {
  if (typeof level === 'number') {
    if (!Number.isInteger(level)) throw new TypeError(`Level not an integer or a valid string: ${level}`);
    return level;
  }
  if (typeof level === 'string') {
    const n = NAME_LEVELS.get(level);
    if (n === undefined) throw new ValueError(`Unknown level: '${level}'`, { code: 'UNKNOWN_LEVEL' });
    return n;
  }
  throw new TypeError(`Level not an integer or a valid string: ${String(level)}`);
}

/** One logging event, with the fields a format string can name. */
export interface LogRecord {
  /** The logger's name, `'multiprocessing'`. */
  readonly name: string;
  readonly levelno: number;
  readonly levelname: string;
  /** The message before formatting, and its arguments. */
  readonly msg: string;
  readonly args: readonly unknown[];
  /** `msg` formatted with `args` (`msg % args` in Python). */
  readonly message: string;
  /** `currentProcess().name` when the record was made. */
  readonly processName: string;
  /** This process's pid. */
  readonly process: number;
  /** When the record was made, in seconds since the epoch. */
  readonly created: number;
}

/**
 * Where records go: a function, or an object with an `emit` method and
 * an optional `level` below which it ignores records (as Python's handlers).
 */
export type LogHandler = ((record: LogRecord) => void) | { level?: number; emit(record: LogRecord): void };

/** Python's `str()` of a value, as far as a message needs it. */
function str(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number' || typeof v === 'bigint' || v instanceof Error) return String(v);
  return inspect(v);
}

/** Python's `repr()`, as far as a message needs it. */
function repr(v: unknown): string {
  if (typeof v === 'string') return inspect(v);
  if (v === null || v === undefined || typeof v === 'boolean') return str(v);
  return inspect(v);
}

/**
 * `msg % args`, for the conversions messages use: `%s`, `%r`, `%d`/`%i`,
 * `%f`, `%x`, with a width (`%-8s`, `%5d`) or a precision (`%.2f`), and
 * `%%`. Where Python would fail (too few or too many arguments) the message
 * keeps the unmatched conversion, and extra arguments are added at the end,
 * separated by spaces. Without arguments the message is not formatted.
 */
export function formatMessage(msg: string, args: readonly unknown[]): string {
  if (args.length === 0) return msg;
  let i = 0;
  const out = msg.replace(/%([-0]?)(\d*)(?:\.(\d+))?([srdifx%])/g, (all, flag: string, width: string, precision: string | undefined, conv: string) => {
    if (conv === '%') return all === '%%' ? '%' : all;
    if (i >= args.length) return all;
    const v = args[i++];
    let s: string;
    switch (conv) {
      case 's':
        s = str(v);
        if (precision !== undefined) s = s.slice(0, Number(precision));
        break;
      case 'r':
        s = repr(v);
        break;
      case 'd':
      case 'i':
        s = typeof v === 'bigint' ? String(v) : String(Math.trunc(Number(v)));
        break;
      case 'f':
        s = Number(v).toFixed(precision === undefined ? 6 : Number(precision));
        break;
      default:
        s = typeof v === 'bigint' ? v.toString(16) : Math.trunc(Number(v)).toString(16);
    }
    const w = Number(width || 0);
    if (s.length < w) s = flag === '-' ? s.padEnd(w) : flag === '0' && conv !== 's' && conv !== 'r' ? s.padStart(w, '0') : s.padStart(w);
    return s;
  });
  return i < args.length ? [out, ...args.slice(i).map(str)].join(' ') : out;
}

/**
 * A record as `fmt` says (Python's `Formatter` with `%`-style): each
 * `%(field)s` is replaced by that field of the record (`name`, `levelno`,
 * `levelname`, `msg`, `message`, `processName`, `process`, `created`), with
 * a width when one is given (`%(levelname)-8s`); `%%` is `%`.
 */
export function formatRecord(fmt: string, record: LogRecord): string {
  return fmt.replace(/%\((\w+)\)([-0]?)(\d*)([srdf])|%%/g, (all, key: string | undefined, flag: string, width: string) => {
    if (key === undefined) return '%';
    if (!Object.prototype.hasOwnProperty.call(record, key)) return all;
    let s = str((record as unknown as Record<string, unknown>)[key]);
    const w = Number(width || 0);
    if (s.length < w) s = flag === '-' ? s.padEnd(w) : s.padStart(w);
    return s;
  });
}

/** Something a {@link StreamHandler} writes to: `process.stderr`, a file stream... */
export interface WritableLike {
  write(chunk: string): unknown;
}

/**
 * Python's `logging.StreamHandler` with a `Formatter`: writes each record
 * as `format` says, and a newline, to `stream` (`process.stderr` as it is
 * when the record is written, by default).
 */
export class StreamHandler {
  /** Records below this level are ignored. */
  level: number = NOTSET;
  readonly format: string;
  readonly #stream: WritableLike | undefined;
  constructor(options?: { stream?: WritableLike; format?: string; level?: LogLevel }) {
    this.#stream = options?.stream;
    this.format = options?.format ?? '%(message)s';
    if (options?.level !== undefined) this.level = checkLevel(options.level);
  }
  setLevel(level: LogLevel): void {
    this.level = checkLevel(level);
  }
  emit(record: LogRecord): void {
    (this.#stream ?? process.stderr).write(`${formatRecord(this.format, record)}\n`);
  }
}

/** Python's `logging.lastResort`: warnings and worse, bare, to stderr, when a logger has no handler. */
const lastResort = new StreamHandler({ level: WARNING });

/**
 * A logger as Python's `logging.Logger` (billiard's is the one named
 * `'multiprocessing'`, made by {@link getLogger}).
 */
export class Logger {
  readonly name: string;
  /** The level set with {@link Logger.setLevel}; `NOTSET` (0) means "unset". */
  level: number = NOTSET;
  readonly #handlers: LogHandler[] = [];
  constructor(name: string) {
    this.name = name;
  }

  /** Sets the level: a number, or a level name (`'INFO'`, `'SUBDEBUG'`...). */
  setLevel(level: LogLevel): void {
    this.level = checkLevel(level);
  }
  /** The level set, or `WARNING` when none is (Python's root logger's default). */
  getEffectiveLevel(): number {
    return this.level !== NOTSET ? this.level : WARNING;
  }
  isEnabledFor(level: number): boolean {
    return level >= this.getEffectiveLevel();
  }

  /** The handlers, in the order they were added. */
  get handlers(): readonly LogHandler[] {
    return [...this.#handlers];
  }
  /** Adds a handler, unless it is there already. */
  addHandler(handler: LogHandler): void {
    if (!this.#handlers.includes(handler)) this.#handlers.push(handler);
  }
  removeHandler(handler: LogHandler): void {
    const i = this.#handlers.indexOf(handler);
    if (i >= 0) this.#handlers.splice(i, 1);
  }
  hasHandlers(): boolean {
    return this.#handlers.length > 0;
  }

  /** Logs `msg % args` at `level` if the logger is enabled for it. */
  log(level: number, msg: string, ...args: unknown[]): void {
    if (!Number.isInteger(level)) throw new TypeError('level must be an integer');
    if (!this.isEnabledFor(level)) return;
    const record: LogRecord = {
      name: this.name,
      levelno: level,
      levelname: getLevelName(level),
      msg,
      args,
      get message(): string {
        return formatMessage(msg, args);
      },
      processName: currentProcess().name,
      process: process.pid,
      created: Date.now() / 1000,
    };
    const handlers = this.#handlers.length > 0 ? this.#handlers : [lastResort];
    for (const h of handlers) {
      const hLevel = typeof h === 'function' ? NOTSET : (h.level ?? NOTSET);
      if (level < hLevel) continue;
      try {
        if (typeof h === 'function') h(record);
        else h.emit(record);
      } catch (e) {
        // As Python's Handler.handleError: a failing handler never fails the caller.
        process.stderr.write(`--- Logging error ---\n${e instanceof Error ? (e.stack ?? String(e)) : String(e)}\n`);
      }
    }
  }
  debug(msg: string, ...args: unknown[]): void {
    this.log(DEBUG, msg, ...args);
  }
  info(msg: string, ...args: unknown[]): void {
    this.log(INFO, msg, ...args);
  }
  warning(msg: string, ...args: unknown[]): void {
    this.log(WARNING, msg, ...args);
  }
  error(msg: string, ...args: unknown[]): void {
    this.log(ERROR, msg, ...args);
  }
  critical(msg: string, ...args: unknown[]): void {
    this.log(CRITICAL, msg, ...args);
  }
}

let logger: Logger | null = null;
let stderrHandler: StreamHandler | null = null;

/** billiard's logger, named `'multiprocessing'`, made on the first call (Python's `get_logger()`). */
export function getLogger(): Logger {
  logger ??= new Logger(LOGGER_NAME);
  return logger;
}

/**
 * Turns logging to stderr on (Python's `log_to_stderr(level=None)`): adds
 * a handler printing `[LEVEL/ProcessName] message` lines to stderr (once:
 * a second call adds none), sets the logger's level when `level` is given
 * and not 0, and returns the logger.
 */
export function logToStderr(level?: LogLevel | null): Logger {
  const l = getLogger();
  if (stderrHandler === null) {
    stderrHandler = new StreamHandler({ format: DEFAULT_LOGGING_FORMAT });
    l.addHandler(stderrHandler);
  }
  if (level) l.setLevel(level);
  return l;
}

/** @internal whether {@link logToStderr} was called (a spawned child is told, as Python's is). */
export function isLoggingToStderr(): boolean {
  return stderrHandler !== null;
}

/** @internal the logger, if it was made: the helpers log only then. */
export function existingLogger(): Logger | null {
  return logger;
}

/** Logs at `SUBDEBUG` (5), if the logger was made. */
export function subDebug(msg: string, ...args: unknown[]): void {
  logger?.log(SUBDEBUG, msg, ...args);
}
/** Logs at `DEBUG` (10), if the logger was made. */
export function debug(msg: string, ...args: unknown[]): void {
  logger?.log(DEBUG, msg, ...args);
}
/** Logs at `INFO` (20), if the logger was made. */
export function info(msg: string, ...args: unknown[]): void {
  logger?.log(INFO, msg, ...args);
}
/** Logs at `SUBWARNING` (25), if the logger was made. */
export function subWarning(msg: string, ...args: unknown[]): void {
  logger?.log(SUBWARNING, msg, ...args);
}
/** Logs at `WARNING` (30), if the logger was made. */
export function warning(msg: string, ...args: unknown[]): void {
  logger?.log(WARNING, msg, ...args);
}
/** Logs at `ERROR` (40), if the logger was made. */
export function error(msg: string, ...args: unknown[]): void {
  logger?.log(ERROR, msg, ...args);
}
