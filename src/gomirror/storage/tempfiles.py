"""storage.tempfiles gives each process its own temp directory and sweeps those of dead processes.

Downloads and writes go to ``<base>/<host>-<pid>-<random>/`` first. The
owning process holds an exclusive ``flock`` on ``.owner`` inside it for its
whole life; the kernel drops that lock when the process dies, however it
dies. At start-up (and on ``sweep()``), every directory whose lock can be
taken belongs to a dead process and is removed, so ``kill -9`` leaves no
temp file behind for long, while the live downloads of other workers or
instances sharing the cache (their directories are locked) are never touched.
Loose files from older layouts are removed once they are an hour old.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

OWNER_FILE = ".owner"
LOOSE_FILE_MAX_AGE = 3600.0


class TempArea:
    """This process's temp directory under ``base`` (see the module docstring)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname().replace("/", "_")[:40] or "host"
        name = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Lock first under a hidden name, then rename: a sweeper never sees it unlocked.
        staging = base / f".new-{name}"
        staging.mkdir()
        self._fd = os.open(staging / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir = base / name
        staging.rename(self.dir)
        self.swept = self.sweep()

    def path(self, suffix: str = "") -> Path:
        """A fresh path in this process's directory (nothing is created)."""
        return self.dir / f"{uuid.uuid4().hex}{suffix}"

    def sweep(self) -> int:
        """Remove the directories of dead processes and old loose files; return how many."""
        removed = 0
        try:
            entries = list(self.base.iterdir())
        except OSError:
            return 0
        cutoff = time.time() - LOOSE_FILE_MAX_AGE
        for entry in entries:
            if entry == self.dir:
                continue
            try:
                if entry.name.startswith(".new-") and entry.stat().st_mtime >= cutoff:
                    continue  # another process is creating its directory right now
                if entry.is_dir() and not entry.is_symlink():
                    if _owner_dead(entry):
                        shutil.rmtree(entry, ignore_errors=True)
                        removed += 1
                elif entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            log.info("removed temp files of dead processes", extra={"count": removed})
        return removed

    def close(self) -> None:
        """Remove this process's directory and release its lock."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _owner_dead(directory: Path) -> bool:
    try:
        fd = os.open(directory / OWNER_FILE, os.O_RDWR)
    except FileNotFoundError:
        # Created but not yet locked by its owner, or an old layout: only an old one is dead.
        return directory.stat().st_mtime < time.time() - LOOSE_FILE_MAX_AGE
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True
