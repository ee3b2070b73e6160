/**
 * Error classes of the pickle layer, and the branding every billiard-ts error
 * class uses.
 *
 * Each class carries the Python identity it stands for (`pyModule`,
 * `pyName`) and a brand registered under `Symbol.for(...)`, so that
 * `instanceof` still matches when two copies of the package are loaded (as
 * undici does). Every error has a stable string `code`.
 */

const kBrands = Symbol.for('billiard-ts.error.brands');

type BrandedClass = { readonly brand?: string };

/** Collects the brand names of `cls` and all its ancestors. */
function brandsOf(cls: unknown): string[] {
  const out: string[] = [];
  let c = cls as unknown;
  while (c !== null && typeof c === 'function') {
    const brand = Object.prototype.hasOwnProperty.call(c, 'brand') ? (c as BrandedClass).brand : undefined;
    if (brand) out.push(brand);
    c = Object.getPrototypeOf(c) as unknown;
  }
  return out;
}

/**
 * Base of every error class billiard-ts defines. Not itself a Python class:
 * subclasses name the Python exception they stand for.
 */
export class BilliardError extends Error {
  /** Stable identifier of the brand, `module.QualName` of the Python class. */
  static readonly brand: string = 'billiard-ts.BilliardError';
  /** A stable machine-readable code, e.g. `'TRUNCATED'`. */
  code: string;
  declare readonly [kBrands]: readonly string[];

  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = options?.code ?? 'ERROR';
    Object.defineProperty(this, kBrands, { value: brandsOf(new.target), enumerable: false });
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, writable: true, configurable: true });
  }

  static override [Symbol.hasInstance](obj: unknown): boolean {
    if (obj === null || (typeof obj !== 'object' && typeof obj !== 'function')) return false;
    const brands = (obj as { [kBrands]?: readonly string[] })[kBrands];
    if (Array.isArray(brands) && Object.prototype.hasOwnProperty.call(this, 'brand')) {
      return brands.includes((this as unknown as BrandedClass).brand as string);
    }
    return Function.prototype[Symbol.hasInstance].call(this, obj);
  }
}

/** Python's `EOFError`: input ended where a new item (opcode, frame) was expected. */
export class EOFError extends BilliardError {
  static override readonly brand: string = 'builtins.EOFError';
  constructor(message = 'Ran out of input', options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'EOF', ...options });
  }
}

/** Python's `pickle.PickleError`. */
export class PickleError extends BilliardError {
  static override readonly brand: string = 'pickle.PickleError';
}

/** Python's `pickle.PicklingError`: a value cannot be pickled. */
export class PicklingError extends PickleError {
  static override readonly brand: string = 'pickle.PicklingError';
  constructor(message: string, options?: { code?: string; cause?: unknown }) {
    super(message, { code: 'UNPICKLABLE', ...options });
  }
}

/**
 * The codes an {@link UnpicklingError} carries. `TRUNCATED` means the input
 * ended inside an opcode's argument or a frame (Python: "pickle data was
 * truncated"); input that ends between opcodes raises {@link EOFError}.
 */
export type UnpicklingErrorCode =
  | 'TRUNCATED'
  | 'INVALID_OPCODE'
  | 'UNSUPPORTED_PROTOCOL'
  | 'STACK_UNDERFLOW'
  | 'NO_MARK'
  | 'UNEXPECTED_MARK'
  | 'ODD_ITEMS'
  | 'MEMO_MISSING'
  | 'BAD_ARGUMENT'
  | 'DECODE'
  | 'TYPE'
  | 'LIMIT'
  | 'FORBIDDEN_GLOBAL'
  | 'NO_BUFFERS'
  | 'NO_PERSISTENT_LOAD'
  | 'BAD_EXTENSION'
  | 'TRAILING_DATA'
  | 'HANDLER'
  | 'INTERNAL';

/** Python's `pickle.UnpicklingError`: the bytes are not a valid pickle. */
export class UnpicklingError extends PickleError {
  static override readonly brand: string = 'pickle.UnpicklingError';
  declare code: UnpicklingErrorCode;
  /** Offset in the input of the opcode being executed, when known. */
  position: number | undefined;
  constructor(message: string, options?: { code?: UnpicklingErrorCode; cause?: unknown; position?: number }) {
    super(message, { code: options?.code ?? 'BAD_ARGUMENT', cause: options?.cause });
    this.position = options?.position;
  }
}
