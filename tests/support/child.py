"""child runs a Python script in a subprocess and talks to it line by line, for crash and lock tests.

Contract: ``Child.start(script, *args)`` runs ``python -c script args...`` with
``src/`` and ``tests/`` importable, stdin and stdout as pipes. ``expect()``
returns the child's next stdout line, waiting on the pipe itself (``select``,
no sleeps) for at most ``timeout`` seconds, and fails the test with the child's
stderr if the line does not come or the child exits first. ``send()`` writes
one line to its stdin; ``kill()`` sends SIGKILL and reaps it. ``stop()`` (also
on ``with`` exit) closes stdin, waits briefly, and kills what is still running.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

TESTS_DIR = Path(__file__).resolve().parent.parent
SRC_DIR = TESTS_DIR.parent / "src"
DEFAULT_TIMEOUT = 60.0


class Child:
    """One running ``python -c`` subprocess (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._buf = b""

    @classmethod
    def start(cls, script: str, *args: str) -> Child:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(SRC_DIR), str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """The next line the child prints (without the newline)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no line from the child within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                self._fail("the child closed its stdout (exited?)")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def send(self, line: str = "") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: the child gets no chance to clean up."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=DEFAULT_TIMEOUT)

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Close stdin and wait for a clean exit; return the exit status."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        try:
            self.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def _fail(self, why: str) -> None:
        if self.proc.poll() is None:
            self.kill()
        raise AssertionError(f"{why}; stderr:\n{self.stderr()}")

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
