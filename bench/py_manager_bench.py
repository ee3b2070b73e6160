"""The Python side of the manager benchmark (bench/manager.ts): billiard's
SyncManager as a server, and as a client timed in this process.

    python3 bench/py_manager_bench.py --serve --authkey HEX

starts a billiard SyncManager server (``m.start()``: a child process) on
('127.0.0.1', <free port>), then answers ``{"op": "address"}`` lines with
``{"address": [host, port], "pid": P}`` (P: the server process) until stdin
is closed (or an ``{"op": "exit"}`` line), and shuts the manager down.

    python3 bench/py_manager_bench.py --client --authkey HEX

reads one JSON command a line on stdin and answers one JSON line on stdout
(times in seconds), so that bench/manager.ts can alternate rounds between
this client and its own in the same run:

    {"op": "info"}                   -> {"python", "python_version", "lib", "version"}
    {"op": "connect", "address": [host, port]}
        connects a SyncManager client to that server and makes one dict
        proxy and one Queue proxy on it -> {"ok": true}
    {"op": "dict", "n": N, "batches": B}
        N x (d['k'] = i; d['k']): 2 N round trips a batch -> {"times": [...]}
    {"op": "queue", "n": N, "batches": B}
        N x (q.put(i); q.get()): 2 N round trips a batch -> {"times": [...]}
    {"op": "exit"}

A client connects to one server at a time; bench/manager.ts runs one client
process per server.
"""

import json
import sys
import time

import billiard
from billiard.managers import SyncManager


def serve(authkey):
    m = SyncManager(address=('127.0.0.1', 0), authkey=authkey)
    m.start()
    host, port = m.address
    try:
        for line in sys.stdin:
            op = json.loads(line).get('op')
            if op == 'exit':
                break
            if op == 'address':
                answer = {'address': [host, port], 'pid': m._process.pid}
            else:
                answer = {'error': 'unknown op %r' % op}
            sys.stdout.write(json.dumps(answer) + '\n')
            sys.stdout.flush()
    finally:
        m.shutdown()


class Client:
    def __init__(self, authkey):
        self.authkey = authkey
        self.manager = None
        self.d = None
        self.q = None

    def info(self, cmd):
        return {
            'python': sys.executable,
            'python_version': sys.version.split()[0],
            'lib': 'billiard',
            'version': billiard.__version__,
        }

    def do_connect(self, cmd):
        host, port = cmd['address']
        m = SyncManager(address=(host, port), authkey=self.authkey)
        m.connect()
        self.manager = m
        self.d = m.dict()
        self.q = m.Queue()
        return {'ok': True}

    def do_dict(self, cmd):
        d = self.d
        r = range(cmd['n'])
        times = []
        for _ in range(cmd['batches']):
            t0 = time.perf_counter()
            for i in r:
                d['k'] = i
                d['k']
            times.append(time.perf_counter() - t0)
        return {'times': times}

    def do_queue(self, cmd):
        q = self.q
        put, get = q.put, q.get
        r = range(cmd['n'])
        times = []
        for _ in range(cmd['batches']):
            t0 = time.perf_counter()
            for i in r:
                put(i)
                get()
            times.append(time.perf_counter() - t0)
        return {'times': times}

    def close(self):
        # Release the proxies while the server is still there.
        self.d = self.q = None
        self.manager = None


def client(authkey):
    c = Client(authkey)
    out = sys.stdout
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd['op']
            if op == 'exit':
                break
            try:
                result = getattr(c, 'info' if op == 'info' else 'do_' + op)(cmd)
            except Exception as e:  # reported to bench/manager.ts as an error answer
                result = {'error': '%s: %s' % (type(e).__name__, e)}
            out.write(json.dumps(result) + '\n')
            out.flush()
    finally:
        c.close()


if __name__ == '__main__':
    args = sys.argv[1:]
    key = bytes.fromhex(args[args.index('--authkey') + 1]) if '--authkey' in args else b'bench-key'
    if args and args[0] == '--serve':
        serve(key)
    elif args and args[0] == '--client':
        client(key)
    else:
        raise SystemExit(__doc__)
