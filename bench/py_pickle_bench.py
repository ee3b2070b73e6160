"""CPython side of the pickle benchmark (bench/pickle.ts starts it).

Builds the standard payload for each variant, writes the pickle CPython makes
for each (variant, protocol) to OUT_DIR/<variant>-p<protocol>.pkl so that the
JavaScript side loads the very same bytes, and times pickle.dumps and
pickle.loads (the C accelerator, _pickle) with time.perf_counter, one call
per sample. The garbage collector stays enabled, as in ordinary programs.

Two modes:

  py_pickle_bench.py --out-dir DIR [--seconds 1] [--warmup 0.25]
                     [--protocols 2,4,5] [--variants big70,big40] [--rows 10000]
      times every cell and prints one JSON document (standalone use).

  py_pickle_bench.py --serve
      reads one JSON request per line on stdin and answers one JSON line on
      stdout, so the caller can interleave CPython's rounds with its own:
        {"cmd": "info"}
        {"cmd": "prepare", "out_dir": D, "rows": N, "variants": [...], "protocols": [...]}
        {"cmd": "time", "variant": V, "protocol": P, "op": "dumps"|"dumps fresh"|"loads", "seconds": S, "warmup": W}
        {"cmd": "memory", "variant": V, "protocol": P}
"""

import argparse
import gc
import json
import os
import pickle
import platform
import statistics
import sys
import time
import tracemalloc

try:
    import _pickle
except ImportError:  # pragma: no cover - CPython always ships it
    _pickle = None

# Variant name -> the base of the 'big' field.
VARIANTS = {'big70': 2**70, 'big40': 2**40}


def make_payload(rows, big):
    """The standard payload: a list of `rows` dicts."""
    return [
        {'id': i, 'name': 'user%d' % i, 'score': i * 1.5, 'tags': ['a', 'b'],
         'blob': b'\x00' * 16, 'big': big + i}
        for i in range(rows)
    ]


def info():
    return {
        'python': sys.version.split()[0],
        'implementation': platform.python_implementation(),
        'executable': sys.executable,
        # True when pickle.dumps/loads are the C functions of _pickle.
        'c_accelerator': _pickle is not None and pickle.dumps is _pickle.dumps and pickle.loads is _pickle.loads,
        'gc_enabled': gc.isenabled(),
    }


class Bench:
    """Payloads and their pickles, by (variant, protocol)."""

    def __init__(self):
        self.payloads = {}
        self.pickles = {}

    def prepare(self, out_dir, rows, variants, protocols):
        """Builds the payloads, writes their pickles; returns one entry per case."""
        cases = []
        for variant in variants:
            payload = self.payloads[variant] = make_payload(rows, VARIANTS[variant])
            for protocol in protocols:
                data = self.pickles[variant, protocol] = pickle.dumps(payload, protocol=protocol)
                path = os.path.join(out_dir, '%s-p%d.pkl' % (variant, protocol))
                with open(path, 'wb') as f:
                    f.write(data)
                cases.append({'variant': variant, 'protocol': protocol, 'path': path, 'bytes': len(data)})
        return cases

    def function(self, variant, protocol, op):
        """The timed function of one argument, and what makes its argument (None: no argument)."""
        data = self.pickles[variant, protocol]
        if op == 'dumps':
            payload = self.payloads[variant]
            return (lambda _: pickle.dumps(payload, protocol=protocol)), None
        if op == 'dumps fresh':
            # A value made for each call, as a job's arguments are: loaded from the pickle.
            return (lambda value: pickle.dumps(value, protocol=protocol)), (lambda: pickle.loads(data))
        return (lambda _: pickle.loads(data)), None

    def time(self, variant, protocol, op, seconds, warmup):
        """Single-call times in ns: warm-up, then at least `seconds` of samples (and 2 calls)."""
        fn, setup = self.function(variant, protocol, op)
        perf = time.perf_counter
        end = perf() + warmup
        while perf() < end:
            fn(setup() if setup else None)
        samples = []
        end = perf() + seconds
        while perf() < end or len(samples) < 2:
            arg = setup() if setup else None  # outside the timed span
            t0 = perf()
            fn(arg)  # the result is freed inside the timed span, as timeit does
            samples.append(perf() - t0)
            del arg
        return [s * 1e9 for s in samples]

    def memory(self, variant, protocol):
        """Bytes one pickle.loads result keeps alive, and the peak while loading (tracemalloc)."""
        data = self.pickles[variant, protocol]
        gc.collect()
        tracemalloc.start()
        try:
            result = pickle.loads(data)
            retained, peak = tracemalloc.get_traced_memory()
            del result
        finally:
            tracemalloc.stop()
        return {'retained_bytes': retained, 'peak_bytes': peak}


def serve():
    bench = Bench()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            cmd = req['cmd']
            if cmd == 'info':
                resp = info()
            elif cmd == 'prepare':
                resp = {'cases': bench.prepare(req['out_dir'], req['rows'], req['variants'], req['protocols'])}
            elif cmd == 'time':
                resp = {'samples_ns': bench.time(req['variant'], req['protocol'], req['op'], req['seconds'], req['warmup'])}
            elif cmd == 'memory':
                resp = bench.memory(req['variant'], req['protocol'])
            else:
                raise ValueError('unknown command %r' % (cmd,))
        except Exception as e:  # reported to the caller, which fails loudly
            resp = {'error': '%s: %s' % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(resp) + '\n')
        sys.stdout.flush()


def summarize(samples):
    return {
        'median_ns': statistics.median(samples),
        'mean_ns': statistics.fmean(samples),
        'min_ns': min(samples),
        'iterations': len(samples),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--serve', action='store_true')
    parser.add_argument('--out-dir')
    parser.add_argument('--seconds', type=float, default=1.0)
    parser.add_argument('--warmup', type=float, default=0.25)
    parser.add_argument('--protocols', default='2,4,5')
    parser.add_argument('--variants', default=','.join(VARIANTS))
    parser.add_argument('--rows', type=int, default=10000)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if not args.out_dir:
        parser.error('--out-dir is required without --serve')

    bench = Bench()
    protocols = [int(p) for p in args.protocols.split(',')]
    cases = bench.prepare(args.out_dir, args.rows, args.variants.split(','), protocols)
    for case in cases:
        for op in ('dumps', 'dumps fresh', 'loads'):
            case[op] = summarize(bench.time(case['variant'], case['protocol'], op, args.seconds, args.warmup))
        case['memory'] = bench.memory(case['variant'], case['protocol'])
    json.dump(dict(info(), rows=args.rows, cases=cases), sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
