/** Reads fixtures/pickles-cpython.json (golden pickles written by CPython). */
import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';

import type { Desc } from './describe.js';

export interface GoldenCase {
  group: 'builtin' | 'stdlib' | 'random';
  name: string;
  desc: Desc;
  /** Pickle bytes for protocols 0-5, null where CPython refuses the protocol. */
  pickles: Array<Uint8Array | null>;
}

export interface OpaqueCase {
  name: string;
  /** Set when billiard-ts cannot reproduce the bytes: why. */
  notIdentical?: string;
  pickles: Array<Uint8Array | null>;
}

function decode(s: string | null): Uint8Array | null {
  if (s === null) return null;
  if (s.startsWith('z:')) return new Uint8Array(inflateSync(Buffer.from(s.slice(2), 'base64')));
  return new Uint8Array(Buffer.from(s, 'hex'));
}

let cached: { python: string; cases: GoldenCase[]; opaque: OpaqueCase[] } | undefined;

export function goldenPickles(): { python: string; cases: GoldenCase[]; opaque: OpaqueCase[] } {
  if (cached) return cached;
  const raw = JSON.parse(readFileSync(new URL('../../fixtures/pickles-cpython.json', import.meta.url), 'utf8')) as {
    python: string;
    cases: Array<Omit<GoldenCase, 'pickles'> & { pickles: Array<string | null> }>;
    opaque: Array<{ name: string; notIdentical?: string; pickles: Array<string | null> }>;
  };
  cached = {
    python: raw.python,
    cases: raw.cases.map((c) => ({ ...c, pickles: c.pickles.map(decode) })),
    opaque: raw.opaque.map((c) => ({ ...c, pickles: c.pickles.map(decode) })),
  };
  return cached;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}

/** First differing offset of two byte strings, with context, for failure messages. */
export function firstDifference(a: Uint8Array, b: Uint8Array): string {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  if (i === n && a.length === b.length) return 'identical';
  const from = Math.max(0, i - 16);
  return `differ at offset ${i} (lengths ${a.length} vs ${b.length}): ...${hex(a.subarray(from, i + 16))} vs ...${hex(b.subarray(from, i + 16))}`;
}
