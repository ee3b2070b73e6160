"""Python tasks for examples/pool-python.ts (a Node pool with Python workers)
and examples/node_pool.py (the Python half of a mixed billiard pool)."""


def score(text, weight=1):
    """A stand-in for the Python-only work a Node service hands to Python (a model, numpy...)."""
    return weight * sum(ord(c) for c in text) % 97


def square(x):
    return x * x
