"""Targets of bench/py_process_bench.py (an importable module, see there)."""


def hello(conn):
    conn.send('hi')
    conn.close()


def hello_then_idle(conn):
    """Sends one message, then idles until the parent says 'bye' (for RSS)."""
    conn.send('hi')
    conn.recv()
