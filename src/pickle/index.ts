/**
 * billiard-ts/pickle: Python's pickle, protocols 0 to 5, in TypeScript.
 * Runs anywhere typed arrays do (no Node APIs). See ./README.md for the value
 * mapping.
 */

export { dumps, Pickler, type PicklerOptions } from './pickler.js';
export { loads, Unpickler, type LoadLimits, type UnpicklerOptions } from './unpickler.js';
export { DEFAULT_PROTOCOL, HIGHEST_PROTOCOL } from './opcodes.js';
export {
  BilliardError,
  EOFError,
  PickleError,
  PicklingError,
  UnpicklingAttributeError,
  UnpicklingError,
  UnpicklingOverflowError,
  UnpicklingTypeError,
  UnpicklingUnicodeDecodeError,
  UnpicklingValueError,
  type BilliardErrorOptions,
  type UnpicklingErrorCode,
} from './errors.js';
export {
  EMPTY_TUPLE,
  PickleBuffer,
  PyByteArray,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyObject,
  PyTuple,
  pyFloat,
  pyfunc,
  reduceEx,
  setState,
  tuple,
  type ReduceValue,
} from './types.js';
export { PythonException } from './exceptions.js';
export { PickleRegistry, NOT_HANDLED, type GlobalHandler, type LoadContext, type Reducer } from './registry.js';
export { defaultRegistry } from './default-registry.js';
export {
  installStdlib,
  PyComplex,
  PyCounter,
  PyDate,
  PyDatetime,
  PyDecimal,
  PyDefaultDict,
  PyDeque,
  PyOrderedDict,
  PyRange,
  PySlice,
  PyTime,
  PyTimedelta,
  PyTimezone,
  PyUUID,
} from './stdlib.js';
