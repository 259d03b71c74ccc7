"""configdoc renders the README's settings reference from ``config.SETTINGS``, so the two cannot drift.

``settings_table()`` is the Markdown table (grouped by section, in ``SECTIONS``
order); ``replace_table(text)`` puts it between the ``<!-- settings-table -->``
markers of a document. ``python3 -m gomirror.configdoc`` prints the table;
``python3 -m gomirror.configdoc --write README.md`` updates the file in place.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gomirror.config import SECTIONS, SETTINGS, Setting

BEGIN = "<!-- settings-table -->"
END = "<!-- /settings-table -->"
HEADER = (
    "| key (TOML `section.key`) | environment | flag | default | meaning |\n|---|---|---|---|---|"
)


def _cell(text: str) -> str:
    # A bare | ends a table cell in GitHub Markdown, even inside backticks.
    return text.replace("|", "\\|")


def _code(value: str) -> str:
    return f"`{value}`"


def shown_default(setting: Setting) -> str:
    """The default as the README shows it: the setting's own text, else the field default."""
    if setting.shown_default is not None:
        return setting.shown_default
    value: Any = getattr(SECTIONS[setting.section](), setting.targets[0])
    if value is None or value in ("", ()) or (isinstance(value, Mapping) and not value):
        return "(empty)"
    if isinstance(value, bool):
        return _code("true" if value else "false")
    return _code(str(value))


def _flag(setting: Setting) -> str:
    if setting.flag is None:
        return ""
    text = _code(setting.option)
    if setting.flag.commands is not None:
        text += f" ({', '.join(setting.flag.commands)})"
    return text


def settings_table() -> str:
    """The settings reference as one Markdown table, ending in a newline."""
    rows = [HEADER]
    for section in SECTIONS:
        for s in (s for s in SETTINGS if s.section == section):
            cells = (
                _code(f"{s.section}.{s.key}"),
                _code(s.env),
                _flag(s),
                shown_default(s),
                s.help,
            )
            rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"


def replace_table(text: str) -> str:
    """text with everything between the settings-table markers replaced by the table."""
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the markers {BEGIN} and {END} are missing")
    return head + sep + settings_table() + END + tail


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m gomirror.configdoc", description=__doc__)
    p.add_argument("--write", type=Path, metavar="FILE", help="update FILE between the markers")
    args = p.parse_args(argv)
    if args.write is None:
        sys.stdout.write(settings_table())
        return 0
    path: Path = args.write
    path.write_text(replace_table(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
