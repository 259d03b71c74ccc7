"""Docs match the code: every setting is documented in the README, and the README's commands exist."""

from __future__ import annotations

from pathlib import Path

from gomirror.config import SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for s in SETTINGS:
        assert f"| `{s.key}` | `{s.env}` |" in readme, s.key


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m pip install . && gomirror serve" in readme
    assert "scripts/test" in readme
    assert (ROOT / "scripts" / "test").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci
