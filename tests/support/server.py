"""server starts a real ``gomirror serve`` process on 127.0.0.1 for tests, and stops it.

``GomirrorProcess`` runs the installed CLI exactly as a user would (a separate
process, so ``kill -9`` tests are real), waits until the port accepts
connections, and keeps the process's stderr log in a file for assertions.
Prediction (``GOMIRROR_PREDICT``) is ``off`` unless ``env`` sets it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GomirrorProcess:
    """One gomirror server process (see the module docstring)."""

    def __init__(
        self,
        tmp: Path,
        *,
        upstream: str,
        cache_dir: Path | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        sumdb: str | None = "off",
    ) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.cache_dir = cache_dir or tmp / "cache"
        self.log_path = tmp / f"gomirror-{self.port}.log"
        args = [
            sys.executable,
            "-m",
            "gomirror.cli.main",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--cache-dir",
            str(self.cache_dir),
            "--upstream",
            upstream,
            "--log-level",
            "debug",
        ]
        if sumdb is not None:
            args += ["--sumdb", sumdb]
        self.args = args + (extra_args or [])
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("GOMIRROR_")}
        base_env.update(env or {})
        # Prediction (gomirror.predict) adds background upstream traffic; tests count exact
        # traffic, so it is off unless a test (tests/predict/, bench/cold.py) turns it on.
        base_env.setdefault("GOMIRROR_PREDICT", "off")
        base_env.setdefault("HOME", str(tmp / "home"))
        self.env = base_env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> GomirrorProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gomirror exited early ({self.proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gomirror did not start:\n{self.log()}") from None
                time.sleep(0.02)  # readiness polling, not synchronisation on behaviour

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        """GET a path; returns status, headers and body (errors included)."""
        req = urllib.request.Request(self.url + path)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def __enter__(self) -> GomirrorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
