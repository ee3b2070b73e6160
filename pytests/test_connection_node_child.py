"""Python parent, Node child: a real `Pipe()` (billiard's and the standard
library's multiprocessing) whose child end a Node process inherits.

The parent makes the Pipe, starts `node --import tsx test/peers/conn-child.ts
--fd N` with the child end passed through `pass_fds`, and closes its copy.
The Node child wraps the fd with billiard-ts's `Connection.fromFd` and echoes
every message (`recv()` then `send()`); the parent checks each echo against
what it sent:

* every value of the fixture corpus (builtin and stdlib groups), compared
  with conn_peer.same() (exact types, NaN, -0.0, sets without order...);
* send_bytes frames of 0 bytes to a few MiB, echoed with send_bytes;
* a burst of 10,000 small messages, written by a thread while the parent
  reads the echoes;
* closing the parent end: the child sees end of file and exits 0.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD_SCRIPT = "test/peers/conn-child.ts"
sys.path.insert(0, str(REPO_ROOT / "compat" / "peers"))

import conn_peer  # noqa: E402  (puts fixtures/ on sys.path; corpus() and same())

CONTROL = "__conn_child__"
# Seconds to wait for one reply before declaring the child hung.
REPLY_TIMEOUT = 10.0
BURST = 10_000
IMPLS = ["billiard", "mp"]


def make_pipe(impl: str):
    if impl == "billiard":
        from billiard import Pipe
    else:
        from multiprocessing import Pipe
    return Pipe()


class NodeChild:
    """A Node process on the child end of a Python Pipe()."""

    def __init__(self, impl: str) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH")
        self.conn, child_end = make_pipe(impl)
        self.impl = impl
        fd = child_end.fileno()
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [node, "--import", "tsx", CHILD_SCRIPT, "--fd", str(fd)],
            cwd=REPO_ROOT,  # so `--import tsx` resolves from node_modules
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
        )
        # The child holds the only other copy now: its end of file is ours.
        child_end.close()

    def output(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _wait_readable(self) -> None:
        if not self.conn.poll(REPLY_TIMEOUT):
            raise AssertionError(
                f"Node child sent nothing within {REPLY_TIMEOUT}s (exit code {self.proc.poll()}); output:\n{self.output()}"
            )

    def recv(self):
        self._wait_readable()
        return self.conn.recv()

    def recv_bytes(self) -> bytes:
        self._wait_readable()
        return self.conn.recv_bytes()

    def echo(self, value):
        self.conn.send(value)
        return self.recv()

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=REPLY_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"Node child did not exit; output:\n{self.output()}")

    def finish(self) -> None:
        """Asks the child to exit; it must exit 0 and print nothing."""
        self.conn.send((CONTROL, "exit"))
        code = self.wait()
        assert (code, self.output()) == (0, "")
        # The child's copy is closed: end of file.
        assert self.conn.poll(REPLY_TIMEOUT)
        with pytest.raises(EOFError):
            self.conn.recv()

    def close(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture(params=IMPLS)
def child(request):
    c = NodeChild(request.param)
    try:
        yield c
    finally:
        c.close()


def short_repr(got) -> str:
    text = repr(got)
    return text if len(text) < 300 else text[:300] + "..."


@pytest.mark.parametrize("group", ["builtin", "stdlib"])
def test_corpus_echo(child: NodeChild, group: str) -> None:
    items = conn_peer.corpus(group)
    assert len(items) > 50
    bad = []
    for name, value in items:
        echoed = child.echo(value)
        if isinstance(echoed, tuple) and echoed[:2] == (CONTROL, "error"):
            bad.append(f"{name}: Node failed: {echoed[2]}")
        elif not conn_peer.same(value, echoed):
            bad.append(f"{name}: got {short_repr(echoed)}")
    assert bad == [], f"{len(bad)} of {len(items)} {group} values came back different ({child.impl})"
    child.finish()


def test_bytes_both_ways(child: NodeChild) -> None:
    for n in [0, 1, 4, 65536, 3 * 1024 * 1024 + 7]:
        data = conn_peer.pattern(n)
        child.conn.send((CONTROL, "echo_bytes"))
        child.conn.send_bytes(data)
        got = child.recv_bytes()
        assert (len(got), hashlib.sha256(got).hexdigest()) == (n, hashlib.sha256(data).hexdigest())
    # A bytes value inside a pickle, too.
    data = conn_peer.pattern(2 * 1024 * 1024)
    assert child.echo(data) == data
    child.finish()


def test_burst(child: NodeChild) -> None:
    errors = []

    def write() -> None:
        try:
            for i in range(BURST):
                child.conn.send(i)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        got = [child.recv() for _ in range(BURST)]
    finally:
        writer.join(REPLY_TIMEOUT)
    assert errors == []
    assert got == list(range(BURST))
    # Mixed values in a burst: strings, floats (integral ones stay floats), tuples.
    values = [("k%d" % i, float(i), -0.0, [i] * (i % 5)) for i in range(2000)]
    for v in values:
        child.conn.send(v)
    back = [child.recv() for _ in values]
    assert all(conn_peer.same(a, b) for a, b in zip(values, back))
    child.finish()


def test_eof_ends_the_child(child: NodeChild) -> None:
    assert child.echo(("still", "here")) == ("still", "here")
    child.conn.close()
    assert (child.wait(), child.output()) == (0, "")
