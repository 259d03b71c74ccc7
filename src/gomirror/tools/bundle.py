"""bundle writes and reads cache bundles for air-gapped networks: ``cache export`` and ``cache import``.

A bundle is a plain tar. Its first member, ``gomirror-bundle.json``, says
what it holds; every other member is named by its storage key:

- module files ``<esc>/@v/<v>.info|.mod|.zip`` and their sidecars;
- for the checksum database ``<name>`` the bundle was made with: the
  verified lookups ``sumdb/<name>/lookup/<esc>@<v>`` of its module
  versions, the cached tiles ``sumdb/<name>/tile/...`` and the signed tree
  head ``_gomirror/sumdb/<name>/latest`` (the layout of
  ``gomirror.sumdb.client``).

:func:`export_bundle` re-verifies each version's lookup through gomirror's
own checksum-database client first (so the lookup and the tiles proving it
against the latest tree head are in the cache), then writes the tar next to
its destination and renames it into place.

:func:`import_bundle` trusts nothing in the bundle but what the local
configuration's checksum-database key proves. It reads the tar into this
process's temp area (regular files with valid keys of the kinds above
only, size-limited), checks every ``.zip`` (every zip rule), ``.mod`` and
``.info`` as a download is checked, and verifies each ``h1:`` through a
``SumdbClient`` with the configured key whose store reads the bundle (then
this cache's own tiles and lookups) and whose transport has no network: every
lookup must authenticate against the bundled signed tree head, and that
head must be consistent with the one this cache already trusts. Anything
failing refuses the whole bundle (:class:`BundleRefused`, every reason
listed) before a single file is written. Then, file by file (sidecar first,
as the service writes them), what the cache lacks is stored: the module
files with fresh sidecars recording the verdict, the lookups and tiles the
verification read, and the newer tree head. Modules matching the no-sumdb
patterns are checked against the zip rules only and reported so; with the
checksum database off, import needs ``unverified`` and then checks module
files against their own sidecars.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gomirror import __version__
from gomirror.errors import ChecksumMismatch, GomirrorError, NotFound, StorageError
from gomirror.module.dirhash import hash_gomod
from gomirror.module.gomod import check_gomod_module
from gomirror.module.info import check_info_body
from gomirror.module.modzip import MAX_ZIP_FILE, check_zip
from gomirror.module.paths import escape_path, escape_version
from gomirror.storage.base import Storage
from gomirror.storage.disk import check_key
from gomirror.sumdb.client import SumdbClient, latest_key
from gomirror.sumdb.tileauth import cache_prefix
from gomirror.sumdb.verifier import SumdbSpec, SumdbVerifier
from gomirror.tools.graph import ModuleVersion
from gomirror.tools.inventory import Kind, classify
from gomirror.upstream.verified import verdict_dict

MANIFEST = "gomirror-bundle.json"
FORMAT = 1
MAX_SMALL_MEMBER = 16 << 20  # .info, .mod, sidecars, lookups, tiles, tree heads
COPY_CHUNK = 1 << 20

Skips = Callable[[str], bool]


class BundleRefused(GomirrorError):
    """The bundle failed a check; ``reasons`` lists every failure found."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        super().__init__(f"bundle refused: {reasons[0]}{more}")


def version_keys(mv: ModuleVersion, kinds: set[str]) -> list[str]:
    base = f"{escape_path(mv.path)}/@v/{escape_version(mv.version)}"
    return [f"{base}.{k}" for k in ("info", "mod", "zip") if k in kinds]


def lookup_key(db: str, mv: ModuleVersion) -> str:
    return f"{cache_prefix(db)}lookup/{escape_path(mv.path)}@{escape_version(mv.version)}"


# --- export --------------------------------------------------------------------------------


@dataclass
class ExportReport:
    out: Path
    versions: int = 0
    files: int = 0
    bytes: int = 0
    sumdb: dict[str, int] = field(default_factory=dict)  # database → tree size of the head
    missing: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": str(self.out),
            "versions": self.versions,
            "files": self.files,
            "bytes": self.bytes,
            "sumdb": self.sumdb,
            "missing": self.missing,
        }


async def export_bundle(
    storage: Storage,
    selection: dict[ModuleVersion, set[str]],
    out: Path,
    *,
    client: SumdbClient | None,
    skips: Skips,
    tmp: Path,
) -> ExportReport:
    """Write the bundle of selection (version → kinds of file) to out; nothing when a file is missing."""
    rep = ExportReport(out)
    members: list[str] = []
    for mv in sorted(selection):
        for key in version_keys(mv, selection[mv]):
            if await storage.stat(key) is None:
                rep.missing.append(f"{mv}: {key} is not in the cache")
                continue
            members.append(key)
            if await storage.stat(key + ".json") is not None:
                members.append(key + ".json")
        if client is not None and not skips(mv.path):
            try:
                await client.lookup_record(mv.path, mv.version)
                members.append(lookup_key(client.name, mv))
            except GomirrorError as e:
                rep.missing.append(f"{mv}: checksum database {client.name}: {_first(e)}")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created": time.time(),
        "gomirror": __version__,
        "versions": [
            {"module": mv.path, "version": mv.version, "files": sorted(selection[mv])}
            for mv in sorted(selection)
        ],
        "sumdb": None,
    }
    if client is not None:
        tiles = [k async for k in storage.keys(cache_prefix(client.name) + "tile/")]
        members += sorted(tiles)
        if await storage.stat(latest_key(client.name)) is not None:
            members.append(latest_key(client.name))
        rep.sumdb[client.name] = client.latest.n
        manifest["sumdb"] = {"name": client.name, "tree_size": client.latest.n}
    if rep.missing:
        return rep
    rep.versions = len(selection)
    partial = tmp / (out.name + ".part")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tf:
            _add_bytes(tf, MANIFEST, json.dumps(manifest, indent=1).encode())
            for key in members:
                path = await storage.local_path(key)
                if path is not None:
                    tf.add(path, arcname=key, recursive=False, filter=_anonymous)
                else:
                    data = await storage.get(key)
                    if data is None:
                        raise StorageError(f"{key} vanished from the cache while exporting")
                    _add_bytes(tf, key, data)
                rep.files += 1
        rep.bytes = partial.stat().st_size
        shutil.move(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return rep


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or ids from this machine in the bundle."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


def _first(e: BaseException) -> str:
    return str(e).split("\n", 1)[0][:300]


# --- import --------------------------------------------------------------------------------


class _Members:
    """The bundle's regular files, extracted under one temp directory: key → file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}

    def read(self, key: str) -> bytes:
        return self.paths[key].read_bytes()


def _extract(bundle: Path, into: Path) -> _Members:
    """Extract every member safely (see the module docstring); BundleRefused when one is bad."""
    members = _Members(into)
    problems: list[str] = []
    try:
        tf = tarfile.open(bundle, "r:*")  # noqa: SIM115 - closed below
    except (OSError, tarfile.TarError) as e:
        raise BundleRefused([f"{bundle}: cannot read as a tar file: {e}"]) from None
    with tf:
        try:
            for n, m in enumerate(tf):
                if m.isdir():
                    continue
                if not m.isfile():
                    problems.append(f"{m.name}: not a regular file")
                    continue
                try:
                    check_key(m.name)
                except StorageError:
                    problems.append(f"{m.name}: not a valid cache key")
                    continue
                if m.name in members.paths:
                    problems.append(f"{m.name}: appears twice")
                    continue
                limit = MAX_ZIP_FILE if m.name.endswith(".zip") else MAX_SMALL_MEMBER
                if m.size > limit:
                    problems.append(f"{m.name}: {m.size} bytes, more than the {limit} allowed")
                    continue
                src = tf.extractfile(m)
                if src is None:
                    problems.append(f"{m.name}: unreadable")
                    continue
                dst = into / str(n)
                with src, open(dst, "wb") as f:
                    shutil.copyfileobj(src, f, COPY_CHUNK)
                members.paths[m.name] = dst
        except (OSError, tarfile.TarError) as e:
            problems.append(f"{bundle}: damaged tar file: {e}")
    if problems:
        raise BundleRefused(problems)
    return members


class _BundleStore:
    """The state store of the verifying client: bundle first, local proofs second, writes in memory."""

    def __init__(self, members: _Members, local: Storage, db: str) -> None:
        self.members = members
        self.local = local
        self.proofs = cache_prefix(db)
        self.written: dict[str, bytes] = {}
        self.read_from_bundle: set[str] = set()
        self.rejected: set[str] = set()

    async def get(self, key: str) -> bytes | None:
        if key in self.written:
            return self.written[key]
        if key in self.rejected:
            return None
        if key in self.members.paths:
            self.read_from_bundle.add(key)
            return await asyncio.to_thread(self.members.read, key)
        if key.startswith(self.proofs):  # this cache's own tiles and lookups (verified again)
            return await self.local.get(key)
        return None

    async def put_bytes(self, key: str, data: bytes) -> None:
        self.written[key] = data

    async def delete(self, key: str) -> None:
        """The client drops what failed authentication: remember it, and never serve it again."""
        self.rejected.add(key)
        self.written.pop(key, None)


class _NoNetwork:
    """A checksum-database transport that only knows this cache's own tree head."""

    def __init__(self, local_latest: bytes | None) -> None:
        self.local_latest = local_latest

    async def fetch(self, path: str) -> bytes:
        if path == "latest" and self.local_latest:
            return self.local_latest
        raise NotFound(f"{path}: not in the bundle")


@dataclass
class ImportReport:
    bundle: Path
    versions: int = 0
    files_added: int = 0
    files_present: int = 0
    proofs_added: int = 0
    unverified: list[str] = field(default_factory=list)  # versions checked without the database
    sumdb: str | None = None
    tree_size: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle),
            "versions": self.versions,
            "files_added": self.files_added,
            "files_present": self.files_present,
            "proofs_added": self.proofs_added,
            "unverified": self.unverified,
            "sumdb": self.sumdb,
            "tree_size": self.tree_size,
        }


@dataclass
class _Checked:
    key: str
    h1: str | None
    verdict: dict[str, Any]
    size: int = 0
    files: int = 0


def _check_file(members: _Members, key: str, module: str, version: str, file: str) -> _Checked:
    """The zip rules, the go.mod and .info checks of one module file; raises what the check raises."""
    if file == "zip":
        z = check_zip(members.paths[key], module, version)
        return _Checked(key, z.h1, {}, z.size, z.files)
    data = members.read(key)
    if file == "mod":
        check_gomod_module(data, module, version)
        return _Checked(key, hash_gomod(data), {})
    check_info_body(data, module, version)
    return _Checked(key, None, {})


def _sidecar_facts(members: _Members, key: str) -> dict[str, Any]:
    side = members.paths.get(key + ".json")
    if side is None:
        return {}
    try:
        meta = json.loads(side.read_bytes())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


async def import_bundle(
    bundle: Path,
    storage: Storage,
    *,
    spec: SumdbSpec | None,
    skips: Skips,
    tmp: Path,
    unverified: bool = False,
) -> ImportReport:
    """Verify bundle completely, then add what the cache lacks (see the module docstring)."""
    rep = ImportReport(bundle, sumdb=spec.name if spec else None)
    work = tmp / "bundle"
    work.mkdir(parents=True, exist_ok=True)
    try:
        members = await asyncio.to_thread(_extract, bundle, work)
        checked, store, client = await _verify(members, storage, spec, skips, unverified, rep)
        await _commit(members, storage, checked, store, client, rep)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    return rep


async def _verify(
    members: _Members,
    storage: Storage,
    spec: SumdbSpec | None,
    skips: Skips,
    unverified: bool,
    rep: ImportReport,
) -> tuple[list[_Checked], _BundleStore | None, SumdbClient | None]:
    problems: list[str] = []
    if MANIFEST not in members.paths:
        raise BundleRefused(
            [f"no {MANIFEST}: not a gomirror bundle (made by gomirror cache export)"]
        )
    try:
        manifest = json.loads(members.read(MANIFEST))
        if manifest.get("format") != FORMAT:
            problems.append(f"{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT}")
    except (ValueError, AttributeError):
        problems.append(f"{MANIFEST}: not JSON")
    if spec is None and not unverified:
        raise BundleRefused(
            [
                "the checksum database is off here (sumdb = off), so nothing in the bundle can"
                " be proven authentic: configure the database the bundle was made with"
                " (--sumdb KEY), or pass --unverified to trust the bundle's own sidecars"
            ]
        )
    store: _BundleStore | None = None
    verifier: SumdbVerifier | None = None
    client: SumdbClient | None = None
    if spec is not None:
        store = _BundleStore(members, storage, spec.name)
        client = SumdbClient(
            spec.verifier_key, _NoNetwork(await storage.get(latest_key(spec.name))), store
        )
        verifier = SumdbVerifier(client, nosumdb="")
    files: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key in members.paths:
        if key == MANIFEST:
            continue
        entry = classify(key, 0, 0.0, 0.0)
        if entry.kind is Kind.VERSION:
            if not entry.file.endswith(".json"):
                files.setdefault((entry.module, entry.version), []).append((key, entry.file))
            continue
        if spec is None and key.startswith(("sumdb/", "_gomirror/sumdb/")):
            continue  # proofs nothing here can check: left out
        if spec is not None and (
            key == latest_key(spec.name) or key.startswith(cache_prefix(spec.name))
        ):
            continue
        what = f"checksum-database proof for {spec.name}" if spec else "checksum-database proof"
        problems.append(f"{key}: neither a module file nor a {what}")
    checked: list[_Checked] = []
    for (module, version), found in sorted(files.items()):
        mv = f"{module}@{version}"
        for key, file in sorted(found):
            try:
                c = await asyncio.to_thread(_check_file, members, key, module, version, file)
            except (GomirrorError, OSError) as e:
                problems.append(f"{mv} {file}: {_first(e)}")
                continue
            if c.h1 is not None:
                kind: Literal["zip", "mod"] = "zip" if file == "zip" else "mod"
                if verifier is not None and client is not None and not skips(module):
                    try:
                        v = await verifier.check(module, version, kind, c.h1)
                        c.verdict = verdict_dict(v)
                    except GomirrorError as e:
                        lk = lookup_key(client.name, ModuleVersion(module, version))
                        if store is not None and lk in store.rejected:
                            why = "its bundled checksum-database lookup failed authentication"
                        elif lk not in members.paths:
                            why = (
                                f"neither the bundle nor this cache has a {client.name} lookup"
                                " to prove it; export it again with this checksum database"
                            )
                        elif isinstance(e, ChecksumMismatch):
                            why = (
                                f"checksum mismatch: {client.name} has {e.expected},"
                                f" the bundle's file has {e.got}"
                            )
                        else:
                            why = _first(e)
                        problems.append(f"{mv} {file}: {why}")
                        continue
                else:
                    recorded = _sidecar_facts(members, key).get("h1")
                    if verifier is None and recorded != c.h1:
                        problems.append(
                            f"{mv} {file}: h1 {c.h1} differs from its sidecar's {recorded}"
                        )
                        continue
                    note = "nosumdb" if verifier is not None else "unverified import"
                    c.verdict = {"verified": False, "note": f"skipped: {note}"}
                    if mv not in rep.unverified:
                        rep.unverified.append(mv)
            checked.append(c)
        rep.versions += 1
    if client is not None and not problems and client.latest.n:
        # This cache's own tree head (if any) must be consistent with the bundle's.
        try:
            if await storage.get(latest_key(client.name)):
                await client.refresh()
        except GomirrorError as e:
            problems.append(
                f"the bundle's checksum-database tree is not consistent with this cache's: {_first(e)}"
            )
    if problems:
        raise BundleRefused(problems)
    return checked, store, client


async def _commit(
    members: _Members,
    storage: Storage,
    checked: list[_Checked],
    store: _BundleStore | None,
    client: SumdbClient | None,
    rep: ImportReport,
) -> None:
    now = time.time()
    # Every module version is written sidecar first, file second, as the service does.
    for c in checked:
        if await storage.stat(c.key) is not None:
            rep.files_present += 1
            continue
        if c.h1 is not None:
            facts = _sidecar_facts(members, c.key)
            meta: dict[str, Any] = {
                "h1": c.h1,
                "verdict": c.verdict,
                "upstream": f"bundle {rep.bundle.name}"
                + (
                    f" (from {facts['upstream']})" if isinstance(facts.get("upstream"), str) else ""
                ),
                "fetched": facts["fetched"]
                if isinstance(facts.get("fetched"), int | float)
                else now,
                "imported": now,
            }
            if c.key.endswith(".zip"):
                meta.update(size=c.size, files=c.files)
            await storage.put_bytes(c.key + ".json", json.dumps(meta, sort_keys=True).encode())
        if c.key.endswith(".zip"):
            await storage.put_file(c.key, members.paths[c.key])
        else:
            await storage.put_bytes(c.key, members.read(c.key))
        rep.files_added += 1
    if store is None or client is None:
        return
    for key in sorted(store.read_from_bundle - store.rejected):
        if key == latest_key(client.name) or await storage.stat(key) is not None:
            continue
        with contextlib.suppress(KeyError):
            await storage.put_bytes(key, members.read(key))
            rep.proofs_added += 1
    rep.tree_size = client.latest.n
    local = await storage.get(latest_key(client.name))
    if client.latest_note and client.latest_note != local:
        await storage.put_bytes(latest_key(client.name), client.latest_note)
        rep.proofs_added += 1
