"""Python parent, Node children: billiard's own Queue, SimpleQueue,
JoinableQueue, Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event,
Barrier, Value and Array (and the standard library's multiprocessing ones),
made in a spawn context and handed to Node children started through
compat/billiard_ts.py's NodeProcess, which pickles them as billiard pickles
them for a spawned child (the pipes' and arenas' descriptors as _DupFd,
the semaphores by name).

Each scenario of compat/peers/sync_peer.py is a short protocol between this
parent and a child running the same-named export of
test/peers/sync-child.ts (camelCase): both sides see each other's puts,
lock holds, event sets, notifies and shared writes; a counter incremented
10,000 times by each of 2 Node and 2 Python children under one Lock ends
exact; 100,000 items cross one Queue complete and in order, each way;
join() returns only after the other side's last task_done().
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "compat"))
sys.path.insert(0, str(REPO_ROOT / "compat" / "peers"))

import billiard_ts  # noqa: E402
import sync_peer  # noqa: E402

IMPLS = ["billiard", "mp"]


def spawn_context(impl: str):
    """A spawn context: with 'fork' (billiard's and 3.11's default) semaphores
    are unlinked at once and arenas are not picklable, as in billiard."""
    if impl == "billiard":
        import billiard

        return billiard.get_context("spawn")
    import multiprocessing

    return multiprocessing.get_context("spawn")


def start_node(name: str, args: tuple):
    """A Node child running sync-child.ts#name, from the sources (its target imports src/)."""
    p = billiard_ts.NodeProcess(target=sync_peer.NODE_TARGETS + "#" + name, args=args, cwd=str(REPO_ROOT), entry="source")
    p.start()
    assert p.startup_error is None, p.startup_error
    return p


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scenario", sorted(sync_peer.SCENARIOS))
def test_node_child_shares_sync_objects(scenario: str, impl: str) -> None:
    # The standard library's run repeats the same Node code: smaller sizes.
    sizes = sync_peer.LIGHT.get(scenario, {}) if impl == "mp" else {}
    sync_peer.SCENARIOS[scenario](spawn_context(impl), start_node, **sizes)


def test_node_child_rebuilds_billiard_classes() -> None:
    """Without the package's rebuilders registered in the child, these would
    arrive as inert placeholders: the child says what it got."""
    ctx = spawn_context("billiard")
    q = ctx.Queue()
    objs = (ctx.Lock(), ctx.RLock(), ctx.Semaphore(3), ctx.BoundedSemaphore(2), ctx.Condition(), ctx.Event(), ctx.Barrier(2),
            ctx.Value("i", 1), ctx.Array("d", 2), ctx.JoinableQueue(), ctx.SimpleQueue())
    p = start_node("describe", (q,) + objs)
    assert q.get(timeout=sync_peer.TIMEOUT) == [
        "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier",
        "Synchronized", "SynchronizedArray", "JoinableQueue", "SimpleQueue",
    ]
    p.join(sync_peer.TIMEOUT)
    assert p.exitcode == 0
