"""The CPython side of test/pickle-roundtrip.test.ts: one exchange per run.

1. Prints one JSON line: this Python's version, the extension codes
   compat/peers/roundtrip_classes.py registers, and for each of its cases the
   pickles CPython writes at protocols 0-5 (hex; null where the case does not
   run at that protocol). Each is first checked to load back in CPython.
2. Reads one JSON line: a list of {name, from, to, hex} (billiard-ts's
   dumps at protocol `to` of its loads of the protocol `from` pickle) or
   {name, from, to, error} (billiard-ts failed).
3. Prints one JSON line: for each, {name, from, to, ok, why, identical}: ok
   when CPython loads the bytes to an object equal to a fresh original
   (roundtrip_classes.same), identical when they are the bytes CPython itself
   writes for the original at protocol `to`, writable when CPython can write
   the original at protocol `to` at all (it cannot write a set that holds
   itself below protocol 4, for one).

Standard library only; the test classes must be importable by their module
name, which they are from this directory.
"""
import json
import pickle
import sys

import roundtrip_classes as rc

sys.setrecursionlimit(10000)


_own = {}


def own_bytes(name, protocol):
    """What CPython writes for the case at `protocol`, or None where it cannot
    (slots at protocols 0 and 1, recursive container subclasses there)."""
    key = (name, protocol)
    if key not in _own:
        factory = next((f for n, f, _ in rc.CASES if n == name), None)
        try:
            _own[key] = None if factory is None else pickle.dumps(factory(), protocol)
        except Exception:
            _own[key] = None
    return _own[key]


def main():
    factories = {}
    cases = []
    for name, factory, protocols in rc.CASES:
        factories[name] = factory
        pickles = []
        for p in range(6):
            if p not in protocols:
                pickles.append(None)
                continue
            data = pickle.dumps(factory(), p)
            if not rc.same(pickle.loads(data), factory()):
                raise SystemExit('case %r does not round-trip in CPython itself at protocol %d' % (name, p))
            pickles.append(data.hex())
        cases.append({'name': name, 'pickles': pickles})
    for name, data, factory in rc.RAW:
        factories[name] = factory
        if not rc.same(pickle.loads(data), factory()):
            raise SystemExit('raw case %r does not load to its value in CPython' % name)
        cases.append({'name': name, 'pickles': [data.hex()] + [None] * 5, 'raw': True})
    print(json.dumps({'python': sys.version.split()[0], 'extensions': rc.EXTENSIONS, 'cases': cases}), flush=True)

    request = json.loads(sys.stdin.readline())
    raw = {name for name, _, _ in rc.RAW}
    results = []
    for item in request:
        name, p, q = item['name'], item['from'], item['to']
        own = own_bytes(name, q)
        out = {'name': name, 'from': p, 'to': q, 'ok': False, 'why': None, 'identical': False,
               'writable': name in raw or own is not None}
        results.append(out)
        if 'error' in item:
            out['why'] = 'billiard-ts: %s' % item['error']
            continue
        data = bytes.fromhex(item['hex'])
        try:
            value = pickle.loads(data)
        except Exception as e:
            out['why'] = 'CPython cannot load it: %r' % (e,)
            continue
        original = factories[name]()
        out['ok'] = rc.same(value, original)
        if not out['ok']:
            out['why'] = 'CPython loads a different value: %r' % (value,)
        out['identical'] = data == own
    print(json.dumps(results), flush=True)


if __name__ == '__main__':
    main()
