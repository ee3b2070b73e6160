"""A real billiard Pool with Node workers: compat/billiard_ts.py's NodePool
(issue 11, spec/pool.md section 8a).

The pool is billiard's own (its threads, timeouts, restarts and callbacks);
its Node workers run billiard-ts's pool worker loop on the pool's shared
queues, under the pool's named semaphores. Tasks are exports of
test/fixtures/pool-node-tasks.ts named with node_task(), or Python functions
of compat/peers/pool_tasks.py with a registered Node implementation.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "compat"))
sys.path.insert(0, str(REPO_ROOT / "compat" / "peers"))

import billiard  # noqa: E402
from billiard.einfo import ExceptionInfo  # noqa: E402
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError  # noqa: E402
from billiard.pool import MaybeEncodingError  # noqa: E402

import billiard_ts  # noqa: E402
import pool_tasks  # noqa: E402

TASKS = str(REPO_ROOT / "test" / "fixtures" / "pool-node-tasks.ts")


def t(name):
    return billiard_ts.node_task(TASKS + "#" + name)


def node_pool(processes=1, **kwargs):
    # The fixture imports billiard-ts from src/: its workers run the source entry point.
    return billiard_ts.NodePool(processes, cwd=str(REPO_ROOT), entry="source", **kwargs)


def real(exc):
    """The error itself: billiard wraps the ones its pool makes (TimeLimitExceeded,
    WorkerLostError) in an ExceptionWithTraceback whose .exc it is."""
    return getattr(exc, "exc", exc)


def worker_pids(pool):
    """The pids of the pool's started workers. billiard appends a replacement to
    pool._pool before it starts it, so for a moment its pid is None."""
    return sorted(w.pid for w in pool._pool if w.pid is not None)


def test_apply_map_starmap_imap_and_callbacks_run_node_functions():
    ups = []
    with node_pool(2, on_process_up=ups.append) as pool:
        got = []
        r = pool.apply_async(t("square"), (4,), callback=got.append)
        assert r.get(60) == 16
        assert got == [16]
        assert pool.apply(t("add"), (1, 2), {"c": 3}) == 6
        assert pool.apply(t("add"), (0.5, 2)) == 2.5
        assert pool.map(t("square"), range(20)) == [x * x for x in range(20)]
        assert pool.map(t("square"), range(7), chunksize=3) == [x * x for x in range(7)]
        assert pool.map(t("square"), []) == []
        assert pool.starmap(t("add"), [(1, 2), (3, 4)]) == [3, 7]
        assert list(pool.imap(t("square"), range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(t("square"), range(5))) == [0, 1, 4, 9, 16]
        assert list(pool.imap(t("square"), range(9), chunksize=4)) == [x * x for x in range(9)]
        # every worker is a Node process the pool knows by its own pid
        pids = {pool.apply(t("pid")) for _ in range(10)}
        assert pids <= set(worker_pids(pool))
        assert all(type(w).__name__ == "NodePoolWorker" for w in pool._pool)
        assert {w.pid for w in ups} == set(worker_pids(pool))
        with open("/proc/%d/cmdline" % pool._pool[0].pid, "rb") as f:
            assert b"node" in f.read().split(b"\0")[0]


def test_a_node_error_arrives_as_its_python_class_with_the_workers_traceback():
    with node_pool(1) as pool:
        einfos = []
        r = pool.apply_async(t("fail"), ("boom",), error_callback=einfos.append)
        with pytest.raises(TypeError) as info:
            r.get(60)
        assert str(info.value) == "boom"
        cause = str(info.value.__cause__)
        assert "Traceback (most recent call last):" in cause and "pool-node-tasks.ts" in cause
        assert len(einfos) == 1 and isinstance(einfos[0], ExceptionInfo)
        assert "TypeError: boom" in str(einfos[0])
        # a result that cannot be pickled: MaybeEncodingError, and the worker goes on
        with pytest.raises(MaybeEncodingError):
            pool.apply(t("unpicklable"))
        # a module that does not import: that job fails, typed
        with pytest.raises(Exception, match="Cannot find module|ERR_MODULE_NOT_FOUND"):
            pool.apply(billiard_ts.node_task(str(REPO_ROOT / "test" / "fixtures" / "no-such-module.mjs") + "#f"))
        assert pool.apply(t("square"), (3,)) == 9


def test_the_soft_limit_is_sigusr1_into_the_node_worker_uncaught_and_caught():
    with node_pool(1, soft_timeout=1, timeout=30) as pool:
        first = pool.apply(t("pid"))
        with pytest.raises(SoftTimeLimitExceeded):
            pool.apply_async(t("nap"), (20,)).get(30)
        assert pool.apply_async(t("napAndCleanUp"), (20,)).get(30) == "cleaned up"
        # a per-call soft limit overrides the pool's
        assert pool.apply_async(t("napAndCleanUp"), (20,), soft_timeout=2).get(30) == "cleaned up"
        assert pool.apply(t("pid")) == first


def test_the_hard_limit_kills_the_node_worker_and_billiard_replaces_it():
    downs = []
    with node_pool(1, timeout=1, on_process_down=lambda w: downs.append(w.exitcode)) as pool:
        first = pool.apply(t("pid"))
        with pytest.raises(Exception) as info:
            pool.apply_async(t("spin"), (60,)).get(30)
        assert isinstance(real(info.value), TimeLimitExceeded)
        second = pool.apply_async(t("pid")).get(30)
        assert second != first
        assert downs and downs[0] in (-signal.SIGTERM, -signal.SIGKILL)


def test_a_sigkilled_node_worker_fails_its_job_with_worker_lost_error_and_is_replaced():
    accepted = threading.Event()
    with node_pool(1, lost_worker_timeout=1) as pool:
        first = pool.apply(t("pid"))
        r = pool.apply_async(t("nap"), (60,), accept_callback=lambda pid, time_accepted: accepted.set())
        assert accepted.wait(30)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(Exception) as info:
            r.get(30)
        lost = real(info.value)
        assert isinstance(lost, WorkerLostError)
        assert "signal 9 (SIGKILL)" in str(lost)
        assert pool.apply_async(t("pid")).get(30) not in (first, None)


def test_maxtasksperchild_recycles_node_workers_with_exit_code_155():
    downs = []
    with node_pool(1, maxtasksperchild=2, on_process_down=lambda w: downs.append(w.exitcode)) as pool:
        pids = [pool.apply_async(t("pid")).get(30) for _ in range(4)]
        assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
        deadline = time.monotonic() + 10
        while not downs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert downs[:1] == [155]


def test_max_memory_per_child_recycles_a_node_worker_past_its_peak_rss():
    downs = []
    # 1 KiB: every Node process is past it after its first task
    with node_pool(1, max_memory_per_child=1, on_process_down=lambda w: downs.append(w.exitcode)) as pool:
        first = pool.apply_async(t("pid")).get(30)
        second = pool.apply_async(t("pid")).get(30)
        assert first != second
        deadline = time.monotonic() + 10
        while not downs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert downs[:1] == [155]


def test_a_forkserver_context_works_too():
    with node_pool(1, context=billiard.get_context("forkserver")) as pool:
        assert pool.map(t("square"), range(5)) == [0, 1, 4, 9, 16]
        assert type(pool._pool[0]).__name__ == "NodePoolWorker"


def test_close_then_join_ends_node_workers_cleanly():
    pool = node_pool(2)
    assert pool.map(t("square"), range(10)) == [x * x for x in range(10)]
    workers = list(pool._pool)
    pool.close()
    pool.join()
    assert [w.exitcode for w in workers] == [0, 0]


def test_node_initializer_runs_in_every_node_worker_before_its_first_job():
    with node_pool(2, node_initializer=TASKS + "#init", node_initargs=("ready",)) as pool:
        assert pool.map(t("initializedValue"), range(4), chunksize=1) == ["ready"] * 4


def test_a_node_worker_that_crashes_at_start_up_is_a_dead_worker_to_billiard_not_a_hang(tmp_path):
    downs = []
    marker = str(tmp_path / "crashed")
    with node_pool(1, node_initializer=TASKS + "#crashOnce", node_initargs=(marker,),
                   on_process_down=lambda w: downs.append(w.exitcode)) as pool:
        assert pool.apply_async(t("square"), (3,)).get(60) == 9
        assert os.path.exists(marker)
        assert downs[:1] == [1]


def test_a_mixed_pool_of_one_node_and_two_python_workers_runs_1000_tasks_correctly():
    with node_pool(3, node_processes=1, node_tasks={pool_tasks.square_tagged: TASKS + "#squareTagged"}) as pool:
        kinds = sorted(type(w).__name__ for w in pool._pool)
        assert kinds == ["NodePoolWorker", "SpawnProcess", "SpawnProcess"]
        # Python workers start faster than a Node one (which compiles its TypeScript first): wait for
        # the Node worker to take a job, so that the 1,000 below are shared by both languages.
        deadline = time.monotonic() + 60
        while pool.apply(pool_tasks.square_tagged, (2,))[0] != "node":
            assert time.monotonic() < deadline, "the Node worker never took a job"
        results = [pool.apply_async(pool_tasks.square_tagged, (x,)) for x in range(1000)]
        values = [r.get(120) for r in results]
        assert [v[1] for v in values] == [x * x for x in range(1000)]
        langs = {v[0] for v in values}
        assert langs == {"node", "python"}, langs
        # chunked map through both languages
        assert [v[1] for v in pool.map(pool_tasks.square_tagged, range(50), chunksize=2)] == [x * x for x in range(50)]


def test_the_shared_pipes_stay_blocking_after_a_node_worker_ran_jobs():
    # O_NONBLOCK belongs to the open file description, which every worker shares: a Node stream on
    # the outqueue would set it, and a Python worker's write into a full pipe would then raise
    # BlockingIOError (the worker dies, its job is lost, the pool hangs).
    with node_pool(2) as pool:
        assert [pool.apply(t("square"), (x,)) for x in range(20)] == [x * x for x in range(20)]
        assert pool.map(t("square"), range(50), chunksize=3) == [x * x for x in range(50)]
        assert os.get_blocking(pool._outqueue._writer.fileno())
        assert os.get_blocking(pool._outqueue._reader.fileno())
        assert os.get_blocking(pool._inqueue._writer.fileno())
        assert os.get_blocking(pool._inqueue._reader.fileno())


def test_routing_is_checked_when_a_task_is_submitted():
    with node_pool(3, node_processes=1, node_tasks={"pool_tasks.square_tagged": TASKS + "#squareTagged"}) as mixed:
        with pytest.raises(TypeError, match="2 Python workers"):
            mixed.apply_async(t("square"), (2,))
        with pytest.raises(TypeError, match="no Node implementation"):
            mixed.map(pool_tasks.pid, range(3))
        assert mixed.apply(pool_tasks.square_tagged, (3,))[1] == 9
    with node_pool(1) as pool:
        with pytest.raises(TypeError, match="no Node implementation"):
            pool.apply_async(pool_tasks.pid)
        with pytest.raises(TypeError, match="no Node implementation"):
            list(pool.imap(pool_tasks.pid, range(2)))
    with pytest.raises(ValueError, match="'fork' context"):
        node_pool(1, context=billiard.get_context("fork"))
    # a Python process that loads a Node task gets it back, and cannot run it
    import pickle
    task = pickle.loads(pickle.dumps(t("square")))
    assert task == t("square")
    with pytest.raises(TypeError, match="only a Node worker can run it"):
        task(3)


def test_sigterm_to_an_idle_node_worker_gives_back_the_shared_read_lock():
    """An idle worker waits for a job holding the inqueue's read lock. SIGTERM one
    (as billiard's shrink() and terminate do): it must give the lock back as it
    dies, or every other worker waits for ever. Each of the first workers is
    SIGTERMed in turn, so one of them holds the lock when it dies."""
    pool = node_pool(2)
    try:
        assert pool.map(t("square"), range(4), chunksize=1) == [0, 1, 4, 9]
        for victim in worker_pids(pool):
            os.kill(victim, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while victim in worker_pids(pool) or len(worker_pids(pool)) < 2:
                assert time.monotonic() < deadline, "billiard did not replace the worker"
                time.sleep(0.05)
            time.sleep(0.5)  # a replacement is up and waiting on the lock
        assert pool.apply_async(t("square"), (5,)).get(20) == 25
        assert pool.map_async(t("square"), range(6), chunksize=1).get(20) == [x * x for x in range(6)]
    except BaseException:
        # A lock lost with a dead worker wedges terminate() too (it takes that lock): free it so the test ends.
        try:
            pool._inqueue._rlock.release()
        except ValueError:
            pass
        raise
    finally:
        pool.terminate()


def test_a_small_reply_takes_no_write_lock_and_a_large_one_does():
    """A Node worker writes a reply of 4096 bytes or less in one write(2), which
    the pipe keeps whole, without the outqueue's write lock: killed right after
    it (a time limit, a SIGKILL), it holds no lock that would wedge the pool.
    A larger reply takes the lock, as billiard's workers do."""
    with node_pool(1) as pool:
        assert pool.apply(t("square"), (2,)) == 4
        wlock = pool._outqueue._wlock
        wlock.acquire()
        try:
            assert pool.apply_async(t("square"), (3,)).get(20) == 9
            big = pool.apply_async(t("repeat"), ("x", 10000))
            time.sleep(1.0)
            assert not big.ready()  # its READY waits for the lock
        finally:
            wlock.release()
        assert big.get(20) == "x" * 10000


def test_the_built_package_runs_node_workers_under_plain_node(built):
    """What an installed billiard-ts runs: dist/pool/worker.js under plain node
    (no tsx), with a JavaScript task module."""
    tasks = str(REPO_ROOT / "test" / "fixtures" / "dist-targets.mjs")
    with billiard_ts.NodePool(2, cwd=str(REPO_ROOT), entry="dist") as pool:
        assert pool.map(billiard_ts.node_task(tasks + "#square"), range(10)) == [x * x for x in range(10)]
        with open("/proc/%d/cmdline" % pool._pool[0].pid, "rb") as f:
            argv = f.read().split(b"\0")
        assert not any(b"tsx" in a for a in argv)
        assert any(a.endswith(b"dist/process/child.js") for a in argv)


def test_the_example_runs(built):
    """examples/node_pool.py, as the README runs it."""
    import subprocess

    r = subprocess.run([sys.executable, "examples/node_pool.py"], cwd=str(REPO_ROOT), capture_output=True,
                       text=True, timeout=120)
    assert r.stderr == ""
    assert r.stdout == "[1, 4, 9, 16, 25]\nhi billiard\n[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]\n"
    assert r.returncode == 0


def test_a_job_over_the_load_limits_fails_alone_and_node_load_limits_raise_them():
    # 2,000 int keys k << 64 share one V8 hash: over billiard-ts's default maxHashCollisions.
    big = {(k + 1) << 64: k for k in range(2000)}
    with node_pool(1) as pool:
        before = worker_pids(pool)
        with pytest.raises(Exception) as info:
            pool.apply(t("size"), (big,))
        assert type(real(info.value)).__name__ == "UnpicklingError"
        assert "maxHashCollisions" in str(real(info.value))
        # The worker failed that job and went on.
        assert pool.apply(t("square"), (7,)) == 49
        assert worker_pids(pool) == before
    with node_pool(1, node_load_limits={"maxHashCollisions": float("inf")}) as pool:
        assert pool.apply(t("size"), (big,)) == 2000
