"""billiard's own pool Worker, run for a billiard-ts Pool (Node) in a Python process.

A Pool made with `new Pool({ python: {...} })` starts each worker as a
Python child whose target is `run` here, with the worker's own job and
result queues (billiard SimpleQueues rebuilt from the pool's pipes, one pair
per worker as Celery's AsynPool gives them) and the pool's options. From
there it is billiard's code: the job tuples, ACK with the monotonic time and
the pid, READY with (True, value) or an ExceptionInfo, DEATH, exit 155 after
maxtasks, SIGUSR1 as the soft time limit (spec/pool.md section 8b).
"""

__all__ = ['run']


def run(inq, outq, synq, initializer, initargs, maxtasks, max_memory_per_child):
    from billiard.pool import Worker

    # sigprotection: billiard's own pool blocks signals around the job
    # read only so that its (forked) siblings keep a shared lock; these
    # queues are this worker's alone.
    Worker(
        inq, outq, synq,
        initializer=initializer, initargs=tuple(initargs),
        maxtasks=maxtasks,
        sigprotection=False,
        max_memory_per_child=max_memory_per_child,
    )()
