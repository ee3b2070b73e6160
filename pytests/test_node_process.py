"""Python parent, Node child through compat/billiard_ts.py: `NodeProcess`
starts a billiard-ts child whose target is '<module>#<export>', passing
billiard (and multiprocessing) Connections in its arguments the way billiard
passes them to a spawned child.

The target here is `echo` of test/fixtures/targets.ts: it echoes every
message until ('__exit__',). The parent sends every value of the fixture
corpus and checks each echo with conn_peer.same(); it also checks exit codes
(billiard's: 0, 1 when the target throws, n for process.exit(n)), the child's
name, and what happens when the export does not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "compat"))
sys.path.insert(0, str(REPO_ROOT / "compat" / "peers"))

import billiard_ts  # noqa: E402
import conn_peer  # noqa: E402

TARGETS = str(REPO_ROOT / "test" / "fixtures" / "targets.ts")


def make_pipe(impl):
    if impl == "billiard":
        from billiard import Pipe
    else:
        from multiprocessing import Pipe
    return Pipe()


@pytest.mark.parametrize("impl", ["billiard", "mp"])
def test_node_child_echoes_every_corpus_value(impl):
    parent, child = make_pipe(impl)
    p = billiard_ts.NodeProcess(target=TARGETS + "#echo", args=(child,), cwd=str(REPO_ROOT))
    p.start()
    child.close()
    assert p.startup_error is None
    bad = []
    for group in ("builtin", "stdlib"):
        for name, value in conn_peer.corpus(group):
            parent.send(value)
            assert parent.poll(30), "no echo for %s" % name
            if not conn_peer.same(value, parent.recv()):
                bad.append(name)
    parent.send(("__exit__",))
    p.join(30)
    assert bad == []
    assert p.exitcode == 0


def test_name_and_exit_codes():
    parent, child = make_pipe("billiard")
    p = billiard_ts.NodeProcess(target=TARGETS + "#whoami", args=(child,), name="FromPython", cwd=str(REPO_ROOT))
    p.start()
    child.close()
    me = parent.recv()
    p.join(30)
    assert me["name"] == "FromPython"
    from billiard import current_process
    assert bytes(me["authkey"]) == bytes(current_process().authkey)
    assert p.exitcode == 0

    boom = billiard_ts.NodeProcess(target=TARGETS + "#boom", cwd=str(REPO_ROOT))
    boom.start()
    boom.join(30)
    assert boom.exitcode == 1

    exits = billiard_ts.NodeProcess(target=TARGETS + "#exitWith", args=(5,), cwd=str(REPO_ROOT))
    exits.start()
    exits.join(30)
    assert exits.exitcode == 5


def test_missing_export_is_a_startup_error():
    p = billiard_ts.NodeProcess(target=TARGETS + "#noSuchExport", cwd=str(REPO_ROOT))
    p.start()
    p.join(30)
    assert p.exitcode == 1
    assert "noSuchExport" in p.startup_error
