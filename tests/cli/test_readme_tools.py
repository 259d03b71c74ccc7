"""The README's Tools section has a real session for every tool command, and names only commands that exist."""

from __future__ import annotations

import re
from pathlib import Path

from gomirror.cli.main import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
COMMANDS = ["bench", "doctor", "setup", "prefetch", "cache stats", "cache gc", "cache purge"]
COMMANDS += ["cache export", "cache import", "serve --upstream off"]


def tools_section() -> str:
    text = README.read_text()
    start = text.index("\n## Tools\n")
    return text[start : text.index("\n## ", start + 1)]


def test_every_tool_has_a_session_with_its_exit_status() -> None:
    section = tools_section()
    sessions = re.findall(r"^\$ (?:\S+=\S+ )?gomirror (.+)$", section, flags=re.MULTILINE)
    for cmd in COMMANDS:
        assert any(s.startswith(cmd) for s in sessions), f"no session of gomirror {cmd}"
    assert section.count("# exit status") >= len(COMMANDS) - 1  # serve runs in the background
    assert "/-/admin/purge" in section and "setup --profile ci" in section


def test_sessions_use_real_subcommands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    choices = getattr(sub, "choices", {})
    for line in re.findall(r"^\$ (?:\S+=\S+ )?gomirror (\S+)", tools_section(), flags=re.MULTILINE):
        assert line in choices, line
