/** billiard-ts processes (spec/api.md §1, §3, §16). */

export { activeChildren, ForkServerProcess, Process, SpawnProcess, type ProcessOptions } from './process.js';
export { currentProcess, isMainProcess, parentProcess, type CurrentProcess, type ParentProcess } from './current.js';
export { AssertionError, ProcessStartupError, RuntimeError, ValueError } from './errors.js';
export { registerModule, type TargetRef } from './locate.js';
export { findPython, findPythonVersion, PythonNotFoundError } from './python.js';
