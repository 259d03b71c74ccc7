"""upstream.vcsrepo maps one module onto one git repository, with the go command's version rules.

Contract: :class:`CodeRepo` is the Python counterpart of the go command's
``codeRepo`` (``modfetch/coderepo.go``) for git: given the module path, the
import path of the repository root and an optional subdirectory, it lists
versions from tags (``codeDir/`` tag prefixes, ``/vN`` major suffixes and the
``+incompatible`` rules), resolves any query (tag, branch, commit hash,
canonical or non-canonical semver, pseudo-version) to a canonical version and
commit, validates requested pseudo-versions, finds the module directory and its
go.mod (``codeDir/go.mod`` or ``codeDir/vN/go.mod``), and lists the files of a
version's zip as ``git archive`` produces them plus the root ``LICENSE`` rule.
Every "this version does not exist or is not valid" outcome raises
``NotFound`` with the go command's wording; git failures propagate unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import posixpath
import zipfile
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import BinaryIO

from gomirror.errors import InvalidContent, InvalidVersion, NotFound
from gomirror.module import gomod, paths, pseudo, semver
from gomirror.module.zipwrite import Packed
from gomirror.upstream.git import GitRepo, RevInfo

_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFLNK = 0o120000


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A query resolved to a canonical module version at a commit."""

    version: str
    info: RevInfo
    tag: str = ""  # the git tag the version comes from, when it is a tag


@dataclasses.dataclass(frozen=True)
class ArchiveFile:
    """One file of a version's tree, read from the git archive (or a blob)."""

    path: str
    size: int
    kind: str  # "regular" | "symlink" | "other"
    member: str = ""  # name inside the archive ("" when data is set)
    data: bytes | None = None
    stored_at: int = -1  # local header offset of a stored (uncompressed) member, else -1
    # (sha256 hex, compressed entry) once packing ends, for files packed while streamed
    packed: Callable[[], tuple[str, Packed]] | None = None


def kind_of_mode(mode: int) -> str:
    """ "regular", "symlink" or "other" for a Unix mode from an archive (no type: regular)."""
    fmt = mode & _S_IFMT
    if not fmt:
        return "regular"
    return "regular" if fmt == _S_IFREG else "symlink" if fmt == _S_IFLNK else "other"


def _has_path_prefix(s: str, prefix: str) -> bool:
    if len(s) == len(prefix):
        return s == prefix
    if len(s) > len(prefix):
        if prefix.endswith("/"):
            return s.startswith(prefix)
        return s[len(prefix)] == "/" and s.startswith(prefix)
    return False


def _path_major_prefix(path_major: str) -> str:
    if not path_major:
        return ""
    return path_major[1:].removesuffix("-unstable")


def _is_major(mpath: str, path_major: str) -> bool:
    if not mpath:
        return False
    _, mpath_major, ok = paths.split_path_version(mpath)
    if not ok:
        return False
    if not path_major:
        return _path_major_prefix(mpath_major) in ("", "v0", "v1")
    if not mpath_major:
        return False
    return path_major[1:] == mpath_major[1:]


class CodeRepo:
    """One module inside one git repository (see the module docstring)."""

    def __init__(self, git: GitRepo, mod_path: str, code_root: str, subdir: str = "") -> None:
        if not _has_path_prefix(mod_path, code_root):
            raise NotFound(f"mismatched repo: found {code_root} for {mod_path}")
        prefix, major, ok = paths.split_path_version(mod_path)
        if not ok:
            raise NotFound(f"invalid module path {mod_path!r}")
        if code_root == mod_path:
            prefix = mod_path
        code_dir = ""
        if code_root != mod_path:
            if not _has_path_prefix(prefix, code_root):
                raise NotFound(f"repository rooted at {code_root} cannot contain module {mod_path}")
            code_dir = prefix[len(code_root) :].strip("/")
        if subdir:
            code_dir = posixpath.normpath(posixpath.join(code_dir, subdir)).strip("/")
            code_dir = "" if code_dir == "." else code_dir
        self.git = git
        self.mod_path = mod_path
        self.code_root = code_root
        self.code_dir = code_dir
        self.path_prefix = prefix
        self.path_major = major
        self.pseudo_major = _path_major_prefix(major)
        self.tag_prefix = code_dir + "/" if code_dir else ""
        # A major version's own subdirectory (``vN/``) where its go.mod may live, or "".
        self._major_dir = (
            posixpath.join(code_dir, major[1:])
            if major and code_root != mod_path and not major.startswith(".")
            else ""
        )
        # find_dir reads these at nearly every commit: read them with the commit lookup.
        git.watch_file(posixpath.join(code_dir, "go.mod"))
        if self._major_dir:
            git.watch_file(posixpath.join(self._major_dir, "go.mod"))

    # -- errors -----------------------------------------------------------------

    def _invalid(self, version: str, reason: str) -> NotFound:
        return NotFound(f"{self.mod_path}@{version}: invalid version: {reason}")

    # -- versions ---------------------------------------------------------------

    async def versions(self) -> list[str]:
        """The tagged versions, sorted, as ``@v/list`` shows them (no pseudo-versions)."""
        snap = await self.git.refs()
        listed: list[str] = []
        incompatible: list[str] = []
        for name, _ in snap.tags(self.tag_prefix):
            v = name[len(self.tag_prefix) :]
            if not v or v != semver.canonical(v) or pseudo.is_pseudo_version(v):
                continue
            if not paths.match_path_major(v, self.path_major):
                if not self.code_dir and not self.path_major and semver.major(v) > "v1":
                    incompatible.append(v)
                continue
            listed.append(v)
        listed = semver.sort_versions(listed)
        incompatible = semver.sort_versions(incompatible)
        if not incompatible or self.path_major:
            return listed
        if listed and await self._tag_has_gomod(listed[-1]):
            return listed
        out = list(listed)
        last_major = ""
        last_has_gomod = False
        for i, v in enumerate(incompatible):
            major = semver.major(v)
            if major != last_major:
                same = [w for w in incompatible[i:] if semver.major(w) == major]
                last_major = major
                last_has_gomod = await self._tag_has_gomod(same[-1])
            if not last_has_gomod:
                out.append(v + "+incompatible")
        return out

    async def _tag_has_gomod(self, tag: str) -> bool:
        info = await self.git.stat(tag)
        return await self.git.read_file(info.name, "go.mod") is not None

    async def _retracted(self) -> Callable[[str], bool]:
        try:
            vs = [v for v in await self.versions() if not v.endswith("+incompatible")]
            if not vs:
                return lambda v: False
            releases = [v for v in vs if not semver.prerelease(v)]
            highest = releases[-1] if releases else vs[-1]
            parsed = gomod.parse_gomod(await self.gomod(highest))
        except (NotFound, InvalidContent):
            return lambda v: False
        return lambda v: any(
            semver.compare(r.low, v) <= 0 and semver.compare(v, r.high) <= 0 for r in parsed.retract
        )

    async def latest(self) -> Resolved:
        """The go command's ``latest`` query: highest release, else pre-release, else HEAD."""
        versions = await self.versions()
        retracted = await self._retracted()
        allowed = [v for v in versions if not retracted(v)]
        releases = [v for v in allowed if not semver.prerelease(v)]
        pre = [v for v in allowed if semver.prerelease(v)]
        if releases or pre:
            return await self.stat((releases or pre)[-1])
        return await self.head()

    async def head(self) -> Resolved:
        """The version of the remote's default branch (``codeRepo.Latest``)."""
        snap = await self.git.refs()
        if not snap.head:
            raise NotFound(f"{self.mod_path}: no commits")
        info = await self.git.stat(snap.head)
        info = dataclasses.replace(info, ref="HEAD")
        return await self._convert(info, "")

    # -- stat -------------------------------------------------------------------

    def _rev_to_rev(self, rev: str) -> str:
        if semver.is_valid(rev):
            if pseudo.is_pseudo_version(rev):
                return pseudo.pseudo_version_rev(rev)
            rev = rev.removesuffix("+incompatible") if semver.build(rev) == "+incompatible" else rev
            return self.tag_prefix + rev
        return rev

    async def stat(self, rev: str) -> Resolved:
        """Resolve any query to a canonical version (``codeRepo.Stat``)."""
        if rev == "latest":
            return await self.latest()
        tag = self._rev_to_rev(rev)
        if semver.is_valid(rev) and not pseudo.is_pseudo_version(rev):
            self.git.speculate_tag(tag)
        try:
            info = await self.git.stat(tag)
        except NotFound as exc:
            raise self._invalid(rev, str(exc)) from None
        return await self._convert(info, rev)

    async def _convert(self, info: RevInfo, stat_vers: str) -> Resolved:
        incompatible_ok: dict[str, bool] = {}

        async def can_use_incompatible(v: str) -> bool:
            if self.code_dir or self.path_major:
                return False
            if "" not in incompatible_ok:
                incompatible_ok[""] = await self.git.read_file(info.name, "go.mod") is None
            if not incompatible_ok[""]:
                return False
            if v and not stat_vers.endswith("+incompatible"):
                major = semver.major(v)
                if major not in incompatible_ok:
                    sub = await self.git.read_file(info.name, f"{major}/go.mod")
                    incompatible_ok[major] = sub is None
                if not incompatible_ok[major]:
                    return False
            return True

        async def check_canonical(v: str) -> Resolved:
            try:
                await self.find_dir(v)
            except NotFound as exc:
                raise self._invalid(v, str(exc)) from None
            if v == stat_vers.removesuffix("+incompatible"):
                v = stat_vers
            base = v.removesuffix("+incompatible")
            err_incompatible = ""
            if not paths.match_path_major(base, self.path_major):
                if await can_use_incompatible(base):
                    v = base + "+incompatible"
                elif self.path_major:
                    err_incompatible = (
                        "module path includes a major version suffix, so major version must match"
                    )
                else:
                    want = posixpath.join(self.path_prefix, semver.major(v))
                    err_incompatible = (
                        "module contains a go.mod file, so module path must match "
                        f'major version ("{want}")'
                    )
            elif v.endswith("+incompatible"):
                major = semver.major(v)
                err_incompatible = (
                    f"+incompatible suffix not allowed: major version {major} is compatible"
                )
            if stat_vers and stat_vers == paths.canonical_version(stat_vers):
                stat_base = stat_vers.removesuffix("+incompatible")
                if stat_base != base:
                    raise self._invalid(
                        stat_vers, f"resolves to version {v} ({stat_base} is not a tag)"
                    )
            if err_incompatible:
                raise self._invalid(v, err_incompatible)
            tag = ""
            if not pseudo.is_pseudo_version(v):
                tag = self.tag_prefix + base
            return Resolved(version=v, info=info, tag=tag)

        if pseudo.is_pseudo_version(stat_vers):
            resolved = await check_canonical(stat_vers)
            await self._validate_pseudo(info, stat_vers)
            return resolved

        retracted = await self._retracted()

        def tag_to_version(tag: str) -> tuple[str, bool]:
            if not tag.startswith(self.tag_prefix):
                return "", False
            trimmed = tag[len(self.tag_prefix) :]
            if pseudo.is_pseudo_version(tag):
                return "", False
            v = semver.canonical(trimmed)
            if not v or not trimmed.startswith(v):
                return "", False
            return v, v == trimmed

        v0, canonical0 = tag_to_version(info.version)
        if canonical0:
            try:
                return await check_canonical(v0)
            except NotFound:
                pass

        highest = ""
        pseudo_base = ""
        for path_tag in info.tags:
            v, is_canon = tag_to_version(path_tag)
            if stat_vers and semver.compare(v, stat_vers) == 0:
                if is_canon:
                    return await check_canonical(v)
                pseudo_base = v
            if (
                is_canon
                and semver.compare(highest, v) < 0
                and not retracted(v)
                and (paths.match_path_major(v, self.path_major) or await can_use_incompatible(v))
            ):
                highest = v
        if highest:
            return await check_canonical(highest)

        if not pseudo_base:
            best = ""
            for tag in await self.git.merged_tags(info.name, self.tag_prefix):
                v, _ = tag_to_version(tag)
                if not v or retracted(v):
                    continue
                if not paths.match_path_major(
                    v, self.path_major
                ) and not await can_use_incompatible(v):
                    continue
                if semver.compare(tag[len(self.tag_prefix) :], best) > 0:
                    best = tag[len(self.tag_prefix) :]
            if best:
                pseudo_base, _ = tag_to_version(self.tag_prefix + best)
        version = pseudo.pseudo_version(self.pseudo_major, pseudo_base, info.datetime, info.short)
        return await check_canonical(version)

    async def _validate_pseudo(self, info: RevInfo, version: str) -> None:
        def bad(reason: str) -> NotFound:
            return self._invalid(version, reason)

        try:
            rev = pseudo.pseudo_version_rev(version)
            t = pseudo.pseudo_version_time(version)
            base = pseudo.pseudo_version_base(version.removesuffix("+incompatible"))
        except InvalidVersion as exc:
            raise bad(str(exc)) from None
        if rev != info.short:
            if rev.startswith(info.short):
                raise bad(f"revision is longer than canonical (expected {info.short})")
            if info.short.startswith(rev):
                raise bad(f"revision is shorter than canonical (expected {info.short})")
            raise bad(f"does not match short name of revision (expected {info.short})")
        if int(t.timestamp()) != info.time:
            stamp = info.datetime.strftime(pseudo.TIMESTAMP_FORMAT)
            raise bad(f"does not match version-control timestamp (expected {stamp})")
        if not base:
            if not self.pseudo_major and semver.major(version) == "v1":
                raise bad("major version without preceding tag must be v0, not v1")
            return
        for tag in info.tags:
            if tag.removeprefix(self.tag_prefix) == base:
                raise bad(
                    f"tag ({tag}) found on revision {rev} is already canonical, "
                    "so should not be replaced with a pseudo-version derived from that tag"
                )
        snap = await self.git.refs()
        last_tag = ""
        for name, _ in snap.tags(self.tag_prefix + base):
            if semver.compare(name.removeprefix(self.tag_prefix), base) == 0:
                last_tag = name
                if await self.git.descends_from(info.name, "refs/tags/" + name):
                    return
        if not last_tag:
            raise bad(f"preceding tag ({base}) not found")
        raise bad(f"revision {rev} is not a descendent of preceding tag ({last_tag})")

    # -- files --------------------------------------------------------------------

    async def find_dir(self, version: str) -> tuple[str, str, bytes | None]:
        """Return (commit, module dir, go.mod bytes or None) for a version (``findDir``)."""
        if not semver.is_valid(version):
            raise NotFound("syntax error")
        rev = self._rev_to_rev(version)
        info = await self.git.stat(rev)
        commit = info.name
        file1 = posixpath.join(self.code_dir, "go.mod")
        gomod1 = await self.git.read_file(commit, file1)
        mpath1 = gomod.module_path(gomod1) if gomod1 is not None else ""
        found1 = gomod1 is not None and (
            _is_major(mpath1, self.path_major)
            or (not self.path_major and mpath1.startswith("gopkg.in/"))
        )
        file2 = ""
        if self._major_dir:
            dir2 = self._major_dir
            file2 = posixpath.join(dir2, "go.mod")
            gomod2 = await self.git.read_file(commit, file2)
            mpath2 = gomod.module_path(gomod2) if gomod2 is not None else ""
            found2 = gomod2 is not None and _is_major(mpath2, self.path_major)
            if found1 and found2:
                raise NotFound(
                    f"{self.path_prefix}/{file1} and ...{self.path_major}/go.mod both have "
                    f"...{self.path_major} module paths at revision {rev}"
                )
            if found2:
                return commit, dir2, gomod2
            if gomod2 is not None:
                if not mpath2:
                    raise NotFound(
                        f"{self.code_root}/{file2} is missing module path at revision {rev}"
                    )
                raise NotFound(
                    f"{self.code_root}/{file2} has non-...{self.path_major} module path "
                    f'"{mpath2}" at revision {rev}'
                )
        if found1:
            return commit, self.code_dir, gomod1
        if gomod1 is not None:
            suffix = f" (and ...{self.path_major}/go.mod does not exist)" if file2 else ""
            if not mpath1:
                raise NotFound(f"{file1} is missing module path{suffix} at revision {rev}")
            if self.path_major:
                raise NotFound(
                    f"{file1} has non-...{self.path_major} module path "
                    f'"{mpath1}"{suffix} at revision {rev}'
                )
            if not paths.split_path_version(mpath1)[2]:
                raise NotFound(
                    f'{file1} has malformed module path "{mpath1}"{suffix} at revision {rev}'
                )
            raise NotFound(
                f"{file1} has post-{semver.major(version)} module path "
                f'"{mpath1}"{suffix} at revision {rev}'
            )
        if not self.code_dir and (not self.path_major or self.path_major.startswith(".")):
            return commit, "", None
        if file2:
            raise NotFound(
                f"missing {self.path_prefix}/go.mod and "
                f"...{self.path_major}/go.mod at revision {rev}"
            )
        raise NotFound(f"missing {self.path_prefix}/go.mod at revision {rev}")

    async def gomod(self, version: str) -> bytes:
        """The go.mod bytes of a canonical version, synthesized when the tree has none."""
        if version != paths.canonical_version(version):
            raise NotFound(f"version {version} is not canonical")
        if pseudo.is_pseudo_version(version):
            await self.stat(version)
        try:
            commit, directory, data = await self.find_dir(version)
        except NotFound as exc:
            raise self._invalid(version, str(exc)) from None
        if data is None:
            data = await self.git.read_file(commit, posixpath.join(directory, "go.mod"))
        if data is None:
            return f"module {self.mod_path}\n".encode()
        return data

    async def archive_files(self, version: str, dst: Path) -> tuple[str, list[ArchiveFile], Path]:
        """Archive a canonical version into dst; return its commit, files and dst (``codeRepo.Zip``)."""
        commit, subdir = await self._archive_dir(version)
        await self.git.archive(commit, subdir, dst)
        files = await asyncio.to_thread(_read_archive, dst, subdir)
        return commit, await self._with_license(commit, subdir, files), dst

    async def archive_stream(
        self,
        version: str,
        consume: Callable[[BinaryIO, str], list[ArchiveFile]],
        executor: Executor | None = None,
    ) -> tuple[str, list[ArchiveFile]]:
        """Like archive_files, with ``consume(stream, subdir)`` reading git's archive as it comes."""
        commit, subdir = await self._archive_dir(version)
        files = await self.git.archive_to(commit, subdir, lambda f: consume(f, subdir), executor)
        return commit, await self._with_license(commit, subdir, files)

    async def _archive_dir(self, version: str) -> tuple[str, str]:
        try:
            commit, subdir, _ = await self.find_dir(version)
        except NotFound as exc:
            raise self._invalid(version, str(exc)) from None
        return commit, subdir

    async def _with_license(
        self, commit: str, subdir: str, files: list[ArchiveFile]
    ) -> list[ArchiveFile]:
        """A module in a subdirectory without a LICENSE gets the repository root's."""
        if subdir and not any(f.path == "LICENSE" for f in files):
            data = await self.git.read_file(commit, "LICENSE")
            if data is not None:
                files.append(ArchiveFile(path="LICENSE", size=len(data), kind="regular", data=data))
        return files


def _read_archive(archive: Path, subdir: str) -> list[ArchiveFile]:
    """List the files of a ``git archive`` zip under subdir, prefix and subdir stripped."""
    prefix_dir = subdir.strip("/") + "/" if subdir.strip("/") else ""
    files: list[ArchiveFile] = []
    top = ""
    with zipfile.ZipFile(archive) as zf:
        for zi in zf.infolist():
            if not top:
                i = zi.filename.find("/")
                if i < 0:
                    raise NotFound("missing top-level directory prefix")
                top = zi.filename[: i + 1]
            if not zi.filename.startswith(top):
                raise NotFound("zip file contains more than one top-level directory")
            name = zi.filename[len(top) :]
            if not name.startswith(prefix_dir):
                continue
            name = name[len(prefix_dir) :]
            if not name or name.endswith("/"):
                continue
            kind = kind_of_mode(zi.external_attr >> 16) if zi.create_system == 3 else "regular"
            stored = zi.compress_type == zipfile.ZIP_STORED and zi.compress_size == zi.file_size
            files.append(
                ArchiveFile(
                    path=name,
                    size=zi.file_size,
                    kind=kind,
                    member=zi.filename,
                    stored_at=zi.header_offset if stored else -1,
                )
            )
    return files
