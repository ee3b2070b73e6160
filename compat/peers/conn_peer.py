"""A Python peer for the connection tests: billiard's or the standard
library's `multiprocessing.connection` on the other end of a billiard-ts
Connection.

    python conn_peer.py --impl billiard|mp --role server|client|fd
                        [--family AF_INET|AF_UNIX] [--address JSON] [--authkey HEX]
                        [--fd N] [--digest-check]

server: binds a Listener (prints {"address": ...} as one JSON line on
stdout), accepts one connection; client: connects with Client; fd: wraps an
inherited file descriptor in a Connection. Then it serves commands received
with recv() (tuples), answering with send() / send_bytes():

    ('echo', obj)            send(obj) back
    ('echo_bytes',)          recv_bytes(), send_bytes() of the same
    ('corpus', group)        send((name, value)) for each value of the fixture
                             corpus group ('builtin' or 'stdlib'), then ('done', n)
    ('check', group, n)      recv() n (name, value) pairs; reply with the names
                             whose value differs from the corpus value
    ('big', n)               send_bytes() of n pattern bytes
    ('recv_big',)            recv_bytes(); reply (length, sha256 hex)
    ('burst', n)             send(i) for i in range(n)
    ('expect_burst', n)      recv() n messages; reply (True, n) if they are 0..n-1 in order
    ('exit',)                close and exit 0
"""
import argparse
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'fixtures'))
sys.path.insert(0, HERE)

from pyequal import same  # noqa: E402  (re-exported: tests call conn_peer.same)
sys.setrecursionlimit(20000)

PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n):
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


def corpus(group):
    import make_pickle_fixtures as gen
    items = gen.builtin_corpus() if group == 'builtin' else gen.stdlib_corpus()
    return [(name, gen.canonical_strings(v)) for name, v in gen.unique_names(items)]


def serve(conn):
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        cmd = msg[0]
        if cmd == 'echo':
            conn.send(msg[1])
        elif cmd == 'echo_bytes':
            conn.send_bytes(conn.recv_bytes())
        elif cmd == 'corpus':
            items = corpus(msg[1])
            for name, value in items:
                conn.send((name, value))
            conn.send(('done', len(items)))
        elif cmd == 'check':
            expected = dict(corpus(msg[1]))
            bad = []
            for _ in range(msg[2]):
                name, value = conn.recv()
                if name not in expected or not same(expected[name], value):
                    bad.append(name)
            conn.send(bad)
        elif cmd == 'big':
            conn.send_bytes(pattern(msg[1]))
        elif cmd == 'recv_big':
            data = conn.recv_bytes()
            conn.send((len(data), hashlib.sha256(data).hexdigest()))
        elif cmd == 'burst':
            for i in range(msg[1]):
                conn.send(i)
        elif cmd == 'expect_burst':
            got = [conn.recv() for _ in range(msg[1])]
            conn.send((got == list(range(msg[1])), len(got)))
        elif cmd == 'exit':
            conn.close()
            return
        else:
            raise ValueError('unknown command %r' % (cmd,))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--impl', choices=['billiard', 'mp'], required=True)
    ap.add_argument('--role', choices=['server', 'client', 'fd'], required=True)
    ap.add_argument('--family')
    ap.add_argument('--address')
    ap.add_argument('--authkey')
    ap.add_argument('--fd', type=int)
    args = ap.parse_args()
    if args.impl == 'billiard':
        from billiard import connection
    else:
        from multiprocessing import connection
    authkey = bytes.fromhex(args.authkey) if args.authkey is not None else None
    address = json.loads(args.address) if args.address else None
    if isinstance(address, list):
        address = tuple(address)
    if args.role == 'server':
        listener = connection.Listener(address, family=args.family, authkey=authkey)
        bound = listener.address
        if isinstance(bound, bytes):
            bound = bound.decode('latin-1')
        print(json.dumps({'address': bound, 'python': sys.version.split()[0]}), flush=True)
        conn = listener.accept()
        serve(conn)
        if not (isinstance(listener.address, (str, bytes)) and listener.address[:1] in ('\0', b'\0') and args.impl == 'billiard'):
            listener.close()
    elif args.role == 'client':
        print(json.dumps({'python': sys.version.split()[0]}), flush=True)
        conn = connection.Client(address, family=args.family, authkey=authkey)
        serve(conn)
    else:
        print(json.dumps({'python': sys.version.split()[0]}), flush=True)
        serve(connection.Connection(args.fd))


if __name__ == '__main__':
    main()
