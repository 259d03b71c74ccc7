"""project reads what doctor needs from a Go project: go.mod requirements and go.sum lines.

:func:`parse_requirements` reads ``module``, ``go``, ``toolchain``,
``require``, ``replace`` and ``exclude`` directives, single-line and in
blocks, with ``//`` comments and quoted strings, leniently (unknown verbs are
skipped) as the go command's lax mode does; the module's own syntax checks
live in :mod:`gomirror.module.gomod`. :func:`parse_go_sum` returns one
:class:`SumLine` per well-formed go.sum line and the numbers of malformed
ones. :func:`load_project` reads both files of a directory; a missing go.sum
is an empty one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gomirror.errors import ConfigError

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|[^\s()"`]+')


@dataclass(frozen=True, slots=True)
class Requirement:
    path: str
    version: str
    indirect: bool = False


@dataclass(frozen=True, slots=True)
class Replacement:
    old_path: str
    old_version: str  # "" for every version
    new_path: str
    new_version: str  # "" for a local directory

    @property
    def is_local(self) -> bool:
        return self.new_version == ""


@dataclass
class GoModInfo:
    """The parts of a go.mod doctor uses."""

    module: str = ""
    go: str = ""
    toolchain: str = ""
    require: list[Requirement] = field(default_factory=list)
    replace: list[Replacement] = field(default_factory=list)
    exclude: list[tuple[str, str]] = field(default_factory=list)

    def replacement_for(self, path: str, version: str) -> Replacement | None:
        exact = [r for r in self.replace if r.old_path == path and r.old_version == version]
        if exact:
            return exact[-1]
        any_version = [r for r in self.replace if r.old_path == path and not r.old_version]
        return any_version[-1] if any_version else None


@dataclass(frozen=True, slots=True)
class SumLine:
    """One go.sum line: ``kind`` is ``zip`` for the module hash, ``mod`` for ``/go.mod``."""

    path: str
    version: str
    kind: Literal["zip", "mod"]
    h1: str
    lineno: int


@dataclass
class Project:
    """A project directory with its go.mod and go.sum."""

    dir: Path
    gomod: GoModInfo
    sums: list[SumLine]
    bad_sum_lines: list[int]
    has_go_sum: bool

    def sum_for(self, path: str, version: str, kind: str) -> SumLine | None:
        for s in self.sums:
            if s.path == path and s.version == version and s.kind == kind:
                return s
        return None


def _unquote(tok: str) -> str:
    if tok.startswith('"') and tok.endswith('"') and len(tok) >= 2:
        return re.sub(r"\\(.)", r"\1", tok[1:-1])
    if tok.startswith("`") and tok.endswith("`") and len(tok) >= 2:
        return tok[1:-1]
    return tok


def _lines(text: str) -> list[tuple[str, list[str], bool]]:
    """(verb, args, indirect) for every directive line, blocks expanded."""
    out: list[tuple[str, list[str], bool]] = []
    block: str | None = None
    for raw in text.splitlines():
        code, _, comment = raw.partition("//")
        indirect = comment.strip().startswith("indirect")
        toks = _TOKEN.findall(code)
        if not toks:
            continue
        if block is not None:
            if toks == [")"]:
                block = None
                continue
            out.append((block, [_unquote(t) for t in toks], indirect))
            continue
        if len(toks) == 2 and toks[1] == "(":
            block = toks[0]
            continue
        out.append((toks[0], [_unquote(t) for t in toks[1:]], indirect))
    return out


def parse_requirements(data: bytes) -> GoModInfo:
    """Parse the directives doctor needs from a go.mod (see the module docstring)."""
    info = GoModInfo()
    for verb, args, indirect in _lines(data.decode("utf-8", "replace")):
        if verb == "module" and args:
            info.module = args[0]
        elif verb == "go" and args:
            info.go = args[0]
        elif verb == "toolchain" and args:
            info.toolchain = args[0]
        elif verb == "require" and len(args) >= 2:
            info.require.append(Requirement(args[0], args[1], indirect))
        elif verb == "exclude" and len(args) >= 2:
            info.exclude.append((args[0], args[1]))
        elif verb == "replace" and "=>" in args:
            i = args.index("=>")
            old, new = args[:i], args[i + 1 :]
            if len(old) in (1, 2) and len(new) in (1, 2):
                info.replace.append(
                    Replacement(
                        old[0],
                        old[1] if len(old) == 2 else "",
                        new[0],
                        new[1] if len(new) == 2 else "",
                    )
                )
    return info


def parse_go_sum(text: str) -> tuple[list[SumLine], list[int]]:
    """Parse go.sum text into lines and the line numbers that are malformed."""
    sums: list[SumLine] = []
    bad: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        f = line.split()
        if len(f) != 3 or not f[2].startswith("h1:"):
            # Other hash kinds are skipped by the go command too; only h1 is checked.
            if len(f) != 3:
                bad.append(n)
            continue
        path, version, h1 = f
        kind: Literal["zip", "mod"] = "mod" if version.endswith("/go.mod") else "zip"
        sums.append(SumLine(path, version.removesuffix("/go.mod"), kind, h1, n))
    return sums, bad


def load_project(directory: Path) -> Project:
    """Read ``directory``/go.mod and go.sum; raises ConfigError when there is no go.mod."""
    gomod_path = directory / "go.mod"
    try:
        gomod = parse_requirements(gomod_path.read_bytes())
    except OSError as e:
        raise ConfigError(f"{gomod_path}: cannot read go.mod: {e.strerror}") from None
    sum_path = directory / "go.sum"
    try:
        text = sum_path.read_text(encoding="utf-8", errors="replace")
        has_sum = True
    except OSError:
        text, has_sum = "", False
    sums, bad = parse_go_sum(text)
    return Project(directory, gomod, sums, bad, has_sum)
