"""Fixtures shared by the upstream tests: a directory of real git repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.gitrepos import GitWorld


@pytest.fixture
def world(tmp_path: Path) -> GitWorld:
    """Repositories reachable as ``https://github.com/<owner>/<repo>`` through a git config."""
    return GitWorld(tmp_path / "world")
