"""prefetch warms a cache with every file a project's build will ask for: ``gomirror prefetch``'s logic.

:func:`prefetch` resolves the graph (:mod:`gomirror.tools.graph`) while it
fetches: each ``.mod`` read for the walk is itself a prefetched file, the
``.info`` of every version and the zips of go.sum lines start at once, and the
other zips start as soon as the walk has chosen them. At most ``jobs`` files
are in flight. Files come from a :class:`Source`:

- :class:`ServiceSource` asks gomirror's own ``Service`` (built by
  ``app.build``), so every file is verified like any other fetch and stored
  in the local cache; the answer's cache result tells ``fetched`` from
  ``cached``;
- :class:`ServerSource` sends plain GETs to a running gomirror (or any
  GOPROXY) at ``--server URL``, reading gomirror's ``X-Gomirror-Cache``
  header; zips are streamed and discarded, the server keeps them.

Each file ends ``fetched``, ``cached`` or ``failed`` with why. A file whose
``h1:`` differs from the project's go.sum line fails (the go command would
refuse it too); zip hashes are compared in the local mode only, where the
cache's sidecar records them. ``on_progress`` hears of every file started
and finished, for a progress bar.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import aiohttp

from gomirror.errors import GomirrorError, NotFound, StorageError, UpstreamError
from gomirror.module.dirhash import hash_gomod
from gomirror.module.info import is_canonical_for, parse_info, parse_list
from gomirror.module.paths import check, escape_path, escape_version
from gomirror.service import Service
from gomirror.storage.base import Storage
from gomirror.tools.graph import Graph, Inputs, ModuleVersion, resolve

FileKind = Literal["info", "mod", "zip"]
Outcome = Literal["fetched", "cached", "failed"]
KINDS: tuple[FileKind, ...] = ("info", "mod", "zip")
DEFAULT_JOBS = 8
ZIP_READ_CHUNK = 256 << 10


@dataclass(frozen=True, slots=True)
class Got:
    """One file a source answered: how, its body (``.info``/``.mod``; empty for zips), its size."""

    outcome: Literal["fetched", "cached"]
    body: bytes
    size: int
    h1: str | None = None  # recorded h1 of a zip, when the source knows it


class Source(Protocol):
    """Where prefetched files come from (see the module docstring)."""

    name: str

    async def get(self, kind: FileKind, mv: ModuleVersion) -> Got: ...

    async def list_versions(self, module: str) -> list[str]: ...

    async def query(self, module: str, query: str) -> str: ...


class ServiceSource:
    """Files through gomirror's Service: verified, stored in the local cache."""

    name = "cache"

    def __init__(self, service: Service, storage: Storage) -> None:
        self.service = service
        self.storage = storage

    async def get(self, kind: FileKind, mv: ModuleVersion) -> Got:
        check(mv.path, mv.version)
        if kind == "info":
            ans = await self.service.info(mv.path, mv.version)
            return Got(_outcome(ans.cache), ans.body, len(ans.body))
        if kind == "mod":
            ans = await self.service.mod(mv.path, mv.version)
            return Got(_outcome(ans.cache), ans.body, len(ans.body))
        z = await self.service.zip(mv.path, mv.version)
        if z.chunks is not None:
            await _close(z.chunks)
        key = f"{escape_path(mv.path)}/@v/{escape_version(mv.version)}.zip.json"
        return Got(_outcome(z.cache), b"", z.size, _sidecar_h1(await self.storage.get(key)))

    async def list_versions(self, module: str) -> list[str]:
        return parse_list((await self.service.list(module)).body)

    async def query(self, module: str, query: str) -> str:
        return parse_info((await self.service.info(module, query)).body).version


class ServerSource:
    """Files by plain HTTP GETs from a running gomirror (or any GOPROXY server)."""

    def __init__(self, base: str, session: aiohttp.ClientSession, timeout: float = 600.0) -> None:
        self.name = base.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=30)

    def _url(self, module: str, tail: str) -> str:
        return f"{self.name}/{escape_path(module)}/{tail}"

    async def _fetch(self, url: str, *, discard: bool = False) -> tuple[bytes, int, str]:
        try:
            async with self.session.get(url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    text = (await resp.text(errors="replace")).strip().split("\n", 1)[0][:300]
                    err = NotFound if resp.status in (404, 410) else UpstreamError
                    raise err(f"{resp.status} from {self.name}: {text}")
                cache = resp.headers.get("X-Gomirror-Cache", "miss")
                if not discard:
                    body = await resp.read()
                    return body, len(body), cache
                size = 0
                async for chunk in resp.content.iter_chunked(ZIP_READ_CHUNK):
                    size += len(chunk)
                return b"", size, cache
        except (aiohttp.ClientError, TimeoutError) as e:
            raise UpstreamError(f"{self.name}: {type(e).__name__}: {e}") from None

    async def get(self, kind: FileKind, mv: ModuleVersion) -> Got:
        check(mv.path, mv.version)
        url = self._url(mv.path, f"@v/{escape_version(mv.version)}.{kind}")
        body, size, cache = await self._fetch(url, discard=kind == "zip")
        return Got(_outcome(cache), body, size)

    async def list_versions(self, module: str) -> list[str]:
        body, _, _ = await self._fetch(self._url(module, "@v/list"))
        return parse_list(body)

    async def query(self, module: str, query: str) -> str:
        body, _, _ = await self._fetch(self._url(module, f"@v/{escape_version(query)}.info"))
        return parse_info(body).version


def _outcome(cache: str) -> Literal["fetched", "cached"]:
    return "cached" if cache == "hit" else "fetched"


async def _close(chunks: object) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _sidecar_h1(data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        meta = json.loads(data)
    except ValueError:
        return None
    h1 = meta.get("h1") if isinstance(meta, dict) else None
    return h1 if isinstance(h1, str) else None


@dataclass(frozen=True, slots=True)
class FileResult:
    """What happened to one file."""

    kind: FileKind
    mv: ModuleVersion
    outcome: Outcome
    size: int = 0
    error: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "module": self.mv.path,
            "version": self.mv.version,
            "file": self.kind,
            "outcome": self.outcome,
            "bytes": self.size,
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Report:
    """Every file's result, the graph, and the time taken."""

    source: str
    graph: Graph = field(default_factory=Graph)
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: Outcome, kind: FileKind | None = None) -> int:
        return sum(
            1 for f in self.files if f.outcome == outcome and (kind is None or f.kind == kind)
        )

    @property
    def failures(self) -> list[FileResult]:
        return [f for f in self.files if f.outcome == "failed"]

    @property
    def walk_failures(self) -> dict[ModuleVersion, str]:
        """Requirements that could not be resolved to a file (bad version, excluded list failed)."""
        attempted = {f.mv for f in self.files}
        return {mv: why for mv, why in self.graph.failures.items() if mv not in attempted}

    @property
    def bytes_fetched(self) -> int:
        return sum(f.size for f in self.files if f.outcome == "fetched")

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.walk_failures else 0

    def summary(self) -> str:
        g = self.graph
        text = (
            f"{len(g.modules)} modules, {len(g.versions)} versions, {len(g.zips)} zips:"
            f" {self.count('fetched')} files fetched, {self.count('cached')} already cached,"
            f" {self.count('failed') + len(self.walk_failures)} failed"
        )
        return text

    def to_json(self) -> dict[str, object]:
        g = self.graph
        return {
            "source": self.source,
            "modules": len(g.modules),
            "versions": len(g.versions),
            "zips": len(g.zips),
            "fetched": self.count("fetched"),
            "cached": self.count("cached"),
            "failed": self.count("failed") + len(self.walk_failures),
            "bytes_fetched": self.bytes_fetched,
            "seconds": round(self.seconds, 3),
            "by_kind": {
                k: {o: self.count(o, k) for o in ("fetched", "cached", "failed")} for k in KINDS
            },
            "failures": [f.to_json() for f in self.failures]
            + [
                {"module": mv.path, "version": mv.version, "file": "", "error": why}
                for mv, why in sorted(self.walk_failures.items())
            ],
            "excluded": sorted(str(mv) for mv in g.excluded),
            "replaced": {str(k): v for k, v in sorted(g.replaced.items())},
            "selected": dict(sorted(g.selected.items())),
        }


Progress = Callable[[str, FileResult | None], None]  # ("start"|"done", result)


class _Runner:
    """Runs the fetches of one prefetch, at most ``jobs`` at a time, each file once."""

    def __init__(self, source: Source, jobs: int, on_progress: Progress | None) -> None:
        self.source = source
        self.gate = asyncio.Semaphore(max(1, jobs))
        self.on_progress = on_progress or (lambda _event, _result: None)
        self.started: dict[tuple[FileKind, ModuleVersion], asyncio.Task[Got | None]] = {}
        self.results: list[FileResult] = []
        self.gosum: dict[tuple[ModuleVersion, str], str] = {}

    def start(self, kind: FileKind, mv: ModuleVersion) -> asyncio.Task[Got | None]:
        key = (kind, mv)
        task = self.started.get(key)
        if task is None:
            self.on_progress("start", None)
            task = asyncio.get_running_loop().create_task(self._one(kind, mv))
            self.started[key] = task
        return task

    async def _one(self, kind: FileKind, mv: ModuleVersion) -> Got | None:
        async with self.gate:
            try:
                got = await self.source.get(kind, mv)
                self._check_gosum(kind, mv, got)
            except (GomirrorError, StorageError) as e:
                result = FileResult(kind, mv, "failed", error=str(e).split("\n", 1)[0][:300])
                self.results.append(result)
                self.on_progress("done", result)
                return None
        result = FileResult(kind, mv, got.outcome, got.size)
        self.results.append(result)
        self.on_progress("done", result)
        return got

    def _check_gosum(self, kind: FileKind, mv: ModuleVersion, got: Got) -> None:
        if kind == "info":
            return
        want = self.gosum.get((mv, kind))
        have = hash_gomod(got.body) if kind == "mod" else got.h1
        if want is not None and have is not None and want != have:
            what = f"{mv}/go.mod" if kind == "mod" else str(mv)
            raise UpstreamError(
                f"go.sum has {want} for {what} but the verified download has {have};"
                " check go.sum (gomirror doctor explains checksum mismatches)"
            )

    async def read_mod(self, mv: ModuleVersion) -> bytes:
        self.start("info", mv)
        got = await self.start("mod", mv)
        if got is None:
            raise UpstreamError("the .mod could not be fetched")
        return got.body

    async def wait(self) -> None:
        while True:
            pending = [t for t in self.started.values() if not t.done()]
            if not pending:
                return
            await asyncio.gather(*pending)


async def prefetch(
    inputs: Inputs,
    source: Source,
    *,
    jobs: int = DEFAULT_JOBS,
    on_progress: Progress | None = None,
) -> Report:
    """Fetch every file the inputs' graph needs through source (see the module docstring)."""
    t0 = time.monotonic()
    runner = _Runner(source, jobs, on_progress)
    runner.gosum = {(ModuleVersion(s.path, s.version), s.kind): s.h1 for s in inputs.sums}
    for s in inputs.sums:  # known before any walk: start them now
        mv = ModuleVersion(s.path, s.version)
        if is_canonical_for(mv.path, mv.version):
            runner.start("mod", mv)
            runner.start("info", mv)
            if s.kind == "zip":
                runner.start("zip", mv)

    async def canonical(module: str, query: str) -> str:
        return await source.query(module, query)

    graph = await resolve(inputs, runner.read_mod, source.list_versions, canonical)
    for mv in sorted(graph.versions):
        runner.start("info", mv)
        runner.start("mod", mv)
    for mv in sorted(graph.zips):
        runner.start("zip", mv)
    await runner.wait()
    return Report(
        source=source.name,
        graph=graph,
        files=sorted(runner.results, key=lambda f: (f.mv, f.kind)),
        seconds=time.monotonic() - t0,
    )
