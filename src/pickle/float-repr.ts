/**
 * Python's `repr(float)` and `float(str)` for protocol 0's FLOAT opcode.
 *
 * JavaScript's shortest round-trip digits are the same digits Python's repr
 * uses; only the layout differs (spec/pickle.md, Appendix B): fixed notation
 * for decimal exponents -4..15, scientific with a signed two-digit exponent
 * otherwise, and `.0` on integral values.
 */
export function floatRepr(x: number): string {
  if (x !== x) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const exp = Math.abs(x).toExponential(); // "d.ddde+N"
  const ePos = exp.indexOf('e');
  const digits = exp.slice(0, ePos).replace('.', '');
  const e = Number(exp.slice(ePos + 1));
  if (e >= -4 && e < 16) {
    if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
    const intLen = e + 1;
    if (digits.length <= intLen) return `${sign}${digits}${'0'.repeat(intLen - digits.length)}.0`;
    return `${sign}${digits.slice(0, intLen)}.${digits.slice(intLen)}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const expAbs = Math.abs(e);
  return `${sign}${mantissa}e${e < 0 ? '-' : '+'}${expAbs < 10 ? '0' : ''}${expAbs}`;
}

/**
 * Python's float grammar as `float()` and the C unpickler accept it: optional
 * sign, then `inf`, `infinity` or `nan` in any case, or decimal digits with an
 * optional fraction and exponent (`1.`, `.5`, `1E5`). No spaces, no
 * underscores. Returns `undefined` for anything else; `null` on overflow
 * (Python raises OverflowError for `1e500`).
 */
export function parsePythonFloat(text: string): number | null | undefined {
  if (!/^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)$/i.test(text)) return undefined;
  const lower = text.toLowerCase();
  const neg = lower.startsWith('-');
  const body = lower.replace(/^[+-]/, '');
  if (body === 'inf' || body === 'infinity') return neg ? -Infinity : Infinity;
  if (body === 'nan') return NaN;
  const v = Number(text);
  if (!Number.isFinite(v)) return null;
  return v;
}
