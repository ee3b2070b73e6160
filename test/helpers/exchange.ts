/**
 * The exchange the interop tests run against a Python peer serving
 * compat/peers/conn_peer.py's commands: every corpus value both ways, a large
 * send_bytes message both ways, and a burst of small messages both ways.
 * The connection must load integral floats as PyFloat (loadOptions floats:
 * 'wrap-integral') so that they compare with the corpus values.
 */
import { createHash } from 'node:crypto';

import { expect } from 'vitest';

import { tuple, type Connection } from '../../src/index.js';
import { buildValue } from './describe.js';
import { goldenPickles } from './fixtures.js';
import { pyDiff } from './pyequal.js';

export const GROUPS = ['builtin', 'stdlib'] as const;
export type Group = (typeof GROUPS)[number];

/** The corpus values by name, built from the golden descriptors. */
export function corpus(group: Group): Array<[string, unknown]> {
  return goldenPickles()
    .cases.filter((c) => c.group === group)
    .map((c) => [c.name, buildValue(c.desc)]);
}

/** Reads the corpus values a peer sends after ('corpus', group), up to ('done', n), and checks each. */
export async function expectCorpusFrom(conn: Connection, group: Group): Promise<void> {
  const want = new Map(corpus(group));
  const bad: string[] = [];
  for (;;) {
    const [name, value] = (await conn.recv()) as [string, unknown];
    if (name === 'done') {
      expect(value).toBe(want.size);
      break;
    }
    const diff = want.has(name) ? pyDiff(value, want.get(name), { unorderedSets: true }) : 'unknown name';
    if (diff !== null) bad.push(`${name}: ${diff}`);
  }
  expect(bad, `${group} values from Python`).toEqual([]);
}

/** Sends ('check', group, n) and the n corpus pairs (not awaited one by one, as a burst). */
export async function sendCorpusToCheck(conn: Connection, group: Group): Promise<void> {
  const items = corpus(group);
  await conn.send(tuple('check', group, items.length));
  await Promise.all(items.map(([name, value]) => conn.send(tuple(name, value))));
}

/** Receives 0, 1, ..., n-1 and checks they came in order. */
export async function receiveBurst(conn: Connection, n: number): Promise<void> {
  const received: unknown[] = [];
  for (let i = 0; i < n; i++) received.push(await conn.recv());
  expect(received.every((v, i) => v === i)).toBe(true);
}

export function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = i & 0xff;
  return out;
}

/** Runs the whole exchange on `conn`, then sends ('exit',). */
export async function exercise(conn: Connection, sizes: { big: number; burst: number }): Promise<void> {
  const BIG = sizes.big;
  const BURST = sizes.burst;
  // Python -> Node: every corpus value, as Python's ForkingPickler writes it.
  for (const group of GROUPS) {
    await conn.send(tuple('corpus', group));
    await expectCorpusFrom(conn, group);
  }
  // Node -> Python: every corpus value as billiard-ts pickles it; Python checks each.
  for (const group of GROUPS) {
    await sendCorpusToCheck(conn, group);
    expect(await conn.recv(), `${group} values Python found different`).toEqual([]);
  }
  // `big` bytes both ways.
  const big = pattern(BIG);
  await conn.send(tuple('recv_big'));
  await conn.sendBytes(big);
  expect(await conn.recv()).toEqual([BIG, createHash('sha256').update(big).digest('hex')]);
  await conn.send(tuple('big', BIG));
  const got = await conn.recvBytes();
  expect(got.length).toBe(BIG);
  expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
  // `burst` small messages, both ways, in order.
  await conn.send(tuple('expect_burst', BURST));
  await Promise.all(Array.from({ length: BURST }, (_, i) => conn.send(i)));
  expect(await conn.recv()).toEqual([true, BURST]);
  await conn.send(tuple('burst', BURST));
  await receiveBurst(conn, BURST);
  await conn.send(tuple('exit'));
}

