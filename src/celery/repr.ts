/**
 * Python's `repr` of the values a task message carries, for the
 * `argsrepr`/`kwargsrepr` headers and the remote-control replies that show
 * them (logs, events and Flower display them; nothing executes them).
 * Celery cuts them at 1024 characters.
 */
import { floatRepr } from '../pickle/float-repr.js';
import { PyFloat, PyTuple } from '../pickle/types.js';

export const REPR_MAX = 1024;

function strRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0) as number;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else if (c >= 0xd800 && c <= 0xdfff) out += `\\u${c.toString(16)}`;
    else out += ch;
  }
  return out + quote;
}

function reprOf(v: unknown, depth: number, seen: Set<object>): string {
  if (depth > 50) return '...';
  switch (typeof v) {
    case 'string':
      return strRepr(v);
    case 'number':
      return Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? String(v) : floatRepr(v);
    case 'bigint':
      return v.toString();
    case 'boolean':
      return v ? 'True' : 'False';
    case 'undefined':
      return 'None';
    case 'function':
      return `<function ${v.name || 'anonymous'}>`;
    case 'symbol':
      return v.toString();
    default:
      break;
  }
  if (v === null) return 'None';
  const o = v as object;
  if (seen.has(o)) return Array.isArray(o) ? '[...]' : '{...}';
  seen.add(o);
  try {
    if (o instanceof PyFloat) return floatRepr(o.value);
    if (o instanceof PyTuple) {
      const items = o.map((x) => reprOf(x, depth + 1, seen));
      return items.length === 1 ? `(${items[0]},)` : `(${items.join(', ')})`;
    }
    if (Array.isArray(o)) return `[${o.map((x) => reprOf(x, depth + 1, seen)).join(', ')}]`;
    if (o instanceof Map) return `{${[...o].map(([k, x]) => `${reprOf(k, depth + 1, seen)}: ${reprOf(x, depth + 1, seen)}`).join(', ')}}`;
    if (o instanceof Set) return o.size === 0 ? 'set()' : `{${[...o].map((x) => reprOf(x, depth + 1, seen)).join(', ')}}`;
    if (o instanceof Uint8Array) return `b${strRepr(Buffer.from(o).toString('latin1'))}`;
    if (o instanceof Error) return `${o.name}(${strRepr(o.message)})`;
    const proto = Object.getPrototypeOf(o) as unknown;
    if (proto === Object.prototype || proto === null) {
      return `{${Object.entries(o).map(([k, x]) => `${strRepr(k)}: ${reprOf(x, depth + 1, seen)}`).join(', ')}}`;
    }
    return `<${(o as { constructor?: { name?: string } }).constructor?.name ?? 'object'} object>`;
  } finally {
    seen.delete(o);
  }
}

/** `repr(value)` as Python writes it, cut at `max` characters (Celery's `saferepr` limit). */
export function pyRepr(value: unknown, max = REPR_MAX): string {
  const text = reprOf(value, 0, new Set());
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/** `repr(tuple(args))`: `(2, 3)`, `(1,)`, `()`. */
export function argsRepr(args: readonly unknown[], max = REPR_MAX): string {
  return pyRepr(args instanceof PyTuple ? args : PyTuple.from(args), max);
}
