"""The Python half of examples/python-child.ts: a billiard child that squares
the numbers its Node parent sends until it gets None."""
from billiard import current_process


def squares(conn):
    me = current_process().name
    while True:
        n = conn.recv()
        if n is None:
            break
        conn.send((me, n, n * n))
    conn.close()
