"""The package layering of docs/design.md holds: lower layers never import upper ones.

Read from the source with ``ast`` (no imports run): ``module/``, ``storage/``,
``coordination/``, ``upstream/`` and ``sumdb/`` import nothing from ``server/``,
``app``, ``cli/`` or ``service``; ``module/`` imports no other gomirror package
but ``errors``; ``upstream/chain.py`` imports no concrete upstream.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gomirror"
UPPER = ("gomirror.server", "gomirror.app", "gomirror.cli", "gomirror.service", "gomirror.wiring")
SIBLING = "sh" + "ared"  # the reference folder beside the checkout, which a clone lacks
OUTSIDE = "../" + SIBLING
LOWER = ("module", "storage", "coordination", "upstream", "sumdb")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("gomirror")}


def files(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", LOWER)
def test_lower_layers_never_import_upper_ones(package: str) -> None:
    bad = {
        f"{p.relative_to(SRC)} imports {name}"
        for p in files(package)
        for name in imports_of(p)
        if name.startswith(UPPER)
    }
    assert not bad


def test_module_package_is_pure() -> None:
    allowed = ("gomirror.module", "gomirror.errors")
    bad = {
        f"{p.relative_to(SRC)} imports {name}"
        for p in files("module")
        for name in imports_of(p)
        if not name.startswith(allowed)
    }
    assert not bad


def test_chain_imports_no_concrete_upstream() -> None:
    concrete = ("proxy", "direct", "git", "vcsrepo", "discovery", "verified", "off", "router")
    names = imports_of(SRC / "upstream" / "chain.py") | imports_of(SRC / "upstream" / "policy.py")
    assert not {n for n in names if any(n.startswith(f"gomirror.upstream.{c}") for c in concrete)}


def test_sources_read_nothing_outside_the_repository() -> None:
    root = SRC.parents[1]
    for top in ("src", "tests", "bench"):
        for p in (root / top).rglob("*.py"):
            if p == Path(__file__).resolve():
                continue
            text = p.read_text(encoding="utf-8")
            assert OUTSIDE not in text.replace("\\", "/"), p
            assert f'"{SIBLING}" / ' not in text and f"'{SIBLING}' / " not in text, p
