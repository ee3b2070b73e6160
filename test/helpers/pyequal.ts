/**
 * Structural equality for decoded Python values: same JavaScript types,
 * same values (numbers compared with Object.is, so -0 and NaN count), dict
 * entries in the same order, and the same sharing: an object reached twice in
 * one value must be reached twice in the other (a bijection), so memo
 * identity is checked too. Iterative, so deep values do not overflow.
 */
import {
  PickleBuffer,
  PyByteArray,
  PyDict,
  PyFloat,
  PyFrozenSet,
  PyGlobal,
  PyObject,
  PyTuple,
  PythonException,
} from '../../src/pickle/index.js';

function isObjectDict(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && (Object.getPrototypeOf(v) === null || Object.getPrototypeOf(v) === Object.prototype);
}

/** A key that identifies a primitive set element, or null for objects. */
function primitiveKey(v: unknown): string | null {
  if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return `${typeof v}:${Object.is(v, -0) ? '-0' : String(v)}`;
  return null;
}

/**
 * Sets compared without order: primitive elements by value, objects (tuples,
 * frozensets...) pairwise. Returns null when they hold the same elements.
 */
function setDiff(x: Set<unknown>, y: Set<unknown>, path: string): string | null {
  const ykeys = new Map<string, number>();
  const yobjs: unknown[] = [];
  for (const v of y) {
    const k = primitiveKey(v);
    if (k === null) yobjs.push(v);
    else ykeys.set(k, (ykeys.get(k) ?? 0) + 1);
  }
  for (const v of x) {
    const k = primitiveKey(v);
    if (k !== null) {
      const n = ykeys.get(k);
      if (!n) return `${path}: element ${k} missing`;
      ykeys.set(k, n - 1);
      continue;
    }
    const i = yobjs.findIndex((o) => pyDiff(v, o, { unorderedSets: true }) === null);
    if (i < 0) return `${path}: an element object has no match`;
    yobjs.splice(i, 1);
  }
  return null;
}

/** Returns null when equal, else a path and reason. */
export function pyDiff(a: unknown, b: unknown, options?: { unorderedSets?: boolean }): string | null {
  const unordered = options?.unorderedSets ?? false;
  const ab = new Map<object, object>();
  const ba = new Map<object, object>();
  const work: Array<[unknown, unknown, string]> = [[a, b, '$']];
  while (work.length) {
    const [x, y, path] = work.pop()!;
    if (typeof x !== typeof y) return `${path}: ${typeof x} vs ${typeof y}`;
    if (typeof x !== 'object' || x === null || y === null) {
      if (!Object.is(x, y)) return `${path}: ${String(x)} vs ${String(y)}`;
      continue;
    }
    const xo = x as object;
    const yo = y as object;
    const seen = ab.get(xo);
    if (seen !== undefined) {
      if (seen !== yo) return `${path}: sharing differs`;
      continue;
    }
    if (ba.has(yo)) return `${path}: sharing differs (right side shared)`;
    ab.set(xo, yo);
    ba.set(yo, xo);
    if (Object.getPrototypeOf(xo) !== Object.getPrototypeOf(yo)) {
      return `${path}: ${xo.constructor?.name ?? 'null-proto'} vs ${yo.constructor?.name ?? 'null-proto'}`;
    }
    if (xo instanceof PyFloat) {
      if (!Object.is(xo.value, (yo as PyFloat).value)) return `${path}: float ${xo.value} vs ${(yo as PyFloat).value}`;
    } else if (xo instanceof Uint8Array) {
      const yb = yo as Uint8Array;
      if (xo.length !== yb.length || Buffer.compare(Buffer.from(xo.buffer, xo.byteOffset, xo.length), Buffer.from(yb.buffer, yb.byteOffset, yb.length)) !== 0) {
        return `${path}: bytes differ`;
      }
      void PyByteArray;
    } else if (Array.isArray(xo)) {
      const ya = yo as unknown[];
      if (xo.length !== ya.length) return `${path}: length ${xo.length} vs ${ya.length}`;
      for (let i = 0; i < xo.length; i++) work.push([xo[i], ya[i], `${path}[${i}]`]);
      // Extra own properties of array subclasses (PyDeque.maxlen).
      if (!(xo instanceof PyTuple) && Object.getPrototypeOf(xo) !== Array.prototype) {
        for (const k of Object.keys(xo).filter((k) => !/^\d+$/.test(k))) work.push([(xo as never)[k], (ya as never)[k], `${path}.${k}`]);
      }
    } else if (xo instanceof Map) {
      const ym = yo as Map<unknown, unknown>;
      if (xo.size !== ym.size) return `${path}: size ${xo.size} vs ${ym.size}`;
      const xe = [...xo.entries()];
      const ye = [...ym.entries()];
      xe.forEach(([k, v], i) => {
        work.push([k, ye[i]![0], `${path}.key${i}`]);
        work.push([v, ye[i]![1], `${path}.val${i}`]);
      });
      for (const k of Object.keys(xo)) work.push([(xo as never)[k], (ym as never)[k], `${path}.${k}`]);
      void PyDict;
    } else if (xo instanceof Set) {
      const ys = yo as Set<unknown>;
      if (xo.size !== ys.size) return `${path}: size ${xo.size} vs ${ys.size}`;
      if (unordered) {
        const d = setDiff(xo, ys, path);
        if (d !== null) return d;
        continue;
      }
      const xa = [...xo];
      const ya = [...ys];
      xa.forEach((v, i) => work.push([v, ya[i], `${path}{${i}}`]));
      void PyFrozenSet;
    } else if (xo instanceof PythonException) {
      const ye = yo as PythonException;
      if (xo.pyType !== ye.pyType) return `${path}: exception ${xo.pyType} vs ${ye.pyType}`;
      work.push([xo.args, ye.args, `${path}.args`], [xo.state, ye.state, `${path}.state`]);
    } else if (xo instanceof PyGlobal) {
      const yg = yo as PyGlobal;
      if (xo.module !== yg.module || xo.name !== yg.name) return `${path}: ${xo.qualifiedName} vs ${yg.qualifiedName}`;
    } else if (xo instanceof PickleBuffer) {
      const yp = yo as PickleBuffer;
      if (xo.readonly !== yp.readonly) return `${path}: readonly differs`;
      work.push([xo.buffer, yp.buffer, `${path}.buffer`]);
    } else if (xo instanceof PyObject || isObjectDict(xo) || typeof xo === 'object') {
      const xk = Object.keys(xo);
      const yk = Object.keys(yo);
      if (xk.join('\u0000') !== yk.join('\u0000')) return `${path}: keys [${xk}] vs [${yk}]`;
      for (const k of xk) work.push([(xo as never)[k], (yo as never)[k], `${path}.${k}`]);
    }
  }
  return null;
}
