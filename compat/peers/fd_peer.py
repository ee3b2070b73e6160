"""The Python end of a billiard-ts Pipe() inherited by a spawned Python child
as a file descriptor (test/connection-fd-child.test.ts).

    python fd_peer.py --impl billiard|mp --fd N --mode serve|read|write
                      [--big N] [--burst N]

It first prints one JSON line, {"python": version, "nonblocking": bool},
where "nonblocking" tells whether the fd arrived with O_NONBLOCK set, then
makes the fd blocking, as the ends of Python's own Pipe() are: billiard-ts
wraps both ends of its Pipe() in libuv streams, and libuv sets O_NONBLOCK
on the open file description, which the child shares; Python's Connection
on a non-blocking fd raises BlockingIOError from recv().

Modes, all built on conn_peer.serve() (see conn_peer.py for the commands):

  serve   duplex end: conn_peer's command loop, replies sent on the fd.
  read    read end of a one-way pipe: the commands that only read ('check',
          'recv_big', 'expect_burst', 'exit'); each reply is printed as one
          JSON line on stdout instead of being sent.
  write   write end of a one-way pipe: answers, unasked, ('corpus', 'builtin'),
          ('corpus', 'stdlib'), ('big', BIG) and ('burst', BURST), then closes
          the fd (the reader then gets EOF).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conn_peer  # noqa: E402  (also puts fixtures/ on sys.path)


class RepliesToStdout:
    """A read-only Connection whose send() prints the reply as a JSON line."""

    def __init__(self, conn):
        self.conn = conn
        self.recv, self.recv_bytes, self.close = conn.recv, conn.recv_bytes, conn.close

    def send(self, obj):
        print(json.dumps(obj), flush=True)


class Scripted:
    """A write-only Connection whose recv() returns a fixed list of commands."""

    def __init__(self, conn, commands):
        self.commands = list(commands)
        self.send, self.send_bytes, self.close = conn.send, conn.send_bytes, conn.close

    def recv(self):
        return self.commands.pop(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--impl', choices=['billiard', 'mp'], required=True)
    ap.add_argument('--fd', type=int, required=True)
    ap.add_argument('--mode', choices=['serve', 'read', 'write'], required=True)
    ap.add_argument('--big', type=int, default=8 * 1024 * 1024)
    ap.add_argument('--burst', type=int, default=10000)
    args = ap.parse_args()
    if args.impl == 'billiard':
        from billiard.connection import Connection
    else:
        from multiprocessing.connection import Connection
    nonblocking = not os.get_blocking(args.fd)
    print(json.dumps({'python': sys.version.split()[0], 'nonblocking': nonblocking}), flush=True)
    if args.mode == 'serve':
        conn_peer.serve(Connection(args.fd))
    elif args.mode == 'read':
        conn_peer.serve(RepliesToStdout(Connection(args.fd, writable=False)))
    else:
        commands = [('corpus', 'builtin'), ('corpus', 'stdlib'), ('big', args.big), ('burst', args.burst), ('exit',)]
        conn_peer.serve(Scripted(Connection(args.fd, readable=False), commands))


if __name__ == '__main__':
    main()
