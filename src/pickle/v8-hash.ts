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
