/**
 * V8's two integer hashes (its src/utils/utils.h: ComputeUnseededHash and
 * ComputeLongHash), written with BigInts and independently of
 * src/pickle/v8-hash.ts, which the tests check against them; their
 * inverses; and keys made with those that share one bucket of a V8 Map or
 * Set. Used by test/pickle-limits.test.ts, the fuzzer's `hash-flood`
 * family (bench/fuzz/hostile.ts) and `npm run soak:hostile`.
 */

const M32 = (1n << 32n) - 1n;
const M64 = (1n << 64n) - 1n;

/** The inverse of odd `a` modulo `mask + 1` (a power of two). */
function inverseMod(a: bigint, mask: bigint): bigint {
  let x = a;
  for (let i = 0; i < 7; i++) x = (x * (2n - a * x)) & mask;
  return x;
}

/** The inverse of `y = x ^ (x >> s)` on `bits`-bit integers. */
function unxorshift(h: bigint, s: bigint, bits: number): bigint {
  let y = h;
  for (let i = 0; i * Number(s) < bits; i++) y = h ^ (y >> s);
  return y;
}

const INV_2057 = inverseMod(2057n, M32);
const INV_5 = inverseMod(5n, M32);
const INV_2_15 = inverseMod((1n << 15n) - 1n, M32);
const INV_65 = inverseMod(65n, M64);
const INV_21 = inverseMod(21n, M64);
const INV_2_18 = inverseMod((1n << 18n) - 1n, M64);

/** V8's ComputeUnseededHash of an int32, as V8 keeps it (30 bits). */
export function unseededHash(key: number): number {
  let h = BigInt(key >>> 0);
  h = ((h ^ M32) + (h << 15n)) & M32;
  h ^= h >> 12n;
  h = (h + (h << 2n)) & M32;
  h ^= h >> 4n;
  h = (h * 2057n) & M32;
  h ^= h >> 16n;
  return Number(h & 0x3fffffffn);
}

/** V8's ComputeLongHash of a 64-bit integer, as V8 keeps it (30 bits). */
export function longHash(x: bigint): number {
  let h = x;
  h = ((h ^ M64) + (h << 18n)) & M64;
  h ^= h >> 31n;
  h = (h * 21n) & M64;
  h ^= h >> 11n;
  h = (h + (h << 6n)) & M64;
  h ^= h >> 22n;
  return Number(h & 0x3fffffffn);
}

/** An int32 whose ComputeUnseededHash, before V8 keeps 30 bits, is `h`. */
export function unseededInverse(h: bigint): number {
  let x = unxorshift(h, 16n, 32);
  x = (x * INV_2057) & M32;
  x = unxorshift(x, 4n, 32);
  x = (x * INV_5) & M32;
  x = unxorshift(x, 12n, 32);
  return Number(BigInt.asIntN(32, ((x + 1n) * INV_2_15) & M32));
}

/** A 64-bit integer whose ComputeLongHash, before V8 keeps 30 bits, is `h`. */
export function longInverse(h: bigint): bigint {
  let x = unxorshift(h, 22n, 64);
  x = (x * INV_65) & M64;
  x = unxorshift(x, 11n, 64);
  x = (x * INV_21) & M64;
  x = unxorshift(x, 31n, 64);
  return ((x + 1n) * INV_2_18) & M64;
}

const bits = new DataView(new ArrayBuffer(8));

/** V8's hash of a number or bigint as a Map key: an int32's, a double's bits', a bigint's low 64 bits' (its magnitude's). */
export function v8KeyHash(k: number | bigint): number {
  if (typeof k === 'bigint') return longHash(BigInt.asUintN(64, k < 0n ? -k : k));
  if ((k | 0) === k) return unseededHash(k);
  bits.setFloat64(0, k);
  return longHash(bits.getBigUint64(0));
}

/**
 * `n` keys of one kind that share a bucket of a V8 table: int32s whose
 * hashes share their low 16 bits (a table of up to 65,536 buckets; int32s
 * can share no more), and floats and 64-bit bigints of one hash, and bigints
 * `k << 64`, of either sign, equal in their low 64 bits. `target` picks the
 * hash.
 */
export const collidingKeys = {
  int32s: (n: number, target = 0x1234n): number[] => Array.from({ length: n }, (_, j) => unseededInverse(target + (BigInt(j + 1) << 16n))),
  floats: (n: number, target = 0x2345n): number[] => {
    const out: number[] = [];
    // Some hashes invert to NaN, infinities or integral doubles: skipped.
    for (let j = 1n; out.length < n; j++) {
      bits.setBigUint64(0, longInverse(target + (j << 30n)));
      const d = bits.getFloat64(0);
      if (Number.isFinite(d) && !Number.isInteger(d)) out.push(d);
    }
    return out;
  },
  u64s: (n: number, target = 0x3456n): bigint[] => Array.from({ length: n }, (_, j) => longInverse(target + (BigInt(j + 1) << 30n))),
  shifted: (n: number): bigint[] => Array.from({ length: n }, (_, j) => (BigInt(j + 1) << 64n) * (j % 2 ? -1n : 1n)),
};
