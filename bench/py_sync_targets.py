"""Child targets of the queue and sync benchmarks (bench/queue.ts,
bench/sync.ts), for Python children of a Node parent (``pyfunc`` targets,
started through billiard's spawn with bench/ on the path) and of the Python
driver, bench/py_sync_bench.py (billiard or multiprocessing).

Each mirrors a target of bench/sync-targets.ts line for line, so that the
only difference between two pairs is the runtime on each end.
"""


def make_item(kind, i):
    """The i-th item of a batch: a small int or a short str."""
    return i if kind == 'int' else 'item-%d' % i


def queue_serve(q, conn):
    """Serves batches on `q` until the driver sends None on `conn`:
    ('produce', kind, n) puts n items; ('consume', n) gets n items, then
    answers 'done'."""
    put = q.put
    get = q.get
    while True:
        cmd = conn.recv()
        if cmd is None:
            break
        if cmd[0] == 'produce':
            kind, n = cmd[1], cmd[2]
            if kind == 'int':
                for i in range(n):
                    put(i)
            else:
                for i in range(n):
                    put('item-%d' % i)
        else:
            for _ in range(cmd[1]):
                get()
            conn.send('done')
    # Everything put has been got by the driver: nothing left to flush.
    conn.close()


def pingpong_serve(ping, pong, stop):
    """The other end of a hand-off: takes `ping`, gives `pong`, until `stop`
    can be taken after a ping."""
    acquire = ping.acquire
    release = pong.release
    stop_acquire = stop.acquire
    while True:
        acquire()
        if stop_acquire(False):
            break
        release()
