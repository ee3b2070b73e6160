"""A real billiard Pool with Node workers (compat/billiard_ts.py's NodePool).

    /usr/bin/python3 examples/node_pool.py      # any python3 that can import billiard

The pool is billiard's own: timeouts, restarts and callbacks work as they do
for Python workers. A Node task is named '<module>#<export>'; in a pool that
mixes both languages, a Python function with a registered Node
implementation runs in either kind of worker.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'compat'))  # an installed billiard-ts: node_modules/billiard-ts/compat

from billiard_ts import NodePool, node_task  # noqa: E402

import py_tasks  # noqa: E402  (this directory: the script's own)

TASKS = os.path.join(HERE, 'node-tasks.mjs')

if __name__ == '__main__':
    with NodePool(processes=2, soft_timeout=10, timeout=20) as pool:
        print(pool.map(node_task(TASKS + '#square'), [1, 2, 3, 4, 5]))
        print(pool.apply(node_task(TASKS + '#greet'), ('billiard',), {'greeting': 'hi'}).split(',')[0])

    # One Node worker beside one Python worker: py_tasks.square runs in both.
    with NodePool(processes=2, node_processes=1, node_tasks={py_tasks.square: TASKS + '#square'}) as pool:
        print(pool.map(py_tasks.square, range(10)))
