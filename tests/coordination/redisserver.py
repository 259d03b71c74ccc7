"""redisserver runs a real ``redis-server`` (the Debian package) on a free loopback port for one test.

Contract: ``RedisServer(tmp_dir, password=None)`` picks a free port on
127.0.0.1; ``start()`` runs ``redis-server`` bound there, working in
``tmp_dir`` with persistence off (no RDB snapshots, no AOF: a restart starts
empty, like a cache Redis), and returns once it answers ``PING`` (polled with
a deadline, no fixed sleeps); ``url`` is ``redis://[:PASSWORD@]127.0.0.1:PORT/0``.
``kill()`` sends SIGKILL and reaps it, as a crash would; ``start()`` again
brings it back on the same port. ``stop()`` (also on ``with`` exit) kills
what still runs. A missing ``redis-server`` fails the test: ``.ci/run``
installs it (``redis-server:redis-server``).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from support.ports import free_port

START_TIMEOUT = 20.0
POLL = 0.005


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
    if found is None:
        raise AssertionError("redis-server is not installed (apt-get install redis-server)")
    return found


class RedisServer:
    """One redis-server process (see the module docstring)."""

    def __init__(self, tmp_dir: Path, password: str | None = None) -> None:
        self.dir = tmp_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(POLL)  # readiness polling on a real condition
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                reply = s.recv(64)
        except OSError:
            return False
        # With a password, the refusal proves it is up just as well.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-conversation, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def stop(self) -> None:
        self.kill()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
