"""Fixtures for the Python-driven pickle tests: one Node peer per session.

The peer (test/peers/pickle-echo.ts) reads frames `[u32 BE length][payload]`
on stdin; a request payload is one protocol byte followed by a pickle. It
answers each with a frame whose payload is status 0 + its own re-dump of the
value at that protocol, or status 1 + the UTF-8 text of the error it hit.
"""

from __future__ import annotations

import os
import select
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_SCRIPT = REPO_ROOT / "test" / "peers" / "pickle-echo.ts"

# Seconds to wait for one reply before declaring the peer hung.
REPLY_TIMEOUT = 60.0


class PicklePeer:
    """A running `node --import tsx test/peers/pickle-echo.ts`."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH")
        # The peer's stderr goes to a file: never a pipe nobody drains, and its
        # content can be quoted when the peer dies.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [node, "--import", "tsx", str(PEER_SCRIPT.relative_to(REPO_ROOT))],
            cwd=REPO_ROOT,  # so `--import tsx` resolves from node_modules
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,  # raw pipes: reads return what is there, writes go out now
        )

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _read_exactly(self, n: int) -> bytes:
        """Reads n bytes from the peer's stdout, failing on EOF or timeout."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            ready, _, _ = select.select([fd], [], [], REPLY_TIMEOUT)
            if not ready:
                raise RuntimeError(f"pickle peer sent no reply within {REPLY_TIMEOUT}s")
            chunk = os.read(fd, remaining)
            if not chunk:
                code = self.proc.poll()
                raise RuntimeError(
                    f"pickle peer closed stdout (exit code {code}); stderr:\n{self._stderr_text()}"
                )
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def roundtrip(self, pickle_bytes: bytes, protocol: int) -> bytes:
        """Sends a pickle, returns the peer's re-dump at `protocol`.

        Raises AssertionError with the peer's error text when it reports one.
        """
        assert 0 <= protocol <= 5, protocol
        assert self.proc.stdin is not None
        payload = bytes([protocol]) + bytes(pickle_bytes)
        self.proc.stdin.write(struct.pack(">I", len(payload)) + payload)
        (length,) = struct.unpack(">I", self._read_exactly(4))
        reply = self._read_exactly(length)
        if not reply:
            raise RuntimeError("pickle peer sent an empty reply frame")
        if reply[0] != 0:
            raise AssertionError(f"Node peer failed: {reply[1:].decode('utf-8', 'replace')}")
        return reply[1:]

    def close(self) -> None:
        """Closes stdin (the peer's signal to exit) and waits for it."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        stderr = self._stderr_text()
        self._stderr.close()
        if code != 0 or stderr:
            raise RuntimeError(f"pickle peer exited with code {code}; stderr:\n{stderr}")


@pytest.fixture(scope="session")
def pickle_peer() -> Iterator[PicklePeer]:
    """The Node pickle peer, started once per session and shut down at the end."""
    peer = PicklePeer()
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="session")
def roundtrip(pickle_peer: PicklePeer) -> Callable[[bytes, int], bytes]:
    """`roundtrip(pickle_bytes, protocol) -> bytes`: Node's loads-then-dumps."""
    return pickle_peer.roundtrip


@pytest.fixture(scope="session")
def built() -> None:
    """dist/, built now (npm run build) so that a test of the built package sees the current sources."""
    subprocess.run(["node", "--import", "tsx", "scripts/build.ts"], cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL)
