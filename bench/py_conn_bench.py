"""billiard side of the connection benchmark (bench/connection.ts starts it).

Three modes:

  py_conn_bench.py --echo --fd N
      the echo child: wraps the inherited descriptor N in billiard's
      Connection and serves the commands below until ('exit',) or end of file.
      bench/conn-echo-child.mjs is the same child in Node.

  py_conn_bench.py --serve --child python|node [--child-prefix JSON]
                   [--node-cmd JSON]
      the billiard driver: starts one echo child (this script --echo, or the
      Node child given by --node-cmd) on one end of billiard.Pipe(), passed
      with pass_fds, under the command prefix --child-prefix (e.g.
      ["taskset", "-c", "1"]); then reads one JSON request per line on stdin
      and answers one JSON line on stdout, so the caller can interleave its
      rounds with its own:
        {"cmd": "info"}
        {"cmd": "rtt", "transport": "pipe"|"tcp", "payload": "obj"|"bytes",
         "seconds": S, "warmup": W}                 -> {"samples_ns": [...]}
        {"cmd": "tput", "transport": T, "dir": "send"|"recv", "size": B,
         "count": K, "seconds": S, "warmup": W}     -> {"batches": [[bytes, ns], ...]}
        {"cmd": "connect", "seconds": S, "warmup": W, "max_count": M}
                                                    -> {"samples_ns": [...]}
        {"cmd": "exit"}

  py_conn_bench.py --alone [--seconds 1] [--warmup 0.25]
      billiard driver and billiard child only; prints one JSON document.

Commands a child serves (pickled tuples on the connection):
  ('info',)              -> a dict: impl, runtime, pid, cpus
  ('echo_obj',)          echo recv() -> send() until None arrives
  ('echo_bytes',)        echo recv_bytes() -> send_bytes() until b'' arrives
  ('sink', K)            recv_bytes() K times -> ('done', total bytes)
  ('source', K, B)       send_bytes() K messages of B bytes
  ('tcp', address)       Client(address), serve the same commands on it until
                         ('back',), then close it and continue here
  ('listen', authkey)    Listener(('127.0.0.1', 0), authkey=authkey)
                         -> ('listening', address)
  ('accept', N)          accept() N connections (the handshake runs in
                         accept), closing each at once -> ('accepted', N)
  ('unlisten',)          close the listener -> ('unlistened',)
  ('exit',)

Times are time.perf_counter_ns() around each round trip, batch or connect,
taken by the driver. The garbage collector stays on.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import billiard
from billiard import Pipe
from billiard.connection import Client, Connection, Listener

OBJ = {'id': 1, 'name': 'x'}
BYTES64 = b'x' * 64
AUTHKEY = b'billiard-ts connection benchmark'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def allowed_cpus():
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Cpus_allowed_list:'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return ','.join(str(c) for c in sorted(os.sched_getaffinity(0)))


def info():
    return {'impl': 'billiard %s' % billiard.__version__, 'runtime': 'Python %s' % sys.version.split()[0],
            'executable': sys.executable, 'pid': os.getpid(), 'cpus': allowed_cpus()}


# ---------------------------------------------------------------- the echo child

_state = {'listener': None, 'sources': {}}


def serve(conn):
    """Serves commands on conn; returns 'exit' or 'back'."""
    recv, send = conn.recv, conn.send
    while True:
        try:
            cmd = recv()
        except EOFError:
            return 'exit'
        op = cmd[0]
        if op == 'info':
            send(info())
        elif op == 'echo_obj':
            while True:
                m = recv()
                if m is None:
                    break
                send(m)
        elif op == 'echo_bytes':
            recv_bytes, send_bytes = conn.recv_bytes, conn.send_bytes
            while True:
                m = recv_bytes()
                if not m:
                    break
                send_bytes(m)
        elif op == 'sink':
            recv_bytes = conn.recv_bytes
            total = 0
            for _ in range(cmd[1]):
                total += len(recv_bytes())
            send(('done', total))
        elif op == 'source':
            count, size = cmd[1], cmd[2]
            buf = _state['sources'].get(size)
            if buf is None:
                buf = _state['sources'][size] = b'x' * size
            send_bytes = conn.send_bytes
            for _ in range(count):
                send_bytes(buf)
        elif op == 'tcp':
            c = Client(tuple(cmd[1]))
            how = serve(c)
            c.close()
            if how == 'exit':
                return 'exit'
        elif op == 'back':
            return 'back'
        elif op == 'listen':
            _state['listener'] = Listener(('127.0.0.1', 0), authkey=bytes(cmd[1]))
            send(('listening', _state['listener'].address))
        elif op == 'accept':
            accept = _state['listener'].accept
            for _ in range(cmd[1]):
                accept().close()
            send(('accepted', cmd[1]))
        elif op == 'unlisten':
            if _state['listener'] is not None:
                _state['listener'].close()
                _state['listener'] = None
            send(('unlistened',))
        elif op == 'exit':
            return 'exit'
        else:
            raise ValueError('unknown command %r' % (op,))


def echo_main(fd):
    conn = Connection(fd)
    try:
        serve(conn)
    finally:
        if _state['listener'] is not None:
            _state['listener'].close()
        conn.close()


# ---------------------------------------------------------------- the driver

class Driver:
    """One billiard driver and its echo child, over a Pipe and (on demand) TCP."""

    def __init__(self, child, child_prefix=(), node_cmd=None):
        self.pipe, theirs = Pipe()
        fd = theirs.fileno()
        if child == 'python':
            cmd = [sys.executable, os.path.abspath(__file__), '--echo', '--fd', str(fd)]
        else:
            cmd = list(node_cmd) + ['--fd', str(fd)]
        self.proc = subprocess.Popen(list(child_prefix) + cmd, pass_fds=[fd], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, cwd=REPO_ROOT)
        theirs.close()
        self.conn = self.pipe
        self.transport = 'pipe'
        self.listener = None  # for the TCP transport
        self.connect_address = None
        self.connect_estimate = None

    def use(self, transport):
        if transport == self.transport:
            return
        if transport == 'tcp':
            if self.listener is None:
                self.listener = Listener(('127.0.0.1', 0))
            self.pipe.send(('tcp', self.listener.address))
            self.conn = self.listener.accept()
        else:
            self.conn.send(('back',))
            self.conn.close()
            self.conn = self.pipe
        self.transport = transport

    def info(self):
        self.conn.send(('info',))
        return {'driver': info(), 'child': self.conn.recv()}

    def rtt(self, transport, payload, seconds, warmup):
        self.use(transport)
        c = self.conn
        perf = time.perf_counter_ns
        if payload == 'obj':
            c.send(('echo_obj',))
            send, recv, msg, stop = c.send, c.recv, OBJ, None
        else:
            c.send(('echo_bytes',))
            send, recv, msg, stop = c.send_bytes, c.recv_bytes, BYTES64, b''
        end = perf() + int(warmup * 1e9)
        while perf() < end:
            send(msg)
            recv()
        samples = []
        append = samples.append
        end = perf() + int(seconds * 1e9)
        while True:
            t0 = perf()
            send(msg)
            recv()
            t1 = perf()
            append(t1 - t0)
            if t1 >= end and len(samples) >= 2:
                break
        send(stop)
        return {'samples_ns': samples}

    def _batch(self, direction, size, count, buf):
        c = self.conn
        t0 = time.perf_counter_ns()
        if direction == 'send':
            c.send(('sink', count))
            send_bytes = c.send_bytes
            for _ in range(count):
                send_bytes(buf)
            reply = c.recv()
            total = reply[1]
        else:
            c.send(('source', count, size))
            recv_bytes = c.recv_bytes
            total = 0
            for _ in range(count):
                total += len(recv_bytes())
        t1 = time.perf_counter_ns()
        if total != size * count:
            raise RuntimeError('%d bytes arrived, %d expected' % (total, size * count))
        return total, t1 - t0

    def tput(self, transport, direction, size, count, seconds, warmup):
        self.use(transport)
        buf = b'x' * size
        perf = time.perf_counter_ns
        end = perf() + int(warmup * 1e9)
        while perf() < end:
            self._batch(direction, size, count, buf)
        batches = []
        end = perf() + int(seconds * 1e9)
        while not batches or perf() < end:
            batches.append(self._batch(direction, size, count, buf))
        return {'batches': batches}

    def _connects(self, n, samples):
        self.conn.send(('accept', n))
        perf = time.perf_counter_ns
        address = self.connect_address
        for _ in range(n):
            t0 = perf()
            c = Client(address, authkey=AUTHKEY)
            t1 = perf()
            c.close()
            if samples is not None:
                samples.append(t1 - t0)
        reply = self.conn.recv()
        if tuple(reply) != ('accepted', n):
            raise RuntimeError('unexpected reply %r' % (reply,))

    def connect(self, seconds, warmup, max_count):
        """Client(address, authkey) to the child's Listener; n per call from an estimate."""
        if self.connect_address is None:
            self.conn.send(('listen', AUTHKEY))
            reply = self.conn.recv()
            self.connect_address = tuple(reply[1])
        if self.connect_estimate is None:
            est = []
            self._connects(10, est)
            self.connect_estimate = max(1, sorted(est)[len(est) // 2])
        else:
            self._connects(max(1, min(50, int(warmup * 1e9 / self.connect_estimate))), None)
        n = max(5, min(max_count, int(seconds * 1e9 / self.connect_estimate) + 1))
        samples = []
        self._connects(n, samples)
        return {'samples_ns': samples}

    def close(self):
        try:
            if self.connect_address is not None:
                self.conn.send(('unlisten',))
                self.conn.recv()
            self.use('pipe')
            self.pipe.send(('exit',))
        finally:
            self.pipe.close()
            if self.listener is not None:
                self.listener.close()
            self.proc.wait(timeout=10)


def serve_main(args):
    driver = Driver(args.child, json.loads(args.child_prefix), json.loads(args.node_cmd) if args.node_cmd else None)
    out = sys.stdout
    try:
        for line in sys.stdin:
            req = json.loads(line)
            cmd = req.pop('cmd')
            try:
                if cmd == 'exit':
                    break
                if cmd == 'info':
                    answer = driver.info()
                elif cmd == 'rtt':
                    answer = driver.rtt(**req)
                elif cmd == 'tput':
                    answer = driver.tput(req['transport'], req['dir'], req['size'], req['count'], req['seconds'], req['warmup'])
                elif cmd == 'connect':
                    answer = driver.connect(**req)
                else:
                    raise ValueError('unknown command %r' % (cmd,))
            except Exception as e:  # reported to the caller, which raises
                answer = {'error': '%s: %s' % (type(e).__name__, e)}
            out.write(json.dumps(answer) + '\n')
            out.flush()
    finally:
        driver.close()


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]


def alone_main(args):
    driver = Driver('python')
    result = {'info': driver.info()}
    try:
        for transport in ('pipe', 'tcp'):
            for payload in ('obj', 'bytes'):
                s = sorted(driver.rtt(transport, payload, args.seconds, args.warmup)['samples_ns'])
                result['rtt %s %s' % (transport, payload)] = {
                    'median_us': s[len(s) // 2] / 1e3, 'p99_us': s[int(len(s) * 0.99)] / 1e3, 'round_trips': len(s)}
            for direction in ('send', 'recv'):
                for size in (1024, 65536, 1048576):
                    count = {1024: 1024, 65536: 64, 1048576: 8}[size]
                    b = driver.tput(transport, direction, size, count, args.seconds / 2, args.warmup)['batches']
                    result['tput %s %s %d' % (transport, direction, size)] = {
                        'median_MBps': median([n / ns * 1e3 for n, ns in b]), 'batches': len(b)}
        driver.use('pipe')
        s = driver.connect(args.seconds, args.warmup, 2000)['samples_ns']
        result['connect+handshake'] = {'median_us': median(s) / 1e3, 'connects': len(s)}
    finally:
        driver.close()
    print(json.dumps(result, indent=2))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument('--echo', action='store_true')
    mode.add_argument('--serve', action='store_true')
    mode.add_argument('--alone', action='store_true')
    p.add_argument('--fd', type=int)
    p.add_argument('--child', choices=('python', 'node'), default='python')
    p.add_argument('--child-prefix', default='[]')
    p.add_argument('--node-cmd')
    p.add_argument('--seconds', type=float, default=1.0)
    p.add_argument('--warmup', type=float, default=0.25)
    args = p.parse_args()
    if args.echo:
        if args.fd is None:
            p.error('--echo needs --fd')
        echo_main(args.fd)
    elif args.serve:
        if args.child == 'node' and not args.node_cmd:
            p.error('--child node needs --node-cmd')
        serve_main(args)
    else:
        alone_main(args)


if __name__ == '__main__':
    main()
