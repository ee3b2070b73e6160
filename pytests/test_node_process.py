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

import re
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "compat"))
sys.path.insert(0, str(REPO_ROOT / "compat" / "peers"))

import billiard_ts  # noqa: E402
import conn_peer  # noqa: E402

TARGETS = str(REPO_ROOT / "test" / "fixtures" / "targets.ts")
DIST_TARGETS = str(REPO_ROOT / "test" / "fixtures" / "dist-targets.mjs")
LOG_TARGETS = str(REPO_ROOT / "test" / "fixtures" / "logger-children.ts")

# targets.ts imports billiard-ts from src/, so its children run the source
# entry point: a child must load the same copy of the package as its target.
# test_built_package_child runs the dist/ entry with a target importing dist/.
SOURCE = "source"


def make_pipe(impl):
    if impl == "billiard":
        from billiard import Pipe
    else:
        from multiprocessing import Pipe
    return Pipe()


@pytest.mark.parametrize("impl", ["billiard", "mp"])
def test_node_child_echoes_every_corpus_value(impl):
    parent, child = make_pipe(impl)
    p = billiard_ts.NodeProcess(target=TARGETS + "#echo", args=(child,), cwd=str(REPO_ROOT), entry=SOURCE)
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
    p = billiard_ts.NodeProcess(target=TARGETS + "#whoami", args=(child,), name="FromPython", cwd=str(REPO_ROOT), entry=SOURCE)
    p.start()
    child.close()
    me = parent.recv()
    p.join(30)
    assert me["name"] == "FromPython"
    from billiard import current_process
    # The child sends a plain copy of its key: the key itself refuses to be pickled.
    assert me["authkey"] == bytes(current_process().authkey)
    assert me["authkeyType"] == "AuthenticationString"
    assert p.exitcode == 0

    boom = billiard_ts.NodeProcess(target=TARGETS + "#boom", cwd=str(REPO_ROOT), entry=SOURCE)
    boom.start()
    boom.join(30)
    assert boom.exitcode == 1

    exits = billiard_ts.NodeProcess(target=TARGETS + "#exitWith", args=(5,), cwd=str(REPO_ROOT), entry=SOURCE)
    exits.start()
    exits.join(30)
    assert exits.exitcode == 5


def test_authkey_travels_only_in_the_preparation_data():
    """The Node child gets the key as billiard pickles it for a spawned
    child (an AuthenticationString), and refuses to send it in a message, as
    a billiard child would; Python refuses to pickle it outside spawning."""
    import pickle

    from billiard import current_process
    with pytest.raises(TypeError, match="disallowed for security reasons"):
        pickle.dumps(current_process().authkey)
    parent, child = make_pipe("billiard")
    p = billiard_ts.NodeProcess(target=TARGETS + "#sendAuthkey", args=(child,), cwd=str(REPO_ROOT), entry=SOURCE)
    p.start()
    child.close()
    assert parent.poll(30)
    assert parent.recv() == ("refused", "PicklingError", "Pickling an AuthenticationString object is disallowed for security reasons")
    p.join(30)
    assert p.exitcode == 0

    parent, child = make_pipe("billiard")
    p = billiard_ts.NodeProcess(target=TARGETS + "#describeKey", args=(child, current_process().authkey), cwd=str(REPO_ROOT), entry=SOURCE)
    p.start()
    child.close()
    assert parent.poll(30)
    assert parent.recv() == ("AuthenticationString", bytes(current_process().authkey))
    p.join(30)
    assert p.exitcode == 0


def test_missing_export_is_a_startup_error():
    p = billiard_ts.NodeProcess(target=TARGETS + "#noSuchExport", cwd=str(REPO_ROOT), entry=SOURCE)
    p.start()
    p.join(30)
    assert p.exitcode == 1
    assert "noSuchExport" in p.startup_error



def test_built_package_child(built):
    """What an installed billiard-ts runs: dist/process/child.js under plain
    node (no tsx), with a JavaScript target that imports dist/."""
    cmd = billiard_ts.child_command("node", DIST_TARGETS + "#report", str(REPO_ROOT), "dist")
    assert not any("tsx" in part for part in cmd)
    parent, child = make_pipe("billiard")
    p = billiard_ts.NodeProcess(target=DIST_TARGETS + "#report", args=(child,), name="Built",
                                cwd=str(REPO_ROOT), entry="dist")
    p.start()
    child.close()
    assert parent.poll(30)
    name, exec_argv, script = parent.recv()
    p.join(30)
    assert p.exitcode == 0
    assert name == "Built"
    assert not any("tsx" in a for a in exec_argv)
    assert script.endswith("dist/process/child.js")


def test_child_command_entries(built):
    """A TypeScript target under the built entry gets tsx's loader; a bad
    entry name is refused."""
    ts = billiard_ts.child_command("node", TARGETS + "#echo", str(REPO_ROOT), "dist")
    assert ts[1] == "--import" and ts[2].endswith("tsx/dist/loader.mjs")
    src = billiard_ts.child_command("node", TARGETS + "#echo", str(REPO_ROOT), "source")
    assert src[-1].endswith("src/process/child.ts")
    with pytest.raises(ValueError):
        billiard_ts.child_command("node", TARGETS + "#echo", str(REPO_ROOT), "elsewhere")


def test_node_child_takes_over_the_parents_logging(capfd):
    """After billiard's log_to_stderr(SUBDEBUG) in the parent, a Node child
    logs what a billiard child logs, at the parent's level, under its name."""
    import billiard
    from billiard import util
    saved = util._logger, util._log_to_stderr
    logger = billiard.log_to_stderr(util.SUBDEBUG)
    handler = logger.handlers[-1]
    try:
        capfd.readouterr()
        p = billiard_ts.NodeProcess(target=LOG_TARGETS + "#logInChild", args=(1,), name="Logs", cwd=str(REPO_ROOT), entry=SOURCE)
        p.start()
        p.join(30)
        err = capfd.readouterr().err
    finally:
        logger.removeHandler(handler)
        logger.setLevel(0)
        util._logger, util._log_to_stderr = saved
    assert p.exitcode == 0
    lines = [re.sub(r"process \d+", "process PID", line) for line in err.splitlines() if line.startswith("[")]
    assert lines == [
        "[INFO/Logs] child process PID calling self.run()",
        "[INFO/Logs] in child 1",
        "[SUBDEBUG/Logs] child subdebug",
        "[INFO/Logs] process PID exiting with exitcode 0",
    ]
