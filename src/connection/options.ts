/**
 * Unknown option names are errors, as Python's unexpected keyword arguments
 * are: `new Pool({ maxTasksPerChild: 10 })` (billiard's name is
 * `maxtasksperchild`) must not start a pool that never recycles its
 * workers. Each constructor lists its names with {@link optionNames}, which
 * TypeScript checks against the options interface in both directions.
 */

/** The names an options object may have. */
export type OptionNames = ReadonlySet<string>;

/**
 * The option names of `T`, from an object that must name each of them (and
 * only them) once: `optionNames<PoolOptions>()({ processes: 1, ... })`.
 * A name added to the interface and not here fails to compile.
 */
export function optionNames<T extends object>(): (names: { readonly [K in keyof Required<T> & string]: 1 }) => OptionNames {
  return (names) => new Set(Object.keys(names));
}

function suggestion(name: string, names: OptionNames): string {
  const folded = name.toLowerCase().replace(/[_-]/g, '');
  for (const n of names) if (n.toLowerCase().replace(/[_-]/g, '') === folded) return ` (did you mean '${n}'?)`;
  return '';
}

/**
 * Throws a TypeError naming the first own enumerable key of `options` that
 * is not in `names` (`where` names the call, as `new Pool()`). Nothing for
 * undefined or null; a TypeError for a value that is not an object.
 */
export function checkOptionNames(options: unknown, names: OptionNames, where: string): void {
  if (options === undefined || options === null) return;
  if (typeof options !== 'object') throw new TypeError(`${where}: the options must be an object, not ${typeof options}`);
  for (const key of Object.keys(options)) {
    if (!names.has(key)) throw new TypeError(`${where}: unknown option '${key}'${suggestion(key, names)}`);
  }
}

/** {@link checkOptionNames} for a function that reports errors through the promise it returns: that rejection, or null. */
export function optionsRejection(options: unknown, names: OptionNames, where: string): Promise<never> | null {
  try {
    checkOptionNames(options, names, where);
    return null;
  } catch (e) {
    return Promise.reject(e);
  }
}
