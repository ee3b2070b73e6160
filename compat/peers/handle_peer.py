"""Descriptor passing with a billiard-ts process: Python's
reduction.send_handle/recv_handle on a Connection over the AF_UNIX socket
the test hands this process as descriptor 3.

    python handle_peer.py LIB MODE

LIB is `billiard` or `multiprocessing` (whose reduction module is used);
MODE is `recv` (take a descriptor from Node, send back what it reads from
it) or `send` (send Node the read end of a pipe holding a greeting, then
wait for Node's 'done'). Prints one JSON line once ready.
"""
import importlib
import json
import os
import sys


def main():
    lib, mode = sys.argv[1], sys.argv[2]
    connection = importlib.import_module(lib + '.connection')
    reduction = importlib.import_module(lib + '.reduction')
    conn = connection.Connection(3)
    print(json.dumps({'python': sys.version.split()[0], 'lib': lib, 'pid': os.getpid()}), flush=True)
    if mode == 'recv':
        fd = reduction.recv_handle(conn)
        data = os.read(fd, 1000)
        os.close(fd)
        conn.send(('read', data))
    elif mode == 'send':
        r, w = os.pipe()
        os.write(w, ('hello from ' + lib + ' ' + sys.version.split()[0]).encode())
        os.close(w)
        reduction.send_handle(conn, r, os.getppid())
        os.close(r)
        assert conn.recv() == 'done'
    else:
        raise SystemExit('unknown mode ' + mode)


if __name__ == '__main__':
    main()
