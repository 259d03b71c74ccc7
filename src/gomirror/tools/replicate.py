"""tools.replicate copies verified module files from one storage to another: ``gomirror replicate``'s logic.

What is copied: every module version file a gomirror cache holds, ``<esc>/@v/<v>.zip``
and ``.mod`` with their sidecars ``<file>.json``, and canonical
``<esc>/@v/<v>.info``. Nothing else: version lists, ``@latest``, query answers
(mutable: each region's instance refreshes its own), the checksum database's
tiles and tree heads (``sumdb/``, ``_gomirror/sumdb/``: each instance verifies
and keeps its own) and gomirror's other state (``_gomirror/``) stay where they are.

Contract of :func:`replicate` (one pass):
- Checked on the way: a ``.zip`` is read into a local temp file and checked
  again with every zip rule (``check_zip``), a ``.mod`` with the go.mod rules;
  the ``h1:`` recomputed from the bytes must equal the source sidecar's. A file
  whose bytes disagree (tampered, truncated, bit rot) or break a rule is
  ``refused`` and never written to the target. A file without a sidecar
  recording an ``h1:`` cannot be checked and is not copied (``unverified``).
  A ``.info`` must be a valid answer for its version.
- Write order as the service's: the sidecar first, then the file, each one
  atomic in the target (``Storage.put_*``). A run killed at any point leaves
  at most a sidecar without its file, which every reader treats as "file
  missing"; never part of a file, never a file without its facts.
- Idempotent and resumable: a file the target already has with the same
  ``h1:`` in its sidecar (and, for zips, the size the sidecar records) is
  ``present`` and not written again; so a re-run after an interruption copies
  only what is missing. A target file whose sidecar records a *different*
  ``h1:`` is a ``conflict``: reported, never overwritten (one of the two sides
  holds content the other's verification contradicts). A target file without
  a usable sidecar is replaced by the verified source copy.
- ``failed``: a storage error reading or writing this file (the pass goes on
  with the others); ``gone``: listed but no longer readable in the source
  (deleted meanwhile, or an S3 object whose sidecar was replaced).

:func:`watch` repeats passes every ``interval`` seconds until its stop event
is set; files already copied or present in an earlier pass are not looked at
again (a file deleted from the target later is copied again by a new run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gomirror.errors import GomirrorError, StorageError
from gomirror.module.dirhash import hash_gomod
from gomirror.module.gomod import check_gomod_module
from gomirror.module.info import check_info_body, is_canonical_for
from gomirror.module.modzip import check_zip
from gomirror.module.paths import unescape_path, unescape_version
from gomirror.storage.base import Storage

DEFAULT_JOBS = 8
DEFAULT_INTERVAL = 60.0
SIDECAR = ".json"
_SKIP_PREFIXES = ("_gomirror/", "sumdb/")

Kind = Literal["zip", "mod", "info"]
Outcome = Literal["copied", "present", "refused", "conflict", "unverified", "failed", "gone"]
OUTCOMES: tuple[Outcome, ...] = (
    "copied",
    "present",
    "refused",
    "conflict",
    "unverified",
    "failed",
    "gone",
)
BAD: frozenset[Outcome] = frozenset({"refused", "conflict", "failed"})  # exit status 1
SETTLED: frozenset[Outcome] = frozenset({"copied", "present"})  # not looked at again by watch

NewTemp = Callable[[str], Path]


@dataclass(frozen=True, slots=True)
class ModuleFile:
    """One module version file in a storage: key, module, version, kind."""

    key: str
    module: str
    version: str
    kind: Kind

    @property
    def sidecar(self) -> str:
        return self.key + SIDECAR

    @property
    def what(self) -> str:
        return f"{self.module}@{self.version} .{self.kind}"


def parse_key(key: str) -> ModuleFile | None:
    """The module file a storage key holds, or None for anything replicate leaves alone."""
    if key.startswith(_SKIP_PREFIXES):
        return None
    esc_path, sep, file = key.rpartition("/@v/")
    if not sep or not esc_path or "/" in file:
        return None
    base, dot, ext = file.rpartition(".")
    if not dot or not base or ext not in ("zip", "mod", "info"):
        return None
    try:
        module, version = unescape_path(esc_path), unescape_version(base)
    except GomirrorError:
        return None
    if ext == "info" and not is_canonical_for(module, version):
        return None  # only canonical .info files are immutable (queries live elsewhere anyway)
    kind: Kind = "zip" if ext == "zip" else "mod" if ext == "mod" else "info"
    return ModuleFile(key, module, version, kind)


@dataclass(frozen=True, slots=True)
class FileResult:
    """What one pass did with one file."""

    file: ModuleFile
    outcome: Outcome
    size: int = 0  # bytes written to the target
    reason: str = ""


@dataclass
class Report:
    """The results of one pass."""

    source: str
    target: str
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # the pass could not run at all (listing failed)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def bytes_copied(self) -> int:
        return sum(r.size for r in self.results if r.outcome == "copied")

    @property
    def problems(self) -> list[FileResult]:
        return [r for r in self.results if r.reason]

    @property
    def exit_code(self) -> int:
        return 1 if self.error or any(r.outcome in BAD for r in self.results) else 0

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(o)} {o}" for o in OUTCOMES if self.count(o) or o in SETTLED
        )
        text = f"{len(self.results)} files: {counts}"
        return f"{text}; pass failed: {self.error}" if self.error else text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.source, "to": self.target, "files": len(self.results)}
        out.update({o: self.count(o) for o in OUTCOMES})
        out.update(
            bytes_copied=self.bytes_copied,
            seconds=round(self.seconds, 3),
            error=self.error or None,
            problems=[
                {"key": r.file.key, "outcome": r.outcome, "reason": r.reason} for r in self.problems
            ],
        )
        return out


class _Refused(Exception):
    """The source file's bytes fail a check: never copied."""


def _first_line(e: BaseException) -> str:
    return str(e).split("\n")[0][:300]


def _sidecar_h1(raw: bytes | None) -> tuple[str | None, int | None]:
    """The ``h1:`` and (zips) size a sidecar records, (None, None) when it records none."""
    if raw is None:
        return None, None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None, None
    if not isinstance(meta, dict):
        return None, None
    h1, size = meta.get("h1"), meta.get("size")
    return (
        h1 if isinstance(h1, str) and h1.startswith("h1:") else None,
        size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


class _Pass:
    """One replication pass between two storages (see the module docstring)."""

    def __init__(self, source: Storage, target: Storage, new_temp: NewTemp) -> None:
        self.source = source
        self.target = target
        self.new_temp = new_temp

    async def one(self, f: ModuleFile, listed: set[str], in_target: set[str]) -> FileResult:
        try:
            if f.kind == "info":
                return await self._info(f, in_target)
            return await self._with_sidecar(f, listed, in_target)
        except _Refused as e:
            return FileResult(f, "refused", reason=str(e))
        except StorageError as e:
            return FileResult(f, "failed", reason=_first_line(e))

    async def _info(self, f: ModuleFile, in_target: set[str]) -> FileResult:
        if f.key in in_target:
            return FileResult(f, "present")  # immutable: any copy the target has is as good
        data = await self.source.get(f.key)
        if data is None:
            return FileResult(f, "gone", reason="no longer in the source")
        try:
            check_info_body(data, f.module, f.version)
        except GomirrorError as e:
            raise _Refused(f"invalid .info: {_first_line(e)}") from None
        await self.target.put_bytes(f.key, data)
        return FileResult(f, "copied", len(data))

    async def _with_sidecar(
        self, f: ModuleFile, listed: set[str], in_target: set[str]
    ) -> FileResult:
        if f.sidecar not in listed:
            return FileResult(f, "unverified", reason="no sidecar recording its h1: (not copied)")
        if f.key in in_target:  # the three reads at once: a re-run is mostly this
            side, target_side, st = await asyncio.gather(
                self.source.get(f.sidecar), self.target.get(f.sidecar), self.target.stat(f.key)
            )
        else:
            side, target_side, st = await self.source.get(f.sidecar), None, None
        want, want_size = _sidecar_h1(side)
        if side is None or want is None:
            return FileResult(f, "unverified", reason="no sidecar recording its h1: (not copied)")
        if f.key in in_target:
            have, _ = _sidecar_h1(target_side)
            if have is not None and have != want:
                return FileResult(
                    f, "conflict", reason=f"target has {have}, source has {want} (not overwritten)"
                )
            if have == want and st is not None and (want_size is None or st.size == want_size):
                return FileResult(f, "present")
        if f.kind == "mod":
            return await self._mod(f, side, want)
        return await self._zip(f, side, want)

    async def _mod(self, f: ModuleFile, side: bytes, want: str) -> FileResult:
        data = await self.source.get(f.key)
        if data is None:
            return FileResult(f, "gone", reason="no longer in the source")
        try:
            check_gomod_module(data, f.module, f.version)
        except GomirrorError as e:
            raise _Refused(f"invalid go.mod: {_first_line(e)}") from None
        got = hash_gomod(data)
        if got != want:
            raise _Refused(f"MISMATCH: content hashes to {got}, its sidecar records {want}")
        await self.target.put_bytes(f.sidecar, side)
        await self.target.put_bytes(f.key, data)
        return FileResult(f, "copied", len(data))

    async def _zip(self, f: ModuleFile, side: bytes, want: str) -> FileResult:
        tmp = self.new_temp(".zip")
        try:
            if not await self._fetch(f.key, tmp):
                return FileResult(f, "gone", reason="no longer in the source")
            try:
                checked = await asyncio.to_thread(check_zip, tmp, f.module, f.version)
            except GomirrorError as e:
                raise _Refused(f"invalid zip: {_first_line(e)}") from None
            if checked.h1 != want:
                raise _Refused(
                    f"MISMATCH: content hashes to {checked.h1}, its sidecar records {want}"
                )
            await self.target.put_bytes(f.sidecar, side)
            await self.target.put_file(f.key, tmp)  # may move tmp (disk target: a rename)
            return FileResult(f, "copied", checked.size)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    async def _fetch(self, key: str, dst: Path) -> bool:
        """Copy the source object into the local file dst; False when it is missing."""
        local = await self.source.local_path(key)
        if local is not None:
            try:
                await asyncio.to_thread(_link_or_copy, local, dst)
            except FileNotFoundError:
                return False
            except OSError as e:
                raise StorageError(
                    f"copying {key} to a temp file failed: {e.strerror or e}"
                ) from None
            return True
        chunks = await self.source.stream(key)
        try:
            if chunks is None:
                data = await self.source.get(key)
                if data is None:
                    return False
                await asyncio.to_thread(dst.write_bytes, data)
                return True
            with open(dst, "wb") as out:  # noqa: ASYNC230 - opening is cheap; writes run in threads
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
        except OSError as e:
            raise StorageError(f"writing {key} to a temp file failed: {e.strerror or e}") from None
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()  # an early exit must not leave the source connection open
        return True


def _link_or_copy(src: Path, dst: Path) -> None:
    """dst becomes a snapshot of src: a hard link (renames never change it), else a copy."""
    try:
        os.link(src, dst)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        shutil.copyfile(src, dst)


async def _listing(storage: Storage) -> set[str]:
    return {k async for k in storage.keys()}  # noqa: SIM118 - an async iterator


async def replicate(
    source: Storage,
    target: Storage,
    *,
    new_temp: NewTemp,
    jobs: int = DEFAULT_JOBS,
    names: tuple[str, str] = ("source", "target"),
    skip: Collection[str] = (),
    on_planned: Callable[[int], None] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> Report:
    """One pass: copy every verified module file of source that target lacks (module docstring).

    ``new_temp(suffix)`` names a fresh local temp path (for zips); ``skip``
    holds keys settled by an earlier pass. A listing that fails ends the pass
    with ``Report.error`` set; a file that fails is one ``failed`` result.
    """
    report = Report(*names)
    start = time.monotonic()
    try:
        listed = await _listing(source)
        files = sorted(
            (f for k in listed if k not in skip and (f := parse_key(k)) is not None),
            key=lambda f: f.key,
        )
        in_target = await _listing(target) if files else set()
    except StorageError as e:
        report.error = _first_line(e)
        report.seconds = time.monotonic() - start
        return report
    if on_planned is not None:
        on_planned(len(files))
    run = _Pass(source, target, new_temp)
    todo = iter(files)

    async def worker() -> None:
        for f in todo:
            result = await run.one(f, listed, in_target)
            report.results.append(result)
            if on_result is not None:
                on_result(result)

    await asyncio.gather(*(worker() for _ in range(max(1, min(jobs, len(files))))))
    report.results.sort(key=lambda r: r.file.key)
    report.seconds = time.monotonic() - start
    return report


async def watch(
    pass_once: Callable[[Collection[str]], Awaitable[Report]],
    *,
    interval: float,
    stop: asyncio.Event,
    on_pass: Callable[[Report], None],
) -> Report | None:
    """Run passes every ``interval`` s until ``stop`` is set; return the last finished one.

    ``pass_once(skip)`` runs one pass skipping the given keys. A pass running
    when ``stop`` is set is cancelled: every write is atomic, so nothing
    partial is left, and the next run copies what it had not finished.
    """
    settled: set[str] = set()
    last: Report | None = None
    while not stop.is_set():
        task = asyncio.ensure_future(pass_once(settled))
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            break
        stopper.cancel()
        last = task.result()
        settled.update(_settled(last.results))
        on_pass(last)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    return last


def _settled(results: Iterable[FileResult]) -> Iterable[str]:
    # Sidecar keys never need skipping: they are not module files (parse_key).
    return (r.file.key for r in results if r.outcome in SETTLED)
