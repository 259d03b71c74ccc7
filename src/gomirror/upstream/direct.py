"""upstream.direct is the ``direct`` Upstream: it builds module files from git like the go command.

Contract: :class:`DirectUpstream` implements ``upstream.base.Upstream`` for
modules that live in git repositories. It finds the repository with
``upstream.discovery`` (config rules, well-known hosts, ``.git`` qualifiers,
go-get), mirrors it into a bare cache repository with ``upstream.git`` and
applies the go command's version rules with ``upstream.vcsrepo``:

- ``list``: canonical semver tags (``+incompatible`` where allowed), no
  pseudo-versions, retracted versions included; empty body for no tags;
- ``info``: any query (tag, branch, commit hash, semver, pseudo-version,
  ``latest``) resolved to a canonical version, with ``Origin`` {VCS, URL,
  Hash, Ref} for tags and {VCS, URL, Hash} for pseudo-versions (plus
  ``Subdir`` for modules below the repository root); the URL never carries
  credentials;
- ``latest``: the highest non-retracted release, else pre-release, else the
  default branch's pseudo-version;
- ``mod`` / ``zip``: only for a canonical version that resolves to itself; the
  go.mod bytes as committed (or ``module <path>\\n``), and the zip built from
  ``git archive`` with ``module.modzip.create_zip`` so its ``h1:`` equals the
  go command's.

Missing modules, versions and invalid version/path combinations raise
``NotFound`` with the go command's wording; git, network and authentication
failures raise ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import logging
import os
import shutil
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from gomirror.errors import InvalidContent, NotFound
from gomirror.module import info as modinfo
from gomirror.module import modzip, paths, pseudo
from gomirror.storage.tempfiles import TempArea
from gomirror.upstream import archivestream
from gomirror.upstream.base import Checked, Fetched, FirstByte
from gomirror.upstream.discovery import Discoverer, DiscoverySettings, RepoRoot, RepoRule
from gomirror.upstream.git import GitRepo, GitRunner, GitSettings, redact_url
from gomirror.upstream.git_prebuild import ZipPrebuilder
from gomirror.upstream.vcsrepo import ArchiveFile, CodeRepo, Resolved

log = logging.getLogger(__name__)
PACKERS = 4  # threads hashing and compressing streamed archives, at most (and at most the cores)
MAX_BUILT_FACTS = 64  # zips built but not yet asked for (prebuilt ones wait at most a minute)


@dataclasses.dataclass(frozen=True)
class DirectConfig:
    """Settings of :class:`DirectUpstream`.

    cache_dir: where bare mirrors (one per repository URL) and temp files live.
    rules: explicit repository rules, tried first (see ``discovery.RepoRule``).
    known_hosts: resolve github.com, bitbucket.org ... without network, as Go does.
    go_get: allow ``?go-get=1`` discovery for other hosts.
    insecure: GOINSECURE-style patterns: plain http (and no TLS checks) for go-get.
    tokens: host -> ``user:secret`` (or a bare token, user ``x-access-token``)
        sent as https basic auth through git's environment, never argv or logs.
    git_config: a git config file used as GIT_CONFIG_GLOBAL (``url.*.insteadOf``,
        ssh commands...); system and user config are never read.
    git_timeout / max_git_processes: per-process timeout and concurrency bound.
    refs_ttl: how long a repository's ref listing is reused before ``ls-remote``.
    prebuild_zips: zips built ahead when their ``.info`` is asked for, at most (0: none).
    resolve: host -> ``ip:port`` overrides for go-get requests (split DNS, tests).
    """

    cache_dir: Path
    rules: tuple[RepoRule, ...] = ()
    known_hosts: bool = True
    go_get: bool = True
    insecure: str = ""
    tokens: Mapping[str, str] = dataclasses.field(default_factory=dict)
    git_config: Path | None = None
    git_timeout: float = 300.0
    max_git_processes: int = 8
    refs_ttl: float = 30.0
    prebuild_zips: int = 8
    discovery_timeout: float = 30.0
    resolve: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    git_binary: str = "git"


class DirectUpstream:
    """Builds module files from git (see the module docstring for the contract)."""

    def __init__(self, config: DirectConfig) -> None:
        self.config = config
        self._runner = GitRunner(
            GitSettings(
                timeout=config.git_timeout,
                max_processes=config.max_git_processes,
                git_config=config.git_config,
                tokens=config.tokens,
                extra_env=config.extra_env,
                git_binary=config.git_binary,
            )
        )
        self._discoverer = Discoverer(
            DiscoverySettings(
                rules=config.rules,
                known_hosts=config.known_hosts,
                go_get=config.go_get,
                insecure=config.insecure,
                timeout=config.discovery_timeout,
                resolve=config.resolve,
            )
        )
        self._repos: dict[str, GitRepo] = {}
        # (module, version, commit) -> what writing its zip established, for the verifier.
        self._built: OrderedDict[tuple[str, str, str], Checked] = OrderedDict()
        # Archives and zips being built live in this process's own temp directory;
        # those of dead processes (kill -9 mid-build) are swept here, at start-up.
        self._temp = TempArea(config.cache_dir / "tmp")
        self._readers: ThreadPoolExecutor | None = None  # read git archives as they stream
        self._packers: ThreadPoolExecutor | None = None  # hash and compress what they carry
        self._prebuilt = ZipPrebuilder(self._temp.dir, self._prebuild, limit=config.prebuild_zips)

    @property
    def name(self) -> str:
        """Always ``direct``."""
        return "direct"

    async def close(self) -> None:
        """Close the discovery HTTP session, drop unclaimed prebuilt zips, remove the temp directory."""
        await self._prebuilt.close()
        await self._discoverer.close()
        for repo in self._repos.values():
            await repo.close()
        await asyncio.to_thread(self._temp.close)
        for pool in (self._readers, self._packers):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    # -- plumbing -------------------------------------------------------------------

    async def _code(self, module: str) -> tuple[CodeRepo, RepoRoot]:
        paths.check_path(module)
        root = await self._discoverer.find(module)
        if root.vcs == "mod":
            raise NotFound(
                f"{module}: go-import names module proxy {redact_url(root.url)}, not a repository"
            )
        repo = self._repos.get(root.url)
        if repo is None:
            repo = GitRepo(
                self._runner, self.config.cache_dir / "git", root.url, self.config.refs_ttl
            )
            self._repos[root.url] = repo
        return CodeRepo(repo, module, root.root, root.subdir), root

    def _info_bytes(self, code: CodeRepo, resolved: Resolved) -> bytes:
        origin: dict[str, Any] = {
            "VCS": "git",
            "URL": code.git.public_url,
            "Subdir": code.code_dir,
            "Hash": resolved.info.name,
        }
        if resolved.tag and not pseudo.is_pseudo_version(resolved.version):
            origin["Ref"] = "refs/tags/" + resolved.tag
        when = dt.datetime.fromtimestamp(resolved.info.time, tz=dt.UTC)
        return modinfo.format_info(modinfo.Info(version=resolved.version, time=when, origin=origin))

    async def _exact(self, module: str, version: str) -> tuple[CodeRepo, Resolved]:
        if version != paths.canonical_version(version):
            raise NotFound(f"{module}@{version}: invalid version: version is not canonical")
        code, _ = await self._code(module)
        resolved = await code.stat(version)
        if resolved.version != version:
            raise NotFound(f"{module}@{version}: invalid version: resolves to {resolved.version}")
        return code, resolved

    # -- Upstream -----------------------------------------------------------------------

    async def list(self, module: str) -> Fetched:
        """Tagged versions, one per line."""
        code, _ = await self._code(module)
        versions = await code.versions()
        return Fetched("".join(v + "\n" for v in versions).encode(), self.name)

    async def info(self, module: str, query: str) -> Fetched:
        """Resolve query and describe the version; start building its zip meanwhile."""
        code, _ = await self._code(module)
        canonical = query == paths.canonical_version(query)
        if canonical:
            # The go command asks for the zip next: build it while the rest of
            # the resolution (retractions: the newest tag's go.mod) runs.
            self._prebuilt.start(module, query)
        try:
            resolved = await code.stat(query)
        except BaseException:
            if canonical:
                self._prebuilt.discard(module, query)
            raise
        if resolved.version != query:
            if canonical:
                self._prebuilt.discard(module, query)
            self._prebuilt.start(module, resolved.version)
        return Fetched(self._info_bytes(code, resolved), self.name)

    async def latest(self, module: str) -> Fetched:
        """The ``@latest`` answer; start building its zip meanwhile."""
        code, _ = await self._code(module)
        resolved = await code.latest()
        self._prebuilt.start(module, resolved.version)
        return Fetched(self._info_bytes(code, resolved), self.name)

    async def mod(self, module: str, version: str) -> Fetched:
        """The go.mod of a canonical version."""
        code, _ = await self._exact(module, version)
        return Fetched(await code.gomod(version), self.name)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        """Build the module zip of a canonical version into dst (or take the prebuilt one)."""
        code, resolved = await self._exact(module, version)
        commit = resolved.info.name
        if await self._prebuilt.take(module, version, commit, dst):
            log.info("direct zip prebuilt", extra={"mod_path": module, "version": version})
        else:
            commit = await self._build_zip(code, module, version, dst)
        built = self._built.pop((module, version, commit), None)
        if built is not None and built.size != (await asyncio.to_thread(dst.stat)).st_size:
            built = None  # not the file that was written: let the verifier read it
        return Fetched(b"", self.name, built=built)

    async def _prebuild(self, module: str, version: str, dst: Path) -> str:
        code, _ = await self._code(module)
        return await self._build_zip(code, module, version, dst)

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        """(readers, packers): a thread per git archive being read, and the packing threads."""
        if self._readers is None or self._packers is None:
            readers = max(1, self.config.max_git_processes)
            self._readers = ThreadPoolExecutor(readers, thread_name_prefix="zip-read")
            workers = min(PACKERS, os.cpu_count() or 1)
            self._packers = ThreadPoolExecutor(workers, thread_name_prefix="zip-pack")
        return self._readers, self._packers

    async def _build_zip(self, code: CodeRepo, module: str, version: str, dst: Path) -> str:
        """Archive version's tree and write the module zip to dst; return the commit.

        First as a stream (files hashed and compressed while git still
        writes the archive); an archive the stream reader does not handle
        (``archivestream.Unstreamable``) is written to a file and read from there.
        """
        readers, pool = self._pools()
        try:
            commit, files = await code.archive_stream(
                version,
                lambda f, subdir: archivestream.read_members(
                    f, subdir, pool, archivestream.STREAM_LIMIT
                ),
                readers,
            )
        except archivestream.Unstreamable as exc:
            log.debug("direct zip from a file", extra={"mod_path": module, "reason": str(exc)})
        else:
            result = await asyncio.to_thread(_create_streamed, dst, module, version, files)
            self._remember_built(module, version, commit, result, dst)
            return commit
        tmp = Path(tempfile.mkdtemp(prefix="archive-", dir=self._temp.dir))
        try:
            commit, files, archive = await code.archive_files(version, tmp / "archive.zip")
            result = await asyncio.to_thread(_create, dst, module, version, files, archive)
            self._remember_built(module, version, commit, result, dst)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        return commit

    def _remember_built(
        self, module: str, version: str, commit: str, result: modzip.CreateResult, dst: Path
    ) -> None:
        """Keep what writing dst established (its h1:, size, entries) for the verifier."""
        size = dst.stat().st_size
        self._built[(module, version, commit)] = Checked(result.h1, {}, size, result.files)
        while len(self._built) > MAX_BUILT_FACTS:
            self._built.popitem(last=False)
        log.info(
            "direct zip built", extra={"mod_path": module, "version": version, "h1": result.h1}
        )


def _create_streamed(
    dst: Path, module: str, version: str, files: list[ArchiveFile]
) -> modzip.CreateResult:
    """Run create_zip over files packed while the archive streamed (in a worker thread)."""

    def opener(f: ArchiveFile) -> modzip.ZipFile:
        kind = modzip.FileKind(f.kind)
        data = f.data

        def unread() -> BinaryIO:  # only go.mod (kept) and added files are ever read
            if data is None:
                raise InvalidContent(f"{f.path}: content not kept")
            return io.BytesIO(data)

        return modzip.ZipFile(f.path, f.size, unread, kind, data, packed=f.packed)

    return _write_zip(dst, module, version, [opener(f) for f in files])


def _write_zip(
    dst: Path, module: str, version: str, inputs: list[modzip.ZipFile]
) -> modzip.CreateResult:
    """create_zip into dst; content the zip rules refuse makes the version not found."""
    try:
        with dst.open("wb") as out:
            return modzip.create_zip(out, module, version, inputs)
    except InvalidContent as exc:
        dst.unlink(missing_ok=True)
        raise NotFound(f"{module}@{version}: create zip: {exc}") from None


def _create(
    dst: Path, module: str, version: str, files: list[ArchiveFile], archive: Path
) -> modzip.CreateResult:
    """Run create_zip over the archive's files (in a worker thread); return its result.

    The archive is git's own output with stored entries, so a member of up to
    1 MiB is read with one ``pread`` at its offset (no per-member reader);
    larger members, and any that is not a plain stored entry, go through zipfile.
    """
    with archive.open("rb") as raw, contextlib.ExitStack() as stack:
        fd = raw.fileno()
        reader: list[zipfile.ZipFile] = []

        def open_member(member: str) -> BinaryIO:
            if not reader:
                reader.append(stack.enter_context(zipfile.ZipFile(archive)))
            return reader[0].open(member)  # type: ignore[return-value]

        def opener(f: ArchiveFile) -> modzip.ZipFile:
            kind = modzip.FileKind(f.kind)
            if f.data is not None:
                return modzip.ZipFile.from_bytes(f.path, f.data, kind)
            member = f.member
            data = _stored_bytes(fd, f) if f.stored_at >= 0 and f.size <= _PREAD_LIMIT else None
            return modzip.ZipFile(f.path, f.size, lambda: open_member(member), kind, data)

        return _write_zip(dst, module, version, [opener(f) for f in files])


_PREAD_LIMIT = 1 << 20
_EXTRA_SLACK = 64  # git archive's local extra field (a timestamp) fits in this


def _stored_bytes(fd: int, f: ArchiveFile) -> memoryview | None:
    """A stored member's bytes read at its offset, or None to read it through zipfile."""
    want = 30 + len(f.member.encode()) + _EXTRA_SLACK + f.size
    block = memoryview(os.pread(fd, want, f.stored_at))
    if len(block) < 30 or bytes(block[:4]) != b"PK\x03\x04":
        return None
    start = 30 + int.from_bytes(block[26:28], "little") + int.from_bytes(block[28:30], "little")
    data = block[start : start + f.size]
    return data if len(data) == f.size else None
