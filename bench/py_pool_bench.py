"""The Python side of the pool benchmark (bench/pool.ts): billiard's or
multiprocessing's Pool with the 'fork' or 'spawn' start method, timed in
this process.

    python3 bench/py_pool_bench.py --serve billiard|multiprocessing fork|spawn

reads one JSON command a line on stdin and answers one JSON line on stdout,
so that bench/pool.ts can alternate rounds between this driver and the
others of the same run. Times are in seconds (time.perf_counter()).

    {"op": "info"}  -> {"python", "python_version", "lib", "version", "method"}
    {"op": "cycle", "processes": P, "map_n": N, "map1_n": N, "apply_n": N,
     "row_seconds": S, "max_reps": R, "rss": true|false, "warm": true|false,
     "extra_starts": K}
        first K short pool lives (start, 0.05 s idle, terminate: the lists
        start_extra and terminate_extra), then one pool's life, each
        measure on the same pool:
        start      ctx.Pool(P) until apply_async(noop, (0,)).get() returned
        rss        (when asked) VmRSS in KiB of each worker, once
                   map(noop, range(20), chunksize=1) ran and 0.1 s passed
        (warm)     when asked: before each of the next three rows, the row
                   once outside its samples: map at full size (its time is
                   map_cold), map1 and apply at a tenth of their sizes
        map        map(square, range(map_n)), default chunksize
        map1       map(square, range(map1_n), chunksize=1)
        apply      apply_async(square, (i,)) for i in range(apply_n), then
                   get() of each, in order
        terminate  after 0.05 s idle: terminate() + join()
        map, map1 and apply are repeated while the row has taken less than
        row_seconds (at least once, at most max_reps times); the answer
        has a list of times for each, a number for start and terminate.
    {"op": "exit"}

    python3 bench/py_pool_bench.py --alone [--lib L] [--method M] [--rounds R]

runs R cycles (default 3) and prints their medians as JSON, no Node
involved.

The task functions are this module's, imported under its own name
(py_pool_bench.square), not __main__'s: billiard's spawn children cannot
find functions of the main script.
"""

import json
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
INSTALL_HINT = 'apt-get install -y python3-billiard'


def square(x):
    return x * x


def noop(x):
    return x


def vmrss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return None


def uss_kib(pid):
    """A process's private memory (USS) in KiB: the pages no other process maps."""
    total = 0
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.startswith(('Private_Clean:', 'Private_Dirty:')):
                total += int(line.split()[1])
    return total


def load_lib(lib):
    if lib == 'billiard':
        try:
            import billiard as mp
        except ImportError as e:
            raise SystemExit('%s cannot import billiard (%s); on Debian, as root: %s' % (sys.executable, e, INSTALL_HINT))
    elif lib == 'multiprocessing':
        import multiprocessing as mp
    else:
        raise SystemExit('lib must be billiard or multiprocessing, not %r' % lib)
    return mp


class Driver:
    def __init__(self, lib, method):
        if BENCH_DIR not in sys.path:
            sys.path.insert(0, BENCH_DIR)
        import py_pool_bench as targets  # this file as a module: its functions pickle as py_pool_bench.<name>

        self.targets = targets
        self.mp = load_lib(lib)
        self.lib = lib
        self.method = method
        self.ctx = self.mp.get_context(method)
        self.version = getattr(self.mp, '__version__', None) or sys.version.split()[0]

    def info(self, cmd):
        return {
            'python': sys.executable,
            'python_version': sys.version.split()[0],
            'lib': self.lib,
            'version': self.version,
            'method': self.ctx.get_start_method(),
        }

    @staticmethod
    def _repeat(fn, row_seconds, max_reps):
        times = []
        while True:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if sum(times) >= row_seconds or len(times) >= max_reps:
                return times

    def cycle(self, cmd):
        square, noop = self.targets.square, self.targets.noop
        processes = cmd.get('processes', 2)
        row_seconds = cmd.get('row_seconds', 0.0)
        max_reps = cmd.get('max_reps', 1)
        map_items = list(range(cmd['map_n']))
        map1_items = list(range(cmd['map1_n']))
        apply_n = cmd['apply_n']
        out = {'start_extra': [], 'terminate_extra': []}

        # Short pool lives first (start, 0.05 s idle, terminate), for more samples of those two rows.
        for _ in range(cmd.get('extra_starts', 0)):
            t0 = time.perf_counter()
            pool = self.ctx.Pool(processes)
            pool.apply_async(noop, (0,)).get()
            out['start_extra'].append(time.perf_counter() - t0)
            time.sleep(0.05)
            t0 = time.perf_counter()
            pool.terminate()
            pool.join()
            out['terminate_extra'].append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        pool = self.ctx.Pool(processes)
        pool.apply_async(noop, (0,)).get()
        out['start'] = time.perf_counter() - t0
        try:
            if cmd.get('rss'):
                pool.map(noop, range(20), chunksize=1)
                time.sleep(0.1)
                out['rss_kib'] = [vmrss_kib(p.pid) for p in pool._pool]
                out['uss_kib'] = [uss_kib(p.pid) for p in pool._pool]

            def do_map():
                r = pool.map(square, map_items)
                assert len(r) == len(map_items) and r[-1] == map_items[-1] ** 2

            def do_map1():
                r = pool.map(square, map1_items, chunksize=1)
                assert len(r) == len(map1_items) and r[-1] == map1_items[-1] ** 2

            def do_apply():
                results = [pool.apply_async(square, (i,)) for i in range(apply_n)]
                last = None
                for r in results:
                    last = r.get()
                assert last == (apply_n - 1) ** 2

            # As the Node drivers do: each row first runs once outside its samples, map at full
            # size (its time is map_cold), map1 and apply at a tenth of their sizes.
            warm = cmd.get('warm', False)
            if warm:
                out['map_cold'] = self._repeat(do_map, 0, 1)[0]
            out['map'] = self._repeat(do_map, row_seconds, max_reps)
            if warm:
                pool.map(square, map1_items[:max(1, len(map1_items) // 10)], chunksize=1)
            out['map1'] = self._repeat(do_map1, row_seconds, max_reps)
            if warm:
                for r in [pool.apply_async(square, (i,)) for i in range(max(1, apply_n // 10))]:
                    r.get()
            out['apply'] = self._repeat(do_apply, row_seconds, max_reps)
            time.sleep(0.05)
        finally:
            t0 = time.perf_counter()
            pool.terminate()
            pool.join()
            out['terminate'] = time.perf_counter() - t0
        return out


def serve(lib, method):
    driver = Driver(lib, method)
    out = sys.stdout
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd['op']
        if op == 'exit':
            break
        try:
            result = driver.info(cmd) if op == 'info' else driver.cycle(cmd)
        except Exception as e:  # answered, so that the Node side reports it
            result = {'error': '%s: %s' % (type(e).__name__, e)}
        out.write(json.dumps(result) + '\n')
        out.flush()


def alone(lib, method, rounds):
    driver = Driver(lib, method)
    cmd = {'map_n': 100000, 'map1_n': 10000, 'apply_n': 10000, 'rss': True, 'warm': True}
    cycles = [driver.cycle(cmd) for _ in range(rounds)]

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    print(json.dumps({
        'info': driver.info({}),
        'start ms': median([c['start'] for c in cycles]) * 1000,
        'map items/s': cmd['map_n'] / median([min(c['map']) for c in cycles]),
        'map chunksize 1 items/s': cmd['map1_n'] / median([min(c['map1']) for c in cycles]),
        'apply_async tasks/s': cmd['apply_n'] / median([min(c['apply']) for c in cycles]),
        'terminate ms': median([c['terminate'] for c in cycles]) * 1000,
        'worker rss KiB': median([x for c in cycles for x in c['rss_kib']]),
        'worker uss KiB': median([x for c in cycles for x in c['uss_kib']]),
    }, indent=2))


def option(args, name, default):
    return args[args.index(name) + 1] if name in args else default


if __name__ == '__main__':
    args = sys.argv[1:]
    if len(args) >= 3 and args[0] == '--serve':
        serve(args[1], args[2])
    elif args and args[0] == '--alone':
        alone(option(args, '--lib', 'billiard'), option(args, '--method', 'fork'), int(option(args, '--rounds', '3')))
    else:
        raise SystemExit(__doc__)
