/**
 * V8 hashes a string longer than this by its length alone
 * (String::kMaxHashCalcLength), so a Map, a Set or the engine's table of
 * property names compares such a string in full with every other of its
 * length: n of them as keys of one table cost n * n / 2 comparisons (2,000
 * distinct strings of 16,383 characters went into a Map in 47 ms here, of
 * 16,384 characters in 3.5 s). The unpickler's `maxLongKeys`, the pickler's
 * string memo, a manager's dict and the Celery worker's JSON check keep such
 * strings out of hash tables, or bound how many go in.
 */
export const LONG_KEY_CHARS = 16383;

/*
 * A number or a bigint as the key of a Map or an element of a Set is hashed
 * by V8 with a fixed function (Object::GetSimpleHash), where a string's hash
 * is seeded per process: anyone can compute which keys share a bucket. An
 * integer in int32 range hashes as ComputeUnseededHash of its 32 bits, any
 * other number as ComputeLongHash of its IEEE 754 bits, and a bigint as
 * ComputeLongHash of the low 64 bits of its magnitude, so that bigints equal
 * in those bits (2n ** 64n * k for every k) all have one hash. Each key
 * lands in bucket `hash & (buckets - 1)`, and V8 compares a key with every
 * key its bucket holds: n keys in one bucket cost n * n / 2 comparisons
 * (8,000 of them went into a Map in 75 to 310 ms here, 8,000 random ones
 * in 1 ms). Both functions are mixes that can be inverted, so a crafted
 * pickle can fill one bucket with as many float or bigint keys as it likes
 * (int32 keys: 2**32 divided by the number of buckets).
 *
 * keyHash() computes V8's hash of such a key. It was checked against this
 * V8 (Node 20) by timing keys crafted to collide under it, each kind in a
 * Map; test/pickle-limits.test.ts checks it against V8's formulas written
 * with BigInts. KeyChains counts how many keys of one table share each
 * bucket (the unpickler uses both; src/pickle/README.md, "Number keys"). If
 * V8 changes its hashes, the counts stop meaning anything for crafted keys,
 * but random keys still spread, so nothing that loads today fails.
 */

const scratch = new Float64Array(1);
const scratchWords = new Uint32Array(scratch.buffer);
const scratchU64 = new BigUint64Array(scratch.buffer);

/** V8's ComputeUnseededHash of an int32 (Thomas Wang's 32-bit mix), as V8 keeps it: 30 bits. */
function unseededHash32(key: number): number {
  let h = key | 0;
  h = (~h + (h << 15)) | 0;
  h ^= h >>> 12;
  h = (h + (h << 2)) | 0;
  h ^= h >>> 4;
  h = Math.imul(h, 2057);
  h ^= h >>> 16;
  return h & 0x3fffffff;
}

const TWO_32 = 4294967296;

/** V8's ComputeLongHash of the 64-bit integer `hi * 2**32 + lo` (both unsigned 32-bit), in 32-bit halves. */
function longHash64(lo: number, hi: number): number {
  // h = ~x + (x << 18)
  let l = (~lo >>> 0) + ((lo << 18) >>> 0);
  let h = ((~hi >>> 0) + (((hi << 18) | (lo >>> 14)) >>> 0) + (l >= TWO_32 ? 1 : 0)) >>> 0;
  l >>>= 0;
  // h ^= h >> 31
  l = (l ^ ((h << 1) | (l >>> 31))) >>> 0;
  h = (h ^ (h >>> 31)) >>> 0;
  // h *= 21
  let p = l * 21;
  l = p >>> 0;
  h = (Math.imul(h, 21) + ((p / TWO_32) | 0)) >>> 0;
  // h ^= h >> 11
  l = (l ^ ((l >>> 11) | (h << 21))) >>> 0;
  h = (h ^ (h >>> 11)) >>> 0;
  // h += h << 6
  p = l * 65;
  l = p >>> 0;
  h = (Math.imul(h, 65) + ((p / TWO_32) | 0)) >>> 0;
  // h ^= h >> 22 (only the low 30 bits are kept)
  return (l ^ ((l >>> 22) | (h << 10))) & 0x3fffffff;
}

/** V8's hash of `key` as the key of a Map or an element of a Set (see above). */
export function keyHash(key: number | bigint): number {
  if (typeof key === 'number') {
    if ((key | 0) === key) return unseededHash32(key);
    scratch[0] = key;
  } else {
    scratchU64[0] = key < 0n ? -key : key;
  }
  return longHash64(scratchWords[0]!, scratchWords[1]!);
}

/** `n` zeros in an array of packed small integers (`new Array(n)` would make a holey one). */
function zeros(n: number): number[] {
  const a: number[] = [];
  for (let i = 0; i < n; i++) a.push(0);
  return a;
}

/**
 * How the number and bigint keys given for one Map or Set share buckets,
 * counted as they are added: `add` returns how many of them the new one's
 * bucket held before it. (The unpickler gives it a random sample of the
 * keys; see src/pickle/README.md, "Number keys".)
 *
 * A table that keeps growing (`grows`) keeps its keys' hashes, and its
 * buckets double when the keys reach four per bucket: there are between a
 * quarter and a half as many as keys, where V8 has at least half as many,
 * so a count is never below V8's for the same keys. A table filled at once,
 * by one batch of `expected` keys, is counted with the buckets of its final
 * size from the start: while V8's table is smaller the count can be below
 * V8's, but keys that share buckets only in a small table cost few
 * comparisons each.
 */
export class KeyChains {
  // Plain arrays of small integers: a typed array's backing store is allocated
  // outside the heap, which made loading many dicts of 100 int keys twice as slow.
  readonly #hashes: number[] = [];
  #grows = false;
  #mask = 1;
  #counts: number[] = [0, 0];

  constructor(expected = 0, grows = false) {
    this.reset(expected, grows);
  }

  /** Starts over, for a table that is about to get `expected` keys (reusing the arrays). */
  reset(expected: number, grows = false): this {
    let buckets = 2;
    if (!grows) while (buckets * 4 <= expected) buckets *= 2;
    this.#grows = grows;
    if (this.#hashes.length > 0) this.#hashes.length = 0;
    this.#mask = buckets - 1;
    if (this.#counts.length === buckets) this.#counts.fill(0);
    else this.#counts = zeros(buckets);
    return this;
  }

  add(hash: number): number {
    if (this.#grows) {
      const hashes = this.#hashes;
      if (hashes.length === (this.#mask + 1) * 4) this.#rebucket(hashes);
      hashes.push(hash);
    }
    return this.#counts[hash & this.#mask]!++;
  }

  #rebucket(hashes: number[]): void {
    const mask = this.#mask * 2 + 1;
    const counts = zeros(mask + 1);
    for (let i = 0; i < hashes.length; i++) counts[hashes[i]! & mask]!++;
    this.#mask = mask;
    this.#counts = counts;
  }
}
