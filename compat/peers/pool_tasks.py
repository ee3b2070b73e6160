"""Python tasks for a billiard-ts Pool with Python workers (test/pool-python.test.ts)."""
import os
import time

from billiard.exceptions import SoftTimeLimitExceeded

_value = None


def init(value):
    global _value
    _value = value


def initialized(*_):
    return _value


def pid(*_):
    return os.getpid()


def sleep_and_clean_up(seconds):
    """Sleeps; the soft time limit interrupts it, and it returns what it cleaned up."""
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return 'cleaned up'
    return 'slept'


def die(code):
    os._exit(code)


def hog(mib):
    """Touches `mib` MiB (the worker's peak RSS grows), then frees them."""
    block = bytearray(mib * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block) // (1024 * 1024)


def scale(x, factor=1):
    return x * factor


def unpicklable():
    """A result pickle cannot write: billiard's worker answers MaybeEncodingError."""
    return lambda: None


def square_tagged(x):
    """`x * x` tagged with the language that ran it: the Python half of pool-node-tasks.ts's squareTagged."""
    return ('python', x * x)
