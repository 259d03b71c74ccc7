"""Docs match the code: the README's settings table is the generated one, its examples load, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from gomirror.config import SETTINGS, load_config
from gomirror.configdoc import BEGIN, END, replace_table, settings_table

ROOT = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_settings_table_is_generated_from_settings() -> None:
    readme = _readme()
    assert replace_table(readme) == readme, (
        "README settings table is stale: run python3 -m gomirror.configdoc --write README.md"
    )
    block = readme.split(BEGIN + "\n", 1)[1].split(END, 1)[0]
    assert block == settings_table()


def test_generated_table_has_one_row_per_setting() -> None:
    table = settings_table()
    for s in SETTINGS:
        assert f"| `{s.section}.{s.key}` | `{s.env}` |" in table, s.key
        if s.flag is not None:
            assert f"`{s.option}`" in table, s.key
    assert table.count("\n") == len(SETTINGS) + 2


def test_readme_toml_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _readme(), flags=re.DOTALL)
    assert blocks
    for n, block in enumerate(blocks):
        f = tmp_path / f"example{n}.toml"
        f.write_text("\n".join(line.strip() for line in block.splitlines()) + "\n")
        load_config(config_file=f, env={})


def test_readme_commands_exist() -> None:
    readme = _readme()
    assert "python3 -m pip install . && gomirror serve" in readme
    assert "scripts/test" in readme
    assert (ROOT / "scripts" / "test").is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test" in ci
