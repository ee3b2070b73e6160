"""One measurement run of the process benchmark (bench/process.ts) for
billiard or multiprocessing.

    python3 bench/py_process_bench.py <billiard|multiprocessing> <spawn|fork|forkserver> <children> <reps> [rss]

Prints one JSON line: {"times": [ms per rep], "rss": [KiB], "pss": [KiB]}.
Each run starts with one untimed rep (imports, the fork server).
"""

import importlib
import json
import re
import sys
import time


# The targets live in a module of their own: billiard's spawn and forkserver
# children cannot find functions of the main script (spec/api.md, "spawn quirk").
from py_process_targets import hello, hello_then_idle


def memory(pid):
    with open('/proc/%d/status' % pid) as f:
        rss = int(re.search(r'VmRSS:\s+(\d+)', f.read()).group(1))
    with open('/proc/%d/smaps_rollup' % pid) as f:
        pss = int(re.search(r'Pss:\s+(\d+)', f.read()).group(1))
    return rss, pss


def once(ctx, n, rss):
    t0 = time.perf_counter()
    procs, ends = [], []
    for _ in range(n):
        a, b = ctx.Pipe()
        p = ctx.Process(target=hello_then_idle if rss else hello, args=(b,))
        p.start()
        b.close()
        procs.append(p)
        ends.append(a)
    for a in ends:
        a.recv()
    ms = (time.perf_counter() - t0) * 1000
    mem = [memory(p.pid) for p in procs] if rss else []
    for a in ends:
        if rss:
            # A forked child holds a copy of this end too, so closing it is no EOF there.
            a.send('bye')
        a.close()
    for p in procs:
        p.join()
    return ms, mem


def main():
    lib, method, n, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rss = len(sys.argv) > 5 and sys.argv[5] == 'rss'
    ctx = importlib.import_module(lib).get_context(method)
    once(ctx, n, rss)
    out = {'times': [], 'rss': [], 'pss': []}
    for _ in range(reps):
        ms, mem = once(ctx, n, rss)
        out['times'].append(ms)
        for r, p in mem:
            out['rss'].append(r)
            out['pss'].append(p)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
