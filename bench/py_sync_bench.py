"""The Python side of the queue and sync benchmarks (bench/queue.ts,
bench/sync.ts): billiard or multiprocessing, timed in this process.

    python3 bench/py_sync_bench.py --serve billiard|multiprocessing [--child-cpu N]

(--child-cpu: pins each child to CPU N once started) reads one JSON command a line on stdin and answers one JSON line on stdout,
so that bench/*.ts can alternate rounds between this driver and Node's
own measurements in the same run. Commands (times in seconds, except
`pingpong`'s nanoseconds):

    {"op": "info"}                                     -> {"python", "lib", "version", "start_method"}
    {"op": "queue", "kind": "int"|"str", "n": N, "batches": B, "maxsize": M}
        the child puts N items on a Queue, this process gets them; one time
        a batch, from the command to the child until the N-th get returned
    {"op": "lock", "n": N, "batches": B}               N x (acquire(); release()) of a Lock
    {"op": "value", "mode": M, "n": N, "batches": B}
        M: "get" / "set" (Value('i').value, synchronized by its RLock),
        "rawget" / "rawset" (RawValue('i').value)
    {"op": "pingpong", "n": N}
        N round trips with the child over two Semaphore(0): one time a
        round trip (two hand-offs), in ns
    {"op": "exit"}

    python3 bench/py_sync_bench.py --alone [--lib L] [--seconds S]

runs every measurement once and prints JSON (no Node involved).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from py_sync_targets import pingpong_serve, queue_serve  # noqa: E402


class Driver:
    def __init__(self, lib, child_cpu=None):
        self.child_cpu = child_cpu
        if lib == 'billiard':
            import billiard as mp
        elif lib == 'multiprocessing':
            import multiprocessing as mp
        else:
            raise SystemExit('lib must be billiard or multiprocessing, not %r' % lib)
        self.lib = lib
        self.mp = mp
        self.ctx = mp.get_context()
        self.version = getattr(mp, '__version__', None) or sys.version.split()[0]
        self.queues = {}
        self.pingpong = None
        self.children = []

    def info(self, cmd):
        return {
            'python': sys.executable,
            'python_version': sys.version.split()[0],
            'lib': self.lib,
            'version': self.version,
            'start_method': self.ctx.get_start_method(),
            'cpus': sorted(os.sched_getaffinity(0)),
            'child_cpus': [sorted(os.sched_getaffinity(p.pid)) for p, _ in self.children],
        }

    def _started(self, p):
        if self.child_cpu is not None:
            os.sched_setaffinity(p.pid, {self.child_cpu})

    def _queue(self, maxsize):
        if maxsize not in self.queues:
            q = self.ctx.Queue(maxsize)
            mine, theirs = self.ctx.Pipe()
            p = self.ctx.Process(target=queue_serve, args=(q, theirs), daemon=True)
            p.start()
            self._started(p)
            theirs.close()
            self.queues[maxsize] = (q, mine)
            self.children.append((p, lambda: mine.send(None)))
        return self.queues[maxsize]

    def do_queue(self, cmd):
        q, conn = self._queue(cmd.get('maxsize', 0))
        kind, n = cmd['kind'], cmd['n']
        get = q.get
        times = []
        for _ in range(cmd['batches']):
            t0 = time.perf_counter()
            conn.send(('produce', kind, n))
            for _ in range(n):
                get()
            times.append(time.perf_counter() - t0)
        return {'times': times}

    def do_lock(self, cmd):
        lock = self.ctx.Lock()
        acquire, release = lock.acquire, lock.release
        r = range(cmd['n'])
        times = []
        for _ in range(cmd['batches']):
            t0 = time.perf_counter()
            for _ in r:
                acquire()
                release()
            times.append(time.perf_counter() - t0)
        return {'times': times}

    def do_value(self, cmd):
        mode = cmd['mode']
        v = self.ctx.RawValue('i', 0) if mode.startswith('raw') else self.ctx.Value('i', 0)
        r = range(cmd['n'])
        times = []
        for _ in range(cmd['batches']):
            if mode.endswith('get'):
                t0 = time.perf_counter()
                for _ in r:
                    v.value
            else:
                t0 = time.perf_counter()
                for i in r:
                    v.value = i
            times.append(time.perf_counter() - t0)
        return {'times': times}

    def _pingpong(self):
        if self.pingpong is None:
            ping, pong, stop = self.ctx.Semaphore(0), self.ctx.Semaphore(0), self.ctx.Semaphore(0)
            p = self.ctx.Process(target=pingpong_serve, args=(ping, pong, stop), daemon=True)
            p.start()
            self._started(p)
            self.pingpong = (ping, pong)

            def finish():
                stop.release()
                ping.release()

            self.children.append((p, finish))
        return self.pingpong

    def do_pingpong(self, cmd):
        ping, pong = self._pingpong()
        release, acquire = ping.release, pong.acquire
        clock = time.perf_counter_ns
        samples = []
        append = samples.append
        for _ in range(cmd['n']):
            t0 = clock()
            release()
            acquire()
            append(clock() - t0)
        return {'samples': samples}

    def close(self):
        for p, finish in self.children:
            finish()
            p.join(10)
            if p.is_alive():
                p.terminate()
        self.children = []


def serve(lib, child_cpu):
    driver = Driver(lib, child_cpu)
    out = sys.stdout
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd['op']
            if op == 'exit':
                break
            result = getattr(driver, 'info' if op == 'info' else 'do_' + op)(cmd)
            out.write(json.dumps(result) + '\n')
            out.flush()
    finally:
        driver.close()


def alone(lib, seconds):
    driver = Driver(lib)
    report = {'info': driver.info({})}
    try:
        report['queue int items/s'] = 20000 / min(driver.do_queue({'kind': 'int', 'n': 20000, 'batches': 5})['times'])
        report['lock ops/s'] = 200000 / min(driver.do_lock({'n': 200000, 'batches': 5})['times'])
        for mode in ('get', 'set', 'rawget', 'rawset'):
            report['value %s ops/s' % mode] = 200000 / min(driver.do_value({'mode': mode, 'n': 200000, 'batches': 5})['times'])
        samples = sorted(driver.do_pingpong({'n': int(20000 * seconds)})['samples'])
        report['hand-off median us'] = samples[len(samples) // 2] / 2 / 1000
    finally:
        driver.close()
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == '--serve':
        serve(args[1], int(args[args.index('--child-cpu') + 1]) if '--child-cpu' in args else None)
    elif args and args[0] == '--alone':
        lib = args[args.index('--lib') + 1] if '--lib' in args else 'billiard'
        seconds = float(args[args.index('--seconds') + 1]) if '--seconds' in args else 1.0
        alone(lib, seconds)
    else:
        raise SystemExit(__doc__)
