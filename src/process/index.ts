/** billiard-ts processes (spec/api.md §1, §3, §16). */

export { activeChildren, ForkServerProcess, Process, SpawnProcess, type JoinOptions, type ProcessBaseOptions, type ProcessOptions, type ProcessTarget } from './process.js';
export { AuthenticationString } from './authkey.js';
export { currentProcess, isMainProcess, parentProcess, type CurrentProcess, type ParentProcess } from './current.js';
export {
  AssertionError,
  CoroStop,
  ProcessStartupError,
  RestartFreqExceeded,
  RuntimeError,
  SoftTimeLimitExceeded,
  Terminated,
  TimeLimitExceeded,
  ValueError,
  WorkerLostError,
} from './errors.js';
export {
  getLogger,
  Logger,
  logToStderr,
  StreamHandler,
  SUBDEBUG,
  SUBWARNING,
  type LogHandler,
  type LogLevel,
  type LogRecord,
  type WritableLike,
} from './logger.js';
export { registerModule } from './locate.js';
export { findPython, findPythonSync, PythonNotFoundError, type FindPythonOptions } from './python.js';
export { recvFds, recvHandle, sendFds, sendHandle, type RecvFdsOptions, type SendFdsOptions } from './handles.js';
