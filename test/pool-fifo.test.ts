/** The pool's queue of waiting parts (src/pool/fifo.ts): order kept through shift, unshiftAll, removeWhere and compaction. */
import { expect, test } from 'vitest';

import { Fifo } from '../src/pool/fifo.js';

test('Fifo keeps first-in first-out order across compactions, unshiftAll and removeWhere', () => {
  const q = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  // Enough shifts to compact several times, interleaved with the other operations.
  for (let round = 0; round < 40; round++) {
    const batch = Array.from({ length: 300 }, () => next++);
    q.pushAll(batch);
    model.push(...batch);
    for (let k = 0; k < 250; k++) expect(q.shift()).toBe(model.shift());
    const back = [model.shift()!, model.shift()!];
    expect([q.shift(), q.shift()]).toEqual(back);
    q.unshiftAll(back);
    model.unshift(...back);
    if (round % 7 === 0) {
      const gone = q.removeWhere((x) => x % 5 === 0);
      expect(gone).toEqual(model.filter((x) => x % 5 === 0));
      model.splice(0, model.length, ...model.filter((x) => x % 5 !== 0));
    }
    q.push(next);
    model.push(next++);
    expect(q.length).toBe(model.length);
  }
  expect(q.drain()).toEqual(model);
  expect(q.length).toBe(0);
  expect(q.shift()).toBeUndefined();
  q.unshiftAll([1, 2]);
  expect(q.drain()).toEqual([1, 2]);
});
