/**
 * billiard-ts's `billiard.util` (spec/api.md section 11), as the `util`
 * namespace of the public API: `import { util } from 'billiard-ts'`, then
 * `util.subDebug('...')`, `util.info('process %s exiting', name)`.
 *
 * So far its logging part: the logger (`getLogger`, `logToStderr`, also at
 * the top level), the helpers that log at a level once the logger exists
 * (`subDebug`, `debug`, `info`, `subWarning`, `warning`, `error`) and the
 * level constants. See src/process/logger.ts.
 */

export {
  CRITICAL,
  DEBUG,
  debug,
  DEFAULT_LOGGING_FORMAT,
  ERROR,
  error,
  getLevelName,
  getLogger,
  INFO,
  info,
  LOGGER_NAME,
  logToStderr,
  NOTSET,
  SUBDEBUG,
  subDebug,
  SUBWARNING,
  subWarning,
  WARNING,
  warning,
} from './process/logger.js';
