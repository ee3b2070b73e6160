"""The Python side of the pool-interop benchmark (bench/pool-interop.ts).

    python3 bench/py_pool_interop.py --serve billiard|nodepool-node|nodepool-python TARGETS_MJS

reads one JSON command a line on stdin, answers one JSON line on stdout:

    {"op": "start", "processes": P}   a pool of P workers, and one task's result
        billiard          billiard's own Pool (its default context: fork on Linux)
        nodepool-node     compat/billiard_ts.py's NodePool, every worker Node
        nodepool-python   the same NodePool class with node_processes=0: Python workers
        relay-node        relay mode (spec/pool.md section 8a.5), for comparison:
                          a billiard Pool (spawn) whose every worker is a Python
                          relay holding the pool's locks, copying one job at a
                          time to a Node child (billiard-ts's own pool worker
                          on private pipes) and its replies back. A prototype
                          for measuring only: its ACKs carry the Node child's
                          pid, so time limits and lost-worker accounting would
                          not work with it
    {"op": "apply", "n": N}   apply_async(square, (i,)) for i in range(N), then
        get() of each in order; answers {"seconds": ...} (time.perf_counter())
    {"op": "exit"}            terminates the pool and exits

square is py_pool_bench.square for Python workers and TARGETS_MJS#square (a
plain JavaScript module) for Node ones.
"""

import json
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH_DIR)
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), 'compat'))


def _relay(inq, outq, worker_url):
    """The body of a relay worker (relay-node): see the module doc."""
    import pickle
    import billiard
    import billiard_ts
    inq._writer.close()
    outq._reader.close()
    ctx = billiard.get_context('spawn')
    jobs, replies = ctx.SimpleQueue(), ctx.SimpleQueue()
    child = billiard_ts.NodeProcess(target=worker_url, args=(jobs, replies, None, [], None), entry='dist', daemon=True)
    child.start()
    jobs._reader.close()
    replies._writer.close()
    while True:
        with inq._rlock:
            job = inq._reader.recv_bytes()
        jobs._writer.send_bytes(job)
        if pickle.loads(job) is None:
            break
        while True:
            frame = replies._reader.recv_bytes()
            with outq._wlock:
                outq._writer.send_bytes(frame)
            if pickle.loads(frame)[0] in (1, 4):  # READY or DEATH: the job is done
                break
    child.join(5)


class Driver:
    def __init__(self, kind, targets):
        import py_pool_bench
        self.kind = kind
        self.pool = None
        if kind in ('nodepool-node', 'relay-node'):
            import billiard_ts
            self.square = billiard_ts.node_task(targets + '#square')
        else:
            self.square = py_pool_bench.square

    def start(self, cmd):
        processes = cmd['processes']
        t0 = time.perf_counter()
        if self.kind == 'billiard':
            import billiard
            self.pool = billiard.Pool(processes)
        elif self.kind == 'relay-node':
            self.pool = _relay_pool_class()(processes, context=__import__('billiard').get_context('spawn'))
        else:
            import billiard_ts
            node = processes if self.kind == 'nodepool-node' else 0
            self.pool = billiard_ts.NodePool(processes, node_processes=node, entry='dist')
        self.pool.apply_async(self.square, (0,)).get()
        return {'seconds': time.perf_counter() - t0}

    def apply(self, cmd):
        square = self.square
        pool = self.pool
        t0 = time.perf_counter()
        results = [pool.apply_async(square, (i,)) for i in range(cmd['n'])]
        for r in results:
            r.get()
        return {'seconds': time.perf_counter() - t0}


def _relay_pool_class():
    import billiard_ts
    from billiard.pool import Pool

    script = billiard_ts.child_command('node', None, None, 'dist')[-1]
    worker_url = billiard_ts._package_module_url(script, os.path.join('pool', 'worker')) + '#poolWorker'

    class RelayPool(Pool):
        def WorkerProcess(self, worker):
            # by its module's name: billiard's spawn children cannot find functions of the main script
            import py_pool_interop
            proc = self._ctx.Process(target=py_pool_interop._relay, args=(worker.inq, worker.outq, worker_url))
            return worker.contribute_to_object(proc)

    return RelayPool


def serve(kind, targets):
    driver = Driver(kind, targets)
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd['op'] == 'exit':
                break
            try:
                result = getattr(driver, cmd['op'])(cmd)
            except Exception as e:  # answered, so that the Node side reports it
                result = {'error': '%s: %s' % (type(e).__name__, e)}
            sys.stdout.write(json.dumps(result) + '\n')
            sys.stdout.flush()
    finally:
        if driver.pool is not None:
            driver.pool.terminate()
            driver.pool.join()


if __name__ == '__main__':
    if len(sys.argv) != 4 or sys.argv[1] != '--serve':
        raise SystemExit(__doc__)
    serve(sys.argv[2], sys.argv[3])
