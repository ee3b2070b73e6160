/** Plain-text tables with aligned columns, for benchmark reports. */

export type Align = 'left' | 'right';

export interface Column {
  header: string;
  /** Defaults to 'left'. */
  align?: Align;
}

/**
 * Formats rows under their headers, each column as wide as its widest cell,
 * with a dashed rule under the header. Rows shorter than the header are
 * padded with empty cells.
 */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        return c.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A number with `digits` significant digits, without exponent notation for ordinary magnitudes. */
export function fmt(value: number, digits = 3): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const decimals = Math.max(0, digits - 1 - magnitude);
  return value.toFixed(Math.min(decimals, 20));
}

/**
 * A quantile function of `samples` (linear interpolation between the sorted
 * samples, as numpy's default), and the sorted copy it reads.
 */
export function quantiles(samples: readonly number[]): { at: (q: number) => number; sorted: number[] } {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => {
    const i = (sorted.length - 1) * q;
    const lo = Math.floor(i);
    return sorted[lo]! + (sorted[Math.ceil(i)]! - sorted[lo]!) * (i - lo);
  };
  return { at, sorted };
}
