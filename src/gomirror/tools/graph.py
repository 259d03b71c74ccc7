"""graph resolves the module graph the go command will need for a project, as ``prefetch`` and ``export`` use it.

Inputs (:func:`load_inputs`): ``go.mod`` (its ``require``, ``replace`` and
``exclude`` directives, plus the ``go.sum`` next to it), ``go.sum`` alone,
``go.work`` (every ``use``'d module's go.mod and go.sum, and the workspace's
own ``replace`` directives, which win over the modules'), or a directory
(its go.work if it has one, else its go.mod, else its go.sum).

:func:`resolve` walks the graph the way the go command loads it when no
module is pruned: starting from the main modules' requirements it reads every
required version's ``.mod`` (through ``read_mod``, concurrently) and follows
its requirements, applying only the main modules' ``replace`` and
``exclude`` (as Go does): a replaced version is read from its replacement (a
module version, or a local directory whose go.mod is read from disk). A
requirement on an excluded version is never read; its module's next higher
listed version that is not excluded (``list_versions``) is walked instead,
which is what go before 1.16 used, and what ``go get`` or ``go mod tidy``
add once go 1.16+ has dropped the requirement. The result is
every module version whose ``.mod`` may be read (``versions``), and those
whose zips a build needs (``zips``): the highest version of each module (the
MVS choice), each main module's direct requirements (a pruned graph may
select those), and every version with a module hash in a go.sum. Every
go.sum line is needed as it is (its ``.mod``, and its zip for an ``h1:``
line of the module itself). Failures to read a ``.mod`` are collected, not
raised; the walk goes on with the rest.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from gomirror.errors import ConfigError, GomirrorError
from gomirror.module import semver
from gomirror.module.info import is_canonical_for
from gomirror.tools.project import GoModInfo, Replacement, SumLine, parse_go_sum, parse_requirements

__all__ = [
    "Graph",
    "Inputs",
    "MainModule",
    "ModuleVersion",
    "load_inputs",
    "resolve",
]

_USE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|[^\s()"`]+')


@dataclass(frozen=True, slots=True, order=True)
class ModuleVersion:
    """One module version: a path and a canonical version."""

    path: str
    version: str

    def __str__(self) -> str:
        return f"{self.path}@{self.version}"


@dataclass
class MainModule:
    """One main module: its directory and parsed go.mod."""

    dir: Path
    gomod: GoModInfo


@dataclass
class Inputs:
    """What the given files say the build needs."""

    mains: list[MainModule] = field(default_factory=list)
    sums: list[SumLine] = field(default_factory=list)
    replace: list[Replacement] = field(default_factory=list)  # precedence order: first wins
    exclude: set[ModuleVersion] = field(default_factory=set)
    sources: list[Path] = field(default_factory=list)  # the files read, for the report

    def replacement_for(self, mv: ModuleVersion) -> Replacement | None:
        exact = [r for r in self.replace if r.old_path == mv.path and r.old_version == mv.version]
        if exact:
            return exact[0]
        any_version = [r for r in self.replace if r.old_path == mv.path and not r.old_version]
        return any_version[0] if any_version else None


@dataclass
class Graph:
    """The resolved graph (see the module docstring)."""

    versions: set[ModuleVersion] = field(default_factory=set)  # .mod (and .info) needed
    zips: set[ModuleVersion] = field(default_factory=set)
    gosum: dict[tuple[ModuleVersion, str], str] = field(default_factory=dict)  # (mv, kind) → h1
    selected: dict[str, str] = field(default_factory=dict)  # module path → MVS version
    failures: dict[ModuleVersion, str] = field(default_factory=dict)
    excluded: set[ModuleVersion] = field(default_factory=set)  # excluded versions met
    replaced: dict[ModuleVersion, str] = field(default_factory=dict)  # old → "new@v" or dir

    @property
    def modules(self) -> set[str]:
        return {mv.path for mv in self.versions | self.zips}


# --- inputs ------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None


def _add_gomod(inputs: Inputs, gomod_path: Path, *, with_sum: bool = True) -> None:
    info = parse_requirements(_read(gomod_path))
    if not info.module:
        raise ConfigError(f"{gomod_path}: no module directive; is this a go.mod file?")
    inputs.mains.append(MainModule(gomod_path.parent, info))
    inputs.sources.append(gomod_path)
    inputs.replace.extend(_absolute(r, gomod_path.parent) for r in info.replace)
    inputs.exclude.update(ModuleVersion(p, v) for p, v in info.exclude)
    if with_sum and (gomod_path.parent / "go.sum").is_file():
        _add_gosum(inputs, gomod_path.parent / "go.sum")


def _absolute(r: Replacement, base: Path) -> Replacement:
    """A local-directory replacement with its directory made absolute (relative to its go.mod)."""
    if not r.is_local:
        return r
    return Replacement(r.old_path, r.old_version, str((base / r.new_path).resolve()), "")


def _add_gosum(inputs: Inputs, path: Path) -> None:
    sums, bad = parse_go_sum(_read(path).decode("utf-8", "replace"))
    if bad:
        raise ConfigError(f"{path}:{bad[0]}: malformed go.sum line; run go mod tidy to rewrite it")
    inputs.sums.extend(sums)
    inputs.sources.append(path)


def _work_lines(text: str) -> list[tuple[str, list[str]]]:
    """(verb, args) for every directive line of a go.work, blocks expanded."""
    out: list[tuple[str, list[str]]] = []
    block: str | None = None
    for raw in text.splitlines():
        toks = [t.strip('"`') for t in _USE_TOKEN.findall(raw.split("//", 1)[0])]
        if not toks:
            continue
        if block is not None:
            if toks == [")"]:
                block = None
            else:
                out.append((block, toks))
        elif len(toks) == 2 and toks[1] == "(":
            block = toks[0]
        else:
            out.append((toks[0], toks[1:]))
    return out


def _add_gowork(inputs: Inputs, path: Path) -> None:
    text = _read(path).decode("utf-8", "replace")
    inputs.sources.append(path)
    # The workspace's replacements win over its modules': they go first.
    work = parse_requirements(text.encode())
    inputs.replace[:0] = [_absolute(r, path.parent) for r in work.replace]
    used = [args[0] for verb, args in _work_lines(text) if verb == "use" and args]
    if not used:
        raise ConfigError(f"{path}: no use directives; a workspace needs at least one module")
    for d in used:
        gomod = (path.parent / d / "go.mod").resolve()
        if not gomod.is_file():
            raise ConfigError(f"{path}: use {d}: no go.mod in {gomod.parent}")
        _add_gomod(inputs, gomod)
    if (path.parent / "go.work.sum").is_file():
        _add_gosum(inputs, path.parent / "go.work.sum")


def load_inputs(targets: list[Path]) -> Inputs:
    """Read every target (go.mod, go.sum, go.work or a directory); ConfigError says what is wrong."""
    inputs = Inputs()
    for t in targets:
        if t.is_dir():
            if (t / "go.work").is_file():
                _add_gowork(inputs, t / "go.work")
            elif (t / "go.mod").is_file():
                _add_gomod(inputs, t / "go.mod")
            elif (t / "go.sum").is_file():
                _add_gosum(inputs, t / "go.sum")
            else:
                raise ConfigError(f"{t}: no go.work, go.mod or go.sum in this directory")
        elif not t.exists():
            raise ConfigError(f"{t}: no such file or directory")
        elif t.name == "go.work":
            _add_gowork(inputs, t)
        elif t.name.endswith(".sum"):
            _add_gosum(inputs, t)
        else:
            _add_gomod(inputs, t, with_sum=t.name == "go.mod")
    return inputs


# --- resolution --------------------------------------------------------------

ReadMod = Callable[[ModuleVersion], Awaitable[bytes]]
ListVersions = Callable[[str], Awaitable[list[str]]]
Canonical = Callable[[str, str], Awaitable[str]]


def _error_text(e: BaseException) -> str:
    return str(e).split("\n", 1)[0][:300] or type(e).__name__


class _Walk:
    """One concurrent walk of the graph."""

    def __init__(
        self, inputs: Inputs, read_mod: ReadMod, list_versions: ListVersions, canonical: Canonical
    ) -> None:
        self.inputs = inputs
        self.read_mod = read_mod
        self.list_versions = list_versions
        self.canonical = canonical
        self.graph = Graph()
        self.main_paths = {m.gomod.module for m in inputs.mains}
        self.nodes: set[ModuleVersion] = set()  # requirement-side versions visited
        self.local_dirs: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, req: ModuleVersion) -> None:
        task = asyncio.get_running_loop().create_task(self.visit(req))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self) -> Graph:
        for main in self.inputs.mains:
            self.require_all(main.gomod)
        while self.tasks:
            await asyncio.gather(*list(self.tasks))
        return self.graph

    def require_all(self, gomod: GoModInfo) -> None:
        for r in gomod.require:
            if r.path not in self.main_paths:
                self.spawn(ModuleVersion(r.path, r.version))

    async def visit(self, req: ModuleVersion) -> None:
        g = self.graph
        try:
            req = await self.settle(req)
        except GomirrorError as e:
            g.failures[req] = _error_text(e)
            return
        if req.version == "" or req in self.nodes:
            return
        self.nodes.add(req)
        target = self.inputs.replacement_for(req)
        if target is not None and target.is_local:
            g.replaced[req] = target.new_path
            if target.new_path not in self.local_dirs:
                self.local_dirs.add(target.new_path)
                self.visit_local(Path(target.new_path), req)
            return
        fetch = req
        if target is not None:
            fetch = ModuleVersion(target.new_path, target.new_version)
            g.replaced[req] = str(fetch)
        g.versions.add(fetch)
        try:
            data = await self.read_mod(fetch)
        except GomirrorError as e:
            g.failures[fetch] = _error_text(e)
            return
        self.require_all(parse_requirements(data))

    def visit_local(self, directory: Path, req: ModuleVersion) -> None:
        try:
            data = (directory / "go.mod").read_bytes()
        except OSError as e:
            self.graph.failures[req] = f"replacement directory {directory}: {e.strerror or e}"
            return
        self.require_all(parse_requirements(data))

    async def settle(self, req: ModuleVersion) -> ModuleVersion:
        """The version a requirement means: canonical, and past any excluded versions."""
        version = req.version
        if not is_canonical_for(req.path, version):
            if self.inputs.replacement_for(req) is not None and not semver.is_valid(version):
                return req  # a local replacement's placeholder version, kept as written
            version = await self.canonical(req.path, version)
        mv = ModuleVersion(req.path, version)
        if mv not in self.inputs.exclude:
            return mv
        self.graph.excluded.add(mv)
        later = [
            v
            for v in await self.list_versions(mv.path)
            if semver.compare(v, version) > 0
            and ModuleVersion(mv.path, v) not in self.inputs.exclude
        ]
        return ModuleVersion(mv.path, min(later, key=semver.sort_key) if later else "")


def _select(graph: Graph, inputs: Inputs, nodes: set[ModuleVersion]) -> None:
    """Pick the zips: MVS maxima, direct requirements, go.sum module hashes."""
    best: dict[str, str] = {}
    for mv in nodes:
        if mv.version and (mv.path not in best or semver.compare(mv.version, best[mv.path]) > 0):
            best[mv.path] = mv.version
    graph.selected = best
    chosen = {ModuleVersion(p, v) for p, v in best.items()}
    for main in inputs.mains:
        for r in main.gomod.require:
            mv = ModuleVersion(r.path, r.version)
            if mv in nodes:
                chosen.add(mv)
    for mv in chosen:
        target = inputs.replacement_for(mv)
        if target is None:
            graph.zips.add(mv)
        elif not target.is_local:
            graph.zips.add(ModuleVersion(target.new_path, target.new_version))
    for s in inputs.sums:
        mv = ModuleVersion(s.path, s.version)
        graph.gosum[(mv, s.kind)] = s.h1
        graph.versions.add(mv)
        if s.kind == "zip":
            graph.zips.add(mv)
    graph.versions |= graph.zips


async def resolve(
    inputs: Inputs, read_mod: ReadMod, list_versions: ListVersions, canonical: Canonical
) -> Graph:
    """Walk the graph of inputs (see the module docstring)."""
    walk = _Walk(inputs, read_mod, list_versions, canonical)
    graph = await walk.run()
    _select(graph, inputs, walk.nodes)
    return graph
