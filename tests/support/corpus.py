"""corpus builds module corpora for tests: Go's testdata modules and synthetic ones.

Contract: a ``Corpus`` is a set of ``ModuleVersion`` (path, canonical version, ``.info`` JSON
bytes, ``.mod`` bytes or None, zip bytes) plus optional per-module overrides: the ``@v/list``
text, the ``@latest`` answer (a version, or None for "404"), and non-canonical ``.info`` queries
(``master`` -> a version). Zips hold entries ``path@version/name``, no directory entries, Deflate,
fixed timestamps, so they are byte-for-byte deterministic. Hashes (``h1_*``) are computed here with
hashlib alone (dirhash Hash1, protocol.md §3.1), never with product code.

Loaders: ``Corpus.from_go_testdata(dir)`` reads ``$GOROOT/src/cmd/go/testdata/mod/*.txt`` as Go's
own test proxy does (file ``<escaped path, / as _>_<escaped version>.txt``, split at the last
``_v``; members ``.info``/``.mod`` are served as is, ``.zip`` members are ignored, a member named
``/x`` goes into the zip as ``x`` without the prefix, every other member goes under
``path@version/``; a missing ``.info`` is synthesised as ``{"Version", "Time"}``; a missing ``.mod``
stays missing, i.e. 404). Builders: ``add_module``, ``synthetic_module``, ``synthetic_graph``.
``write_tree(root)`` lays the corpus out as a static GOPROXY tree (for file:// or nginx).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import random
import re
import subprocess
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from support.txtar import parse_file

__all__ = [
    "Corpus",
    "ModuleVersion",
    "build_zip",
    "escape_path",
    "escape_version",
    "go_testdata_dir",
    "h1_files",
    "h1_mod",
    "h1_zip",
    "is_pseudo_version",
    "semver_compare",
    "semver_key",
    "unescape_path",
    "unescape_version",
]

DEFAULT_TIME = "2019-01-01T00:00:00Z"
_ZIP_DATE = (2019, 1, 1, 0, 0, 0)

# --------------------------------------------------------------------------- escaping


def escape_path(path: str) -> str:
    """Case-encode a module path: every upper-case ASCII letter becomes ``!`` + lower-case."""
    if not path or "!" in path:
        raise ValueError(f"cannot escape module path {path!r}")
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def escape_version(version: str) -> str:
    """Case-encode a version (or version query) like a path element."""
    if not version or "!" in version or "/" in version or version in (".", ".."):
        raise ValueError(f"version {version!r} invalid: disallowed version string")
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), version)


def _unescape(s: str) -> str | None:
    out: list[str] = []
    bang = False
    for ch in s:
        if ord(ch) >= 0x80:
            return None
        if bang:
            if not ("a" <= ch <= "z"):
                return None
            out.append(ch.upper())
            bang = False
        elif ch == "!":
            bang = True
        elif "A" <= ch <= "Z":
            return None
        else:
            out.append(ch)
    if bang or not out:
        return None
    return "".join(out)


_PATH_ELEM = re.compile(r"^[A-Za-z0-9\-._~]+$")


def unescape_path(escaped: str) -> str | None:
    """Decode a case-encoded module path; None if the encoding or the path is invalid."""
    path = _unescape(escaped)
    if path is None or path.startswith("/") or path.endswith("/") or "." not in path.split("/")[0]:
        return None
    for elem in path.split("/"):
        if not _PATH_ELEM.match(elem) or elem.startswith(".") or elem.endswith("."):
            return None
    return path


def unescape_version(escaped: str) -> str | None:
    """Decode a case-encoded version/query; None if invalid."""
    version = _unescape(escaped)
    if version is None or "/" in version or version in (".", ".."):
        return None
    return version


# --------------------------------------------------------------------------- semver

_SEMVER = re.compile(
    r"^v(0|[1-9]\d*)(?:\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?)?)?$"
)
_PSEUDO = re.compile(
    r"^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)(\d{14})-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)


def _parse(v: str) -> tuple[int, int, int, str] | None:
    m = _SEMVER.match(v)
    if not m:
        return None
    if m.group(2) is None and (m.group(4) or m.group(5)):
        return None
    if m.group(3) is None and m.group(2) is not None and (m.group(4) or m.group(5)):
        return None
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), m.group(4) or ""


def semver_key(v: str) -> tuple[object, ...]:
    """Sort key implementing Go semver ordering (invalid versions sort first, all equal)."""
    p = _parse(v)
    if p is None:
        return (0,)
    major, minor, patch, pre = p
    if not pre:
        pre_key: tuple[object, ...] = (1,)
    else:
        ids = [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in pre.split(".")]
        pre_key = (0, *ids)
    return (1, major, minor, patch, pre_key)


def semver_compare(a: str, b: str) -> int:
    """Return -1, 0 or +1 comparing two versions with Go's semver rules."""
    ka, kb = semver_key(a), semver_key(b)
    return (ka > kb) - (ka < kb)


def is_pseudo_version(v: str) -> bool:
    """True if ``v`` is a pseudo-version (protocol.md §1.7 recognizer)."""
    return v.count("-") >= 2 and _parse(v) is not None and _PSEUDO.match(v) is not None


def _major_ok(path: str, version: str) -> bool:
    """Simplified module.Check major-version agreement between path and version."""
    p = _parse(version)
    if p is None:
        return False
    m = re.search(r"/v([0-9]+)$", path) or re.search(r"^gopkg\.in/.*\.v([0-9]+)(-unstable)?$", path)
    if m is None:
        return p[0] <= 1 or version.endswith("+incompatible")
    if path.startswith("gopkg.in/"):
        return p[0] == int(m.group(1)) or (m.group(1) == "1" and is_pseudo_version(version))
    return p[0] == int(m.group(1))


def _version_time(version: str) -> str:
    m = _PSEUDO.match(version)
    if m and is_pseudo_version(version):
        t = m.group(3)
        return f"{t[0:4]}-{t[4:6]}-{t[6:8]}T{t[8:10]}:{t[10:12]}:{t[12:14]}Z"
    return DEFAULT_TIME


# --------------------------------------------------------------------------- hashing and zips


def h1_files(files: Iterable[tuple[str, bytes]]) -> str:
    """dirhash Hash1 over (name, content) pairs: the ``h1:`` value."""
    lines = []
    for name, data in sorted(files, key=lambda f: f[0].encode("utf-8")):
        if "\n" in name:
            raise ValueError(f"dirhash: filenames with newlines are not supported: {name!r}")
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    summary = "".join(lines).encode("utf-8")
    return "h1:" + base64.b64encode(hashlib.sha256(summary).digest()).decode("ascii")


def h1_zip(zip_bytes: bytes) -> str:
    """The module h1 of a zip: every entry (full name), directory entries hash as empty files."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        return h1_files((info.filename, z.read(info)) for info in z.infolist())


def h1_mod(gomod: bytes) -> str:
    """The ``/go.mod`` h1: Hash1 of the single file named ``go.mod``."""
    return h1_files([("go.mod", gomod)])


def build_zip(entries: Iterable[tuple[str, bytes]]) -> bytes:
    """Write a deterministic Deflate zip of (full entry name, content); no directory entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


@functools.cache
def go_testdata_dir() -> Path:
    """``$(go env GOROOT)/src/cmd/go/testdata/mod`` of the installed go command."""
    goroot = subprocess.run(
        ["go", "env", "GOROOT"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    return Path(goroot) / "src" / "cmd" / "go" / "testdata" / "mod"


# --------------------------------------------------------------------------- the corpus


@dataclass
class ModuleVersion:
    """One module version as a GOPROXY serves it."""

    path: str
    version: str
    info: bytes
    mod: bytes | None
    zip: bytes
    rev: str = ""  # commit hash (or prefix) this version is known under, for hex queries
    files: list[tuple[str, bytes]] = field(default_factory=list)  # zip content, full names

    @property
    def h1(self) -> str:
        """The zip's ``h1:`` (go.sum ``path version h1:...`` line)."""
        return h1_zip(self.zip)

    @property
    def gomod_h1(self) -> str:
        """The go.mod ``h1:`` (go.sum ``path version/go.mod h1:...`` line)."""
        if self.mod is None:
            raise ValueError(f"{self.path}@{self.version} has no .mod")
        return h1_mod(self.mod)

    def go_sum_lines(self) -> list[str]:
        """The two go.sum lines for this version."""
        return [
            f"{self.path} {self.version} {self.h1}",
            f"{self.path} {self.version}/go.mod {self.gomod_h1}",
        ]

    @property
    def escaped(self) -> tuple[str, str]:
        """(escaped path, escaped version)."""
        return escape_path(self.path), escape_version(self.version)


class Corpus:
    """A mutable set of module versions plus list/@latest/query overrides."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], ModuleVersion] = {}
        self.list_overrides: dict[str, str] = {}
        self.latest_overrides: dict[str, str | None] = {}
        self.queries: dict[tuple[str, str], str] = {}

    # ----------------------------------------------------------- basic access
    def add(self, mv: ModuleVersion) -> ModuleVersion:
        """Insert (or replace) one module version."""
        self._versions[(mv.path, mv.version)] = mv
        return mv

    def get(self, path: str, version: str) -> ModuleVersion | None:
        """The module version, or None."""
        return self._versions.get((path, version))

    def __getitem__(self, key: tuple[str, str]) -> ModuleVersion:
        return self._versions[key]

    def __contains__(self, key: object) -> bool:
        return key in self._versions

    def __iter__(self) -> Iterator[ModuleVersion]:
        return iter(list(self._versions.values()))

    def __len__(self) -> int:
        return len(self._versions)

    def modules(self) -> list[str]:
        """All module paths (with versions or a list override), sorted."""
        return sorted({p for p, _ in self._versions} | set(self.list_overrides))

    def has_module(self, path: str) -> bool:
        """True if the corpus knows the module (so ``@v/list`` is 200)."""
        return path in self.list_overrides or any(p == path for p, _ in self._versions)

    def versions(self, path: str) -> list[str]:
        """All versions of ``path`` (including pseudo-versions), semver-sorted."""
        vs = [v for p, v in self._versions if p == path]
        return sorted(vs, key=lambda v: (semver_key(v), v))

    # ----------------------------------------------------------- overrides
    def set_list(self, path: str, text: str) -> None:
        """Serve ``text`` verbatim as ``path/@v/list``."""
        self.list_overrides[path] = text

    def set_latest(self, path: str, version: str | None) -> None:
        """Make ``@latest`` answer ``version``'s info, or 404 when None."""
        self.latest_overrides[path] = version

    def add_query(self, path: str, query: str, version: str) -> None:
        """Resolve the non-canonical ``.info`` query (``master``, a hash...) to ``version``."""
        self.queries[(path, query)] = version

    # ----------------------------------------------------------- protocol answers
    def list_text(self, path: str) -> str | None:
        """The ``@v/list`` body: tagged (non-pseudo, major-matching) versions; None if unknown."""
        if path in self.list_overrides:
            return self.list_overrides[path]
        if not self.has_module(path):
            return None
        tagged = [v for v in self.versions(path) if not is_pseudo_version(v) and _major_ok(path, v)]
        return "".join(v + "\n" for v in tagged)

    def latest_version(self, path: str) -> str | None:
        """The ``@latest`` version: release, else pre-release, else newest pseudo-version."""
        if path in self.latest_overrides:
            return self.latest_overrides[path]
        vs = [v for v in self.versions(path) if _major_ok(path, v)]
        for pick in (
            lambda v: not is_pseudo_version(v) and not _parse(v)[3],  # type: ignore[index]
            lambda v: not is_pseudo_version(v),
            is_pseudo_version,
        ):
            chosen = [v for v in vs if _parse(v) is not None and pick(v)]
            if chosen:
                return chosen[-1]
        return None

    def resolve(self, path: str, query: str) -> ModuleVersion | None:
        """Resolve an ``.info`` request: a known version, a configured query, or a hex prefix."""
        mv = self.get(path, query)
        if mv is not None:
            return mv
        if (path, query) in self.queries:
            return self.get(path, self.queries[(path, query)])
        if re.fullmatch(r"[0-9a-f]{4,40}", query):
            best: ModuleVersion | None = None
            for v in self.versions(path):
                cand = self._versions[(path, v)]
                rev = cand.rev
                if rev and (rev.startswith(query) or query.startswith(rev)):
                    best = cand
            return best
        return None

    # ----------------------------------------------------------- builders
    def add_module(
        self,
        path: str,
        version: str,
        files: Mapping[str, bytes] | None = None,
        gomod: bytes | None = None,
        time: str | None = None,
        *,
        rev: str = "",
        info: bytes | None = None,
    ) -> ModuleVersion:
        """Add a module version from its files (names relative to the module root).

        ``gomod`` (default: ``files["go.mod"]``, else ``module <path>\\n``) is the ``.mod``
        and, unless ``files`` already has one, also goes into the zip as ``go.mod``.
        """
        content = dict(files or {})
        if gomod is None:
            gomod = content.get("go.mod", f"module {path}\n".encode())
        content.setdefault("go.mod", gomod)
        prefix = f"{path}@{version}/"
        entries = [(prefix + name, data) for name, data in content.items()]
        if info is None:
            info_obj = {"Version": version, "Time": time or _version_time(version)}
            info = json.dumps(info_obj, separators=(",", ":")).encode()
        if not rev and is_pseudo_version(version):
            rev = version.split("+")[0].rsplit("-", 1)[1]
        mv = ModuleVersion(path, version, info, gomod, build_zip(entries), rev, entries)
        return self.add(mv)

    def synthetic_module(
        self,
        path: str,
        version: str,
        size_bytes: int,
        n_files: int = 1,
        seed: int = 0,
        *,
        incompressible: bool = True,
        gomod: bytes | None = None,
    ) -> ModuleVersion:
        """Add a deterministic module whose data files total about ``size_bytes``.

        Files are ``data/fNNNN.bin`` (random bytes when ``incompressible``, else repetitive
        text), plus ``go.mod`` and a ``doc.go`` declaring a package named after the path.
        """
        rng = random.Random(f"{seed}:{path}@{version}")
        files: dict[str, bytes] = {"doc.go": f"package {_pkg_name(path)}\n".encode()}
        n_files = max(1, n_files)
        base, extra = divmod(max(0, size_bytes), n_files)
        for i in range(n_files):
            n = base + (1 if i < extra else 0)
            if incompressible:
                data = rng.randbytes(n)
            else:
                line = f"line {seed} {i} of {path}@{version}\n".encode()
                data = (line * (n // len(line) + 1))[:n]
            files[f"data/f{i:04d}.bin"] = data
        return self.add_module(path, version, files, gomod=gomod)

    def synthetic_graph(
        self,
        n_modules: int,
        *,
        prefix: str = "example.com/graph",
        versions: Iterable[str] = ("v1.0.0",),
        fanout: int = 2,
        seed: int = 0,
        go_version: str = "1.21",
    ) -> list[str]:
        """Add ``n_modules`` modules ``prefix/mNNN`` forming a DAG; return their paths, root first.

        Module i requires module i+1 (so everything is reachable from the root) plus up to
        ``fanout - 1`` random later modules, each at the same version string; each module's
        ``mNNN.go`` imports its requirements, so the graph also builds.
        """
        rng = random.Random(seed)
        paths = [f"{prefix}/m{i:03d}" for i in range(n_modules)]
        deps: list[list[int]] = []
        for i in range(n_modules):
            later = list(range(i + 2, n_modules))
            chosen = {i + 1} if i + 1 < n_modules else set()
            chosen |= set(rng.sample(later, min(len(later), max(0, fanout - 1))))
            deps.append(sorted(chosen))
        for version in versions:
            for i, path in enumerate(paths):
                req = "".join(f"\t{paths[j]} {version}\n" for j in deps[i])
                gomod = f"module {path}\n\ngo {go_version}\n"
                if req:
                    gomod += f"\nrequire (\n{req})\n"
                imports = "".join(f'import _ "{paths[j]}"\n' for j in deps[i])
                src = f"package {_pkg_name(path)}\n\n{imports}\nconst Name = {path!r}\n"
                src = src.replace("'", '"')
                self.add_module(path, version, {f"m{i:03d}.go": src.encode()}, gomod=gomod.encode())
        return paths

    # ----------------------------------------------------------- loaders and writers
    @classmethod
    def from_go_testdata(
        cls, mod_dir: Path | str | None = None, *, only: Iterable[str] | None = None
    ) -> Corpus:
        """Load Go's testdata corpus (``only``: module paths to keep; default all)."""
        corpus = cls()
        keep = set(only) if only is not None else None
        for txt in sorted(Path(mod_dir or go_testdata_dir()).glob("*.txt")):
            name = txt.name.removesuffix(".txt")
            i = name.rfind("_v")
            if i < 0:
                continue
            path = unescape_path(name[:i].replace("_", "/"))
            version = unescape_version(name[i + 1 :])
            if path is None or version is None or (keep is not None and path not in keep):
                continue
            corpus.add(_from_archive(txt, path, version))
        return corpus

    def write_tree(self, root: Path | str) -> Path:
        """Write a static GOPROXY tree (``<esc>/@v/list|.info|.mod|.zip``, ``<esc>/@latest``)."""
        root = Path(root)
        for path in self.modules():
            mdir = root / escape_path(path)
            vdir = mdir / "@v"
            vdir.mkdir(parents=True, exist_ok=True)
            (vdir / "list").write_text(self.list_text(path) or "")
            for v in self.versions(path):
                mv = self._versions[(path, v)]
                ev = escape_version(v)
                (vdir / f"{ev}.info").write_bytes(mv.info)
                if mv.mod is not None:
                    (vdir / f"{ev}.mod").write_bytes(mv.mod)
                (vdir / f"{ev}.zip").write_bytes(mv.zip)
            latest = self.latest_version(path)
            if latest is not None and (path, latest) in self._versions:
                (mdir / "@latest").write_bytes(self._versions[(path, latest)].info)
        return root


def _pkg_name(path: str) -> str:
    last = path.rstrip("/").split("/")[-1]
    if re.fullmatch(r"v[0-9]+", last) and "/" in path:
        last = path.split("/")[-2]
    name = re.sub(r"[^A-Za-z0-9_]", "_", last)
    return name if name and not name[0].isdigit() else "p" + name


def _from_archive(txt: Path, path: str, version: str) -> ModuleVersion:
    _, members = parse_file(txt)
    info: bytes | None = None
    mod: bytes | None = None
    entries: list[tuple[str, bytes]] = []
    for name, data in members:
        if name == ".info":
            info = data
        elif name == ".mod":
            mod = data
        elif name == ".zip":
            continue
        elif name.startswith("/"):
            entries.append((name[1:], data))
        else:
            entries.append((f"{path}@{version}/{name}", data))
    rev = ""
    if info is None:
        info = json.dumps(
            {"Version": version, "Time": _version_time(version)}, separators=(",", ":")
        ).encode()
    else:
        try:
            obj = json.loads(info)
            rev = str(obj.get("Short") or obj.get("Name") or "")
        except (ValueError, AttributeError):
            rev = ""
    if not rev and is_pseudo_version(version):
        rev = version.split("+")[0].rsplit("-", 1)[1]
    return ModuleVersion(path, version, info, mod, build_zip(entries), rev, entries)
