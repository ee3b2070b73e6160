"""billiard's own pool Worker, run for a billiard-ts Pool (Node) in a Python process.

A Pool made with `new Pool({ python: {...} })` starts each worker as a
Python child whose target is `run` here, with the worker's own job and
result queues (billiard SimpleQueues rebuilt from the pool's pipes, one pair
per worker as Celery's AsynPool gives them) and the pool's options. From
there it is billiard's code: the job tuples, ACK with the monotonic time and
the pid, READY with (True, value) or an ExceptionInfo, DEATH, exit 155 after
maxtasks, SIGUSR1 as the soft time limit (spec/pool.md section 8b).

One change: a job that cannot be unpickled here (its function's module does
not import, say) fails that job with the error, instead of ending the worker
as billiard's does (a billiard-ts pool would hand the job to the next worker,
which would end the same way).
"""
import io
import pickle

__all__ = ['run']


class _Placeholder:
    """Stands for any global while a job that did not load is read again for its ids."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _Placeholder


def _raise(exc):
    raise exc


def _load_job(data, loads):
    try:
        return loads(data)
    except Exception as exc:
        try:
            kind, (job, i, _func, _args, _kwargs) = _LenientUnpickler(io.BytesIO(data)).load()
        except Exception:
            raise exc from None  # not a job whose ids can be read: the worker ends, as billiard's
        return kind, (job, i, _raise, (exc,), {})


def _worker_class():
    from billiard.common import pickle_loads
    from billiard.pool import Worker

    class JobSafeWorker(Worker):
        def _make_recv_method(self, conn):
            if conn is not self.inq:
                return super()._make_recv_method(conn)
            get_payload = conn.get_payload

            def _recv(timeout):
                return True, _load_job(get_payload(), pickle_loads)
            return _recv

    return JobSafeWorker


def run(inq, outq, synq, initializer, initargs, maxtasks, max_memory_per_child):
    # sigprotection: billiard's own pool blocks signals around the job
    # read only so that its (forked) siblings keep a shared lock; these
    # queues are this worker's alone.
    _worker_class()(
        inq, outq, synq,
        initializer=initializer, initargs=tuple(initargs),
        maxtasks=maxtasks,
        sigprotection=False,
        max_memory_per_child=max_memory_per_child,
    )()
