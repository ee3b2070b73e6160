"""Python-side equality for the interop tests: `same(a, b)` is `==` that also
tells exact types, NaN, -0.0 and shared structure apart. Standard library
only, so CPython 3.14 in pyodide loads it too (test/pickle-cpython314.test.ts)."""
import math


def same(a, b, memo=None):
    """Equality that knows nan, -0.0, exact types and shared structure."""
    memo = {} if memo is None else memo
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        if id(a) in memo:
            return memo[id(a)] is b
        memo[id(a)] = b
        return len(a) == len(b) and all(same(x, y, memo) for x, y in zip(a, b))
    if isinstance(a, dict):
        if id(a) in memo:
            return memo[id(a)] is b
        memo[id(a)] = b
        return (len(a) == len(b) and all(same(ka, kb, memo) and same(va, vb, memo) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
                and getattr(a, 'default_factory', None) == getattr(b, 'default_factory', None))
    if isinstance(a, (set, frozenset)):
        isnan = lambda x: isinstance(x, float) and math.isnan(x)
        return sum(map(isnan, a)) == sum(map(isnan, b)) and {x for x in a if not isnan(x)} == {x for x in b if not isnan(x)}
    if type(a).__name__ == 'Decimal':
        return str(a) == str(b)
    if isinstance(a, BaseException):
        # Compared through fresh reduce tuples, which must not enter the id-keyed memo.
        ra, rb = a.__reduce__(), b.__reduce__()
        return same(ra[1], rb[1]) and same(ra[2:], rb[2:])
    try:
        return a == b
    except Exception:
        return False
