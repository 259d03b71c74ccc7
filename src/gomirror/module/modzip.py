"""modzip verifies and builds Go module zip files with the rules of golang.org/x/mod/zip.

:func:`check_zip` is ``zip.CheckZip`` plus ``dirhash.HashZip`` in one streaming
pass over an untrusted file (protocol.md §2.1): it raises :class:`ZipError`
with Go's messages, never trusts declared sizes and never holds more than one
chunk of content (plus the root go.mod) in memory. :func:`create_zip` and
:func:`create_zip_from_dir` are ``zip.Create`` / ``zip.CreateFromDir``
(§2.2): vendor, nested-module, ``.hg_archival.txt`` and size rules, entries
in input order, Deflate, zero mtime, no directory entries, no extra fields.
:func:`check_files` and :func:`check_dir` report which inputs are valid,
omitted or invalid, with reasons. Bad module paths or versions raise
:class:`InvalidPath` / :class:`InvalidVersion` before any file is looked at.
"""

from __future__ import annotations

import enum
import hashlib
import io
import os
import posixpath
import stat
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gomirror.errors import InvalidContent, InvalidPath, InvalidVersion
from gomirror.module import paths
from gomirror.module.dirhash import format_h1
from gomirror.module.foldcase import str_to_fold
from gomirror.module.gomod import go_version_at_least, parse_gomod
from gomirror.module.paths import go_quote
from gomirror.module.zipread import CHUNK, ZipError, ZipReader
from gomirror.module.zipwrite import Packed, ZipWriter, pack

__all__ = [
    "MAX_GO_MOD",
    "MAX_LICENSE",
    "MAX_ZIP_FILE",
    "CheckedFiles",
    "CheckedZip",
    "CreateResult",
    "FileKind",
    "ZipError",
    "ZipFile",
    "check_dir",
    "check_files",
    "check_zip",
    "check_zip_files",
    "create_zip",
    "create_zip_from_dir",
    "hash_and_pack",
    "is_vendored_package",
    "list_dir_files",
]

MAX_ZIP_FILE = 500 << 20
MAX_GO_MOD = 16 << 20
MAX_LICENSE = 16 << 20
_READ_WHOLE = 1 << 20  # inputs up to this size are read in one call and compressed in one
_PARALLEL_FROM = 2 << 20  # modules with this much content are compressed on several threads
_PACKERS = 4
PACK_BATCH = 256 << 10  # bytes of content per job handed to a packing thread

_NOT_CLEAN = "file path is not clean"
_NOT_RELATIVE = "file path is not relative"
_GOMOD_CASE = "go.mod files must have lowercase names"
_GOMOD_SIZE = f"go.mod file too large (max size is {MAX_GO_MOD} bytes)"
_LICENSE_SIZE = f"LICENSE file too large (max size is {MAX_LICENSE} bytes)"
_VCS = "directory is a version control repository"
_VENDORED = "file is in vendor directory"
_SUBMODULE_FILE = "file is in another module"
_SUBMODULE_DIR = "directory is in another module"
_HG_ARCHIVAL = "file is inserted by 'hg archive' and is always omitted"
_SYMLINK = "file is a symbolic link"
_NOT_REGULAR = "not a regular file"
_TREE_TOO_LARGE = f"module source tree too large (max size is {MAX_ZIP_FILE} bytes)"
_CONTENT_TOO_LARGE = (
    f"total uncompressed size of module contents too large (max size is {MAX_ZIP_FILE} bytes)"
)


class FileKind(enum.StrEnum):
    """What an input file is, as ``os.Lstat`` would say."""

    REGULAR = "regular"
    SYMLINK = "symlink"
    DIR = "dir"
    OTHER = "other"


@dataclass(frozen=True)
class ZipFile:
    """One input file for :func:`create_zip`: a relative slash path, declared size, kind, opener."""

    path: str
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False)
    kind: FileKind = FileKind.REGULAR
    data: bytes | memoryview | None = field(default=None, repr=False)  # the content, if in memory
    # (sha256 hex, compressed entry) computed beforehand, e.g. while the content streamed in
    packed: Callable[[], tuple[str, Packed]] | None = field(default=None, repr=False)

    def open(self) -> BinaryIO:
        """Open the content for reading (the caller closes it)."""
        return self.opener()

    @classmethod
    def from_bytes(cls, path: str, data: bytes, kind: FileKind = FileKind.REGULAR) -> ZipFile:
        """Make an in-memory input file."""
        return cls(path, len(data), lambda: io.BytesIO(data), kind, data)

    @classmethod
    def from_fs(cls, path: str, fs_path: Path) -> ZipFile:
        """Make an input file from a file on disk, described by ``lstat`` (no link following)."""
        st = fs_path.lstat()
        if stat.S_ISREG(st.st_mode):
            kind = FileKind.REGULAR
        elif stat.S_ISLNK(st.st_mode):
            kind = FileKind.SYMLINK
        elif stat.S_ISDIR(st.st_mode):
            kind = FileKind.DIR
        else:
            kind = FileKind.OTHER
        return cls(path, st.st_size, lambda: fs_path.open("rb"), kind)


@dataclass
class CheckedFiles:
    """Which files are valid, omitted (silently left out) or invalid (fatal), with reasons."""

    valid: list[str] = field(default_factory=list)
    omitted: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    size_error: str | None = None

    def error(self) -> str | None:
        """Return Go's error text for these results (size error first), or None if all is well."""
        if self.size_error is not None:
            return self.size_error
        if self.invalid:
            return "\n".join(f"{p}: {reason}" for p, reason in self.invalid)
        return None


@dataclass(frozen=True)
class CheckedZip:
    """A verified module zip: its ``h1:``, file size, number of files and root go.mod (if any)."""

    h1: str
    size: int
    files: int
    gomod: bytes | None


@dataclass(frozen=True)
class CreateResult:
    """The ``h1:`` of a created zip and the inputs left out of it, with reasons."""

    h1: str
    omitted: list[tuple[str, str]]
    files: int = 0  # entries written


def _check_module_version(module: str, version: str) -> None:
    canonical = paths.canonical_version(version)
    if canonical != version:
        raise InvalidVersion(
            f"version {go_quote(version)} is not canonical (should be {go_quote(canonical)})"
        )
    paths.check(module, version)


def _clean(p: str) -> str:
    # Go's path.Clean returns "." for "", posixpath.normpath keeps a leading "//".
    cleaned = posixpath.normpath(p) if p else "."
    if cleaned.startswith("//"):
        cleaned = cleaned[1:]
    return cleaned


def is_vendored_package(name: str, go_at_least_124: bool) -> bool:
    """Report whether ``name`` is vendored code that module zips omit (x/mod isVendoredPackage).

    Before go 1.24 a historical bug counts everything below any ``*/vendor/``
    directory as vendored; from 1.24, ``vendor/modules.txt`` is vendored too.
    """
    if go_at_least_124 and name == "vendor/modules.txt":
        return True
    if name.startswith("vendor/"):
        i = len("vendor/")
    else:
        j = name.find("/vendor/")
        if j < 0:
            return False
        i = j + len("/vendor/") if go_at_least_124 else len("/vendor/")
    return "/" in name[i:]


def _gomod_is_124(data: bytes) -> bool:
    try:
        return go_version_at_least(parse_gomod(data).go, 1, 24)
    except InvalidContent:
        return False


class _Collisions:
    """Finds case-fold collisions, file/dir clashes and duplicates (x/mod collisionChecker)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, bool]] = {}

    def check(self, p: str, is_dir: bool) -> str | None:
        while True:
            fold = str_to_fold(p)
            other = self._seen.get(fold)
            if other is not None:
                other_path, other_dir = other
                if p != other_path:
                    return (
                        f"case-insensitive file name collision: {go_quote(other_path)} "
                        f"and {go_quote(p)}"
                    )
                if is_dir != other_dir:
                    return f"entry {go_quote(p)} is both a file and a directory"
                if not is_dir:
                    return f"multiple entries for file {go_quote(p)}"
            else:
                self._seen[fold] = (p, is_dir)
            parent = posixpath.dirname(p)
            if parent in ("", "."):
                return None
            p, is_dir = parent, True


def _check_files(files: Sequence[ZipFile]) -> tuple[CheckedFiles, list[ZipFile]]:
    cf = CheckedFiles()
    seen_errors: set[str] = set()

    def add_error(p: str, omitted: bool, reason: str) -> None:
        if p in seen_errors:
            return
        seen_errors.add(p)
        (cf.omitted if omitted else cf.invalid).append((p, reason))

    have_gomod: set[str] = set()
    at_least_124 = False
    for f in files:
        directory, base = posixpath.split(f.path)
        if str_to_fold(base) == "go.mod":
            if f.kind != FileKind.REGULAR:
                continue
            have_gomod.add(directory + "/" if directory else "")
            if base == "go.mod" and directory == "":
                at_least_124 = _gomod_is_124(_read_limited(f, MAX_GO_MOD))

    def in_submodule(p: str) -> bool:
        while True:
            directory = posixpath.dirname(p)
            if directory == "":
                return False
            if directory + "/" in have_gomod:
                return True
            p = directory

    collisions = _Collisions()
    valid: list[ZipFile] = []
    budget = MAX_ZIP_FILE
    for f in files:
        p = f.path
        if p != _clean(p):
            add_error(p, False, _NOT_CLEAN)
            continue
        if p.startswith("/"):
            add_error(p, False, _NOT_RELATIVE)
            continue
        if is_vendored_package(p, at_least_124):
            add_error(p, True, _VENDORED)
            continue
        if in_submodule(p):
            add_error(p, True, _SUBMODULE_FILE)
            continue
        if p == ".hg_archival.txt":
            add_error(p, True, _HG_ARCHIVAL)
            continue
        try:
            paths.check_file_path(p)
        except InvalidPath as e:
            add_error(p, False, str(e))
            continue
        if p.lower() == "go.mod" and p != "go.mod":
            add_error(p, False, _GOMOD_CASE)
            continue
        reason = collisions.check(p, f.kind == FileKind.DIR)
        if reason is not None:
            add_error(p, False, reason)
            continue
        if f.kind == FileKind.SYMLINK:
            add_error(p, True, _SYMLINK)
            continue
        if f.kind != FileKind.REGULAR:
            add_error(p, True, _NOT_REGULAR)
            continue
        if 0 <= f.size <= budget:
            budget -= f.size
        elif cf.size_error is None:
            cf.size_error = _TREE_TOO_LARGE
        if p == "go.mod" and f.size > MAX_GO_MOD:
            add_error(p, False, _GOMOD_SIZE)
            continue
        if p == "LICENSE" and f.size > MAX_LICENSE:
            add_error(p, False, _LICENSE_SIZE)
            continue
        cf.valid.append(p)
        valid.append(f)
    return cf, valid


def _read_limited(f: ZipFile, limit: int) -> bytes:
    if f.data is not None:
        return bytes(f.data[: limit + 1])
    try:
        with f.open() as r:
            return r.read(limit + 1)
    except OSError:
        return b""


def check_files(files: Sequence[ZipFile]) -> CheckedFiles:
    """Classify ``files`` as ``zip.CheckFiles`` does; see :meth:`CheckedFiles.error`."""
    return _check_files(files)[0]


def list_dir_files(directory: Path) -> tuple[list[ZipFile], list[tuple[str, str]]]:
    """Walk ``directory`` as ``CreateFromDir`` does; return (files, omitted with reasons).

    VCS directories and directories holding a ``go.mod`` (exact name) are
    skipped, vendored paths and irregular files are omitted, and entries come in
    lexical order.
    """
    gomod = directory / "go.mod"
    at_least_124 = False
    try:
        with gomod.open("rb") as r:
            at_least_124 = _gomod_is_124(r.read(MAX_GO_MOD + 1))
    except OSError:
        pass
    files: list[ZipFile] = []
    omitted: list[tuple[str, str]] = []

    def walk(fs_dir: Path, rel: str) -> None:
        for name in sorted((c.name for c in fs_dir.iterdir()), key=os.fsencode):
            fs_path = fs_dir / name
            slash = f"{rel}/{name}" if rel else name
            st = fs_path.lstat()
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_vendored_package(slash, at_least_124):
                omitted.append((slash, _VENDORED))
                if is_dir:
                    walk(fs_path, slash)  # Go's walk still descends into it
                continue
            if is_dir:
                if name in (".bzr", ".git", ".hg", ".svn"):
                    omitted.append((slash, _VCS))
                    continue
                try:
                    gomod_is_dir = stat.S_ISDIR((fs_path / "go.mod").lstat().st_mode)
                except OSError:
                    gomod_is_dir = True  # no go.mod here
                if not gomod_is_dir:
                    omitted.append((slash, _SUBMODULE_DIR))
                    continue
                walk(fs_path, slash)
                continue
            if not stat.S_ISREG(st.st_mode):
                omitted.append((slash, _NOT_REGULAR))
                continue
            files.append(ZipFile.from_fs(slash, fs_path))

    walk(directory, "")
    return files, omitted


def check_dir(directory: Path) -> CheckedFiles:
    """Classify the files below ``directory`` as ``zip.CheckDir`` does (paths joined to it)."""
    files, walk_omitted = list_dir_files(directory)
    cf = check_files(files)
    base = str(directory)
    return CheckedFiles(
        valid=[posixpath.join(base, p) for p in cf.valid],
        omitted=[(posixpath.join(base, p), r) for p, r in [*cf.omitted, *walk_omitted]],
        invalid=[(posixpath.join(base, p), r) for p, r in cf.invalid],
        size_error=cf.size_error,
    )


class _Packer:
    """Hashes and compresses in-memory entries in batches on worker threads, writing in order.

    With one worker everything happens inline. Otherwise batches of about
    256 KiB go to a thread pool (zlib and hashlib release the GIL) and at most
    a few batches per worker are in flight, so memory stays bounded.
    """

    def __init__(self, zw: ZipWriter, digests: dict[str, str], workers: int) -> None:
        self._zw = zw
        self._digests = digests
        self._pool = ThreadPoolExecutor(workers, "zip-pack") if workers > 1 else None
        self._window = 2 * workers
        self._batch: list[tuple[str, bytes | memoryview]] = []
        self._batch_bytes = 0
        self._inflight: deque[Future[list[tuple[str, str, Packed]]] | _Ready] = deque()

    def __enter__(self) -> _Packer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, data: bytes | memoryview) -> None:
        if self._pool is None:
            self._write(_pack_batch([(name, data)]))
            return
        self._batch.append((name, data))
        self._batch_bytes += len(data)
        if self._batch_bytes >= PACK_BATCH:
            self._submit()

    def add_ready(self, name: str, size: int, packed: Callable[[], tuple[str, Packed]]) -> None:
        """Add an entry hashed and compressed elsewhere; it is written in its turn."""

        def check() -> list[tuple[str, str, Packed]]:
            digest, entry = packed()
            if entry.size != size:
                raise ZipError(f"file {go_quote(name)} is not its declared size")
            return [(name, digest, entry)]

        if self._pool is None:
            self._write(check())
            return
        self._submit()
        self._inflight.append(_Ready(check))
        self._drain_window()

    def drain(self) -> None:
        """Write every entry added so far."""
        self._submit()
        while self._inflight:
            self._write(self._inflight.popleft().result())

    def _submit(self) -> None:
        if not self._batch or self._pool is None:
            return
        self._inflight.append(self._pool.submit(_pack_batch, self._batch))
        self._batch, self._batch_bytes = [], 0
        self._drain_window()

    def _drain_window(self) -> None:
        while len(self._inflight) > self._window:
            self._write(self._inflight.popleft().result())

    def _write(self, done: list[tuple[str, str, Packed]]) -> None:
        for name, digest, packed in done:
            self._digests[name] = digest
            self._zw.add_packed(name, packed)


class _Ready:
    """An entry packed elsewhere, queued among the pool's batches so output keeps input order."""

    def __init__(self, get: Callable[[], list[tuple[str, str, Packed]]]) -> None:
        self.result = get


def hash_and_pack(data: bytes | memoryview) -> tuple[str, Packed]:
    """An entry's content as create_zip needs it: (hex SHA-256 for the h1:, compressed entry).

    Thread-safe and GIL-releasing, so callers may run it on worker threads
    and hand the result to create_zip through ``ZipFile.packed``.
    """
    return hashlib.sha256(data).hexdigest(), pack(data)


def _pack_batch(items: list[tuple[str, bytes | memoryview]]) -> list[tuple[str, str, Packed]]:
    return [(name, *hash_and_pack(data)) for name, data in items]


def _limited_reader(r: BinaryIO, f: ZipFile) -> Callable[[], bytes]:
    """Chunks of r, raising ZipError as soon as it yields more than f's declared size."""
    left = f.size + 1

    def read() -> bytes:
        nonlocal left
        if left <= 0:
            return b""
        chunk = r.read(min(CHUNK, left))
        left -= len(chunk)
        if left <= 0:
            raise ZipError(f"file {go_quote(f.path)} is larger than declared size")
        return chunk

    return read


def create_zip(dst: BinaryIO, module: str, version: str, files: Sequence[ZipFile]) -> CreateResult:
    """Write the module zip of ``files`` to ``dst``; return its ``h1:`` and the omitted inputs.

    Raises :class:`ZipError` if any file is invalid, the tree is too large, or
    a file turns out larger than its declared size.
    """
    _check_module_version(module, version)
    cf, valid = _check_files(files)
    err = cf.error()
    if err is not None:
        raise ZipError(err)
    prefix = f"{module}@{version}/"
    digests: dict[str, str] = {}
    zw = ZipWriter(dst)
    total = sum(f.size for f in valid)
    workers = min(_PACKERS, os.cpu_count() or 1) if total >= _PARALLEL_FROM else 1
    with _Packer(zw, digests, workers) as packer:
        for f in valid:
            name = prefix + f.path
            if f.packed is not None:
                packer.add_ready(name, f.size, f.packed)
                continue
            data = f.data
            if data is None and f.size <= _READ_WHOLE:
                with f.open() as r:
                    data = r.read(f.size + 1)
            if data is not None:
                if len(data) > f.size:
                    raise ZipError(f"file {go_quote(f.path)} is larger than declared size")
                packer.add(name, data)
                continue
            packer.drain()
            h = hashlib.sha256()
            with f.open() as r:
                zw.add_stream(name, _limited_reader(r, f), h.update)
            digests[name] = h.hexdigest()
    zw.close()
    return CreateResult(format_h1(digests.items()), list(cf.omitted), len(digests))


def create_zip_from_dir(dst: BinaryIO, module: str, version: str, directory: Path) -> CreateResult:
    """Write the module zip of the tree at ``directory`` (``zip.CreateFromDir``)."""
    _check_module_version(module, version)
    files, walk_omitted = list_dir_files(directory)
    result = create_zip(dst, module, version, files)
    return CreateResult(result.h1, [*result.omitted, *walk_omitted], result.files)


def check_zip_files(path: Path, module: str, version: str) -> CheckedFiles:
    """Classify the entries of the zip at ``path`` as ``zip.CheckZip`` does (content unread)."""
    _check_module_version(module, version)
    size = path.stat().st_size
    if size > MAX_ZIP_FILE:
        return CheckedFiles(
            size_error=f"module zip file is too large ({size} bytes; limit is {MAX_ZIP_FILE} bytes)"
        )
    with ZipReader(path) as z:
        return _check_entries(z, f"{module}@{version}/")


def _check_entries(z: ZipReader, prefix: str) -> CheckedFiles:
    cf = CheckedFiles()
    collisions = _Collisions()
    total = 0
    for e in z.entries:
        if not e.name.startswith(prefix):
            cf.invalid.append((e.name, f"path does not have prefix {go_quote(prefix)}"))
            continue
        name = e.name[len(prefix) :]
        if name == "":
            continue
        is_dir = name.endswith("/")
        if is_dir:
            name = name[:-1]
        if _clean(name) != name:
            cf.invalid.append((e.name, _NOT_CLEAN))
            continue
        try:
            paths.check_file_path(name)
        except InvalidPath as err:
            cf.invalid.append((e.name, str(err)))
            continue
        reason = collisions.check(name, is_dir)
        if reason is not None:
            cf.invalid.append((e.name, reason))
            continue
        if is_dir:
            continue
        base = posixpath.basename(name)
        if str_to_fold(base) == "go.mod":
            if base != name:
                cf.invalid.append((e.name, "go.mod file not in module root directory"))
                continue
            if name != "go.mod":
                cf.invalid.append((e.name, _GOMOD_CASE))
                continue
        if 0 <= e.size <= MAX_ZIP_FILE - total:
            total += e.size
        elif cf.size_error is None:
            cf.size_error = _CONTENT_TOO_LARGE
        if name == "go.mod" and e.size > MAX_GO_MOD:
            cf.invalid.append((e.name, _GOMOD_SIZE))
            continue
        if name == "LICENSE" and e.size > MAX_LICENSE:
            cf.invalid.append((e.name, _LICENSE_SIZE))
            continue
        cf.valid.append(e.name)
    return cf


def check_zip(path: Path, module: str, version: str) -> CheckedZip:
    """Verify the module zip at ``path`` for ``module@version`` and return its facts.

    Applies every ``zip.CheckZip`` rule, then hashes every entry as
    ``dirhash.HashZip`` does while enforcing each entry's declared size, so a
    zip bomb or a lying header fails instead of exhausting memory or disk.
    Raises :class:`ZipError` for any bad content; bad ``module``/``version``
    arguments raise :class:`InvalidPath` / :class:`InvalidVersion`.
    """
    _check_module_version(module, version)
    size = path.stat().st_size
    if size > MAX_ZIP_FILE:
        raise ZipError(
            f"module zip file is too large ({size} bytes; limit is {MAX_ZIP_FILE} bytes)"
        )
    prefix = f"{module}@{version}/"
    gomod_name = prefix + "go.mod"
    with ZipReader(path) as z:
        cf = _check_entries(z, prefix)
        err = cf.error()
        if err is not None:
            raise ZipError(err)
        # HashZip looks entries up by name: a repeated name hashes its last entry's
        # content once per occurrence (only "prefix/" entries can repeat here).
        last = {e.name: e for e in z.entries}
        digests: dict[str, str] = {}
        gomod: bytes | None = None
        # Directory entries are not size-checked by CheckZip, yet HashZip reads
        # them; bound everything hashed by the module size limit.
        budget = MAX_ZIP_FILE
        for name, e in last.items():
            if "\n" in name:
                raise ZipError("dirhash: filenames with newlines are not supported")
            h = hashlib.sha256()
            keep = name == gomod_name
            kept: list[bytes] = []
            for chunk in z.iter_content(e):
                budget -= len(chunk)
                if budget < 0:
                    raise ZipError(_CONTENT_TOO_LARGE)
                h.update(chunk)
                if keep:
                    kept.append(chunk)
            digests[name] = h.hexdigest()
            if keep:
                gomod = b"".join(kept)
        summary = [(e.name, digests[e.name]) for e in z.entries]
    return CheckedZip(format_h1(summary), size, len(cf.valid), gomod)
