"""modcheck compares, per module version, go.sum, every mirror and the checksum database.

:func:`check_modules` fetches each target's ``.mod`` (and ``.zip`` where a
zip hash is wanted) from every healthy proxy, computes its ``h1:`` with
gomirror's own code (``hash_gomod``; ``check_zip`` applies every zip rule
too), and looks the version up in the checksum database through the route
the go command uses plus every other proxy whose ``/sumdb/<name>/supported``
answered 200, each lookup verified by :class:`~gomirror.sumdb.client.SumdbClient`
(signed tree head, inclusion proof). Modules matching GONOPROXY are fetched
direct by the go command and are not fetched here; modules matching
GONOSUMDB are not looked up. Nothing is written to disk except temporary
zips. :func:`mod_findings` explains the differences (checksum mismatch,
``410 Gone``, ``unknown revision``, ``invalid version``, missing go.sum
entries, versions the database does not know) with the command that fixes
them, and :func:`tampering_proxies` names mirrors serving wrong content.
"""

from __future__ import annotations

import asyncio
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

from gomirror.errors import GomirrorError, NotFound, SumdbError, UpstreamError
from gomirror.module import semver
from gomirror.module.dirhash import hash_gomod
from gomirror.module.modzip import MAX_ZIP_FILE, check_zip
from gomirror.module.paths import check, escape_path, escape_version, match_prefix_patterns
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.transport import HttpSumdbTransport
from gomirror.sumdb.verifier import SumdbSpec
from gomirror.tools.findings import Finding
from gomirror.tools.goenv import GoEnv, go_env_w_line, http_proxy_for
from gomirror.tools.hosts import looks_private, module_host
from gomirror.tools.probe import ProbeOptions
from gomirror.tools.project import Project

Kind = Literal["zip", "mod"]
DbState = Literal["ok", "not-found", "error", "forged", "skipped"]
MAX_MOD = 16 << 20


@dataclass
class Served:
    """What one proxy answered for one module file."""

    proxy: str
    status: int | None = None
    h1: str | None = None
    error: str = ""  # transport failure or invalid content
    body: str = ""  # error body of a non-200 answer


@dataclass
class ModuleCheck:
    """Everything known about one module version."""

    path: str
    version: str
    kinds: tuple[Kind, ...]
    gosum: dict[str, str] = field(default_factory=dict)
    gosum_line: dict[str, int] = field(default_factory=dict)
    required: bool = False
    private: bool = False  # GONOPROXY matches: fetched direct, not checked here
    nosumdb: bool = False
    invalid: str = ""
    db: dict[str, str] | None = None
    db_state: DbState = "skipped"
    db_error: str = ""
    other_routes: dict[str, str] = field(default_factory=dict)  # route -> problem
    served: dict[str, list[Served]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _MemoryState:
    """A throw-away state store: doctor never persists a tree head."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def put_bytes(self, key: str, data: bytes) -> None:
        self.data[key] = data


def targets_from_project(project: Project, env: GoEnv) -> list[ModuleCheck]:
    """One check per module version in go.sum or required by go.mod (replacements applied)."""
    checks: dict[tuple[str, str], ModuleCheck] = {}

    def get(path: str, version: str) -> ModuleCheck:
        c = checks.get((path, version))
        if c is None:
            c = checks[(path, version)] = ModuleCheck(path, version, ())
        return c

    for s in project.sums:
        c = get(s.path, s.version)
        c.gosum[s.kind] = s.h1
        c.gosum_line[s.kind] = s.lineno
        if s.kind not in c.kinds:
            c.kinds = (*c.kinds, s.kind)
    for r in project.gomod.require:
        rep = project.gomod.replacement_for(r.path, r.version)
        if rep is not None and rep.is_local:
            continue
        path, version = (r.path, r.version) if rep is None else (rep.new_path, rep.new_version)
        c = get(path, version)
        c.required = True
        if "mod" not in c.kinds:
            c.kinds = ("mod", *c.kinds)
    return [_classify(c, env) for c in checks.values()]


def target_module(path: str, version: str, env: GoEnv) -> ModuleCheck:
    """The check for one ``m@v`` given on the command line (both files)."""
    return _classify(ModuleCheck(path, version, ("mod", "zip")), env)


def _classify(c: ModuleCheck, env: GoEnv) -> ModuleCheck:
    c.private = match_prefix_patterns(env.noproxy, c.path)
    c.nosumdb = match_prefix_patterns(env.nosumdb, c.path)
    try:
        check(c.path, c.version)
    except GomirrorError as e:
        c.invalid = str(e)
    return c


def _file_url(proxy: str, path: str, version: str, kind: Kind) -> str:
    return f"{proxy}/{escape_path(path)}/@v/{escape_version(version)}.{kind}"


async def _fetch(
    session: aiohttp.ClientSession,
    proxy: str,
    c: ModuleCheck,
    kind: Kind,
    tmp: Path,
    via: Mapping[str, str],
) -> Served:
    out = Served(proxy)
    url = _file_url(proxy, c.path, c.version, kind)
    dest = tmp / f"{abs(hash((proxy, c.path, c.version)))}.{kind}"
    if url.startswith("file://"):
        return await asyncio.to_thread(_read_local, proxy, url, c, kind)
    try:
        async with session.get(URL(url, encoded=True), proxy=http_proxy_for(url, via)) as resp:
            out.status = resp.status
            if resp.status != 200:
                out.body = (await resp.content.read(4096)).decode("utf-8", "replace")
                return out
            limit = MAX_ZIP_FILE if kind == "zip" else MAX_MOD
            size = 0
            with dest.open("wb") as f:
                async for chunk in resp.content.iter_chunked(64 << 10):
                    size += len(chunk)
                    if size > limit:
                        raise UpstreamError(f"response larger than {limit} bytes")
                    f.write(chunk)
        out.h1 = await asyncio.to_thread(_hash_file, dest, c, kind)
    except (TimeoutError, aiohttp.ClientError, OSError, UpstreamError) as e:
        out.error = (str(e) or type(e).__name__).splitlines()[0][:300]
    except GomirrorError as e:  # invalid zip content
        out.error = "invalid content: " + str(e).splitlines()[0][:300]
    finally:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
    return out


def _hash_file(path: Path, c: ModuleCheck, kind: Kind) -> str:
    if kind == "mod":
        return hash_gomod(path.read_bytes())
    return check_zip(path, c.path, c.version).h1


def _read_local(proxy: str, url: str, c: ModuleCheck, kind: Kind) -> Served:
    """A ``file://`` proxy's file, hashed in place (run in a worker thread)."""
    out = Served(proxy)
    src = Path(unquote(urlsplit(url).path))
    if not src.is_file():
        out.status = 404
        return out
    out.status = 200
    try:
        out.h1 = _hash_file(src, c, kind)
    except OSError as e:
        out.error = str(e)[:300]
    except GomirrorError as e:
        out.error = "invalid content: " + str(e).splitlines()[0][:300]
    return out


def _parse_db_lines(path: str, version: str, lines: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        f = line.split()
        if len(f) == 3 and f[0] == path:
            out["mod" if f[1].endswith("/go.mod") else "zip"] = f[2]
    return out


async def _lookup(client: SumdbClient, c: ModuleCheck) -> tuple[DbState, dict[str, str], str]:
    try:
        lines = await client.lookup(c.path, c.version)
    except NotFound as e:
        return "not-found", {}, str(e)
    except SumdbError as e:
        return "forged", {}, str(e).splitlines()[0][:300]
    except (UpstreamError, aiohttp.ClientError, TimeoutError) as e:
        return "error", {}, (str(e) or type(e).__name__).splitlines()[0][:300]
    return "ok", _parse_db_lines(c.path, c.version, lines), ""


async def check_modules(
    checks: list[ModuleCheck],
    proxies: Sequence[str],
    sumdb_routes: Sequence[str],
    spec: SumdbSpec | None,
    opts: ProbeOptions,
    *,
    zips: bool = True,
    concurrency: int = 8,
    env_values: Mapping[str, str] | None = None,
) -> list[ModuleCheck]:
    """Fill ``served`` and ``db`` of every check (see the module docstring).

    ``env_values`` (the go environment) decides the HTTP proxy for each mirror
    request, as the go command would choose it.
    """
    via = env_values or {}
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=opts.connect_timeout, sock_read=opts.read_timeout
    )
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        clients = [
            (r, SumdbClient(spec.verifier_key, HttpSumdbTransport([r], session), _MemoryState()))
            for r in sumdb_routes
            if spec is not None
        ]

        async def fetch(c: ModuleCheck, proxy: str, kind: Kind, tmp: Path) -> None:
            async with sem:
                c.served.setdefault(kind, []).append(
                    await _fetch(session, proxy, c, kind, tmp, via)
                )

        async def lookup(c: ModuleCheck) -> None:
            for i, (route, client) in enumerate(clients):
                async with sem:
                    state, db, err = await _lookup(client, c)
                if i == 0:
                    c.db_state, c.db, c.db_error = state, (db if state == "ok" else None), err
                elif state == "forged" or (state == "ok" and c.db and db != c.db):
                    c.other_routes[route] = err or f"answers {db}, the main route {c.db}"

        with tempfile.TemporaryDirectory(prefix="gomirror-doctor-") as tmpdir:
            tmp = Path(tmpdir)
            jobs = []
            for c in checks:
                if c.invalid:
                    continue
                if clients and not c.nosumdb:
                    jobs.append(lookup(c))
                if c.private:
                    continue
                for kind in c.kinds:
                    if kind == "zip" and not zips:
                        continue
                    jobs.extend(fetch(c, p, kind, tmp) for p in proxies)
            await asyncio.gather(*jobs)
    return checks


# --------------------------------------------------------------------------- findings


def _what(c: ModuleCheck, kind: str) -> str:
    return f"{c.name}" + ("/go.mod" if kind == "mod" else "")


def _drop_go_sum_lines(c: ModuleCheck) -> tuple[str, ...]:
    pats = f"-e {shlex.quote(f'{c.path} {c.version} ')} -e {shlex.quote(f'{c.path} {c.version}/go.mod ')}"
    return (f"grep -vF {pats} go.sum > go.sum.new && mv go.sum.new go.sum", "go mod tidy")


def tampering_proxies(checks: Sequence[ModuleCheck]) -> dict[str, str]:
    """Proxies that served content differing from the database (or go.sum), or invalid content."""
    bad: dict[str, str] = {}
    for c in checks:
        for kind, served in c.served.items():
            ref = (c.db or {}).get(kind) or c.gosum.get(kind)
            for s in served:
                if s.error.startswith("invalid content"):
                    bad.setdefault(s.proxy, f"serves an invalid {_what(c, kind)}")
                elif s.h1 and ref and s.h1 != ref:
                    bad.setdefault(s.proxy, f"serves a different {_what(c, kind)}")
    return bad


def _invalid_fix(c: ModuleCheck) -> tuple[str, ...]:
    major = semver.major(c.version) if semver.is_valid(c.version) else ""
    if major and major not in ("v0", "v1") and not c.path.endswith("/" + major):
        return (
            f"go get {c.path}/{major}@{c.version}",
            f"go get {c.path}@{c.version}+incompatible",
        )
    return (f"go list -m -versions {c.path}", f"go get {c.path}@latest")


def _not_found_finding(c: ModuleCheck, kind: str, served: list[Served], env: GoEnv) -> Finding:
    texts = " ".join(s.body for s in served)
    gone = [s.proxy for s in served if s.status == 410]
    fix: tuple[str, ...] = (f"go list -m -versions {c.path}", f"go get {c.path}@latest")
    if looks_private(c.path):
        host = module_host(c.path)
        fix = (go_env_w_line("GOPRIVATE", ",".join(filter(None, [env.get("GOPRIVATE"), host]))),)
    if "unknown revision" in texts:
        return Finding(
            "unknown-revision",
            "error",
            f"{c.name}: unknown revision {c.version} (no proxy has it)",
            f"The repository of {c.path} has no tag or commit {c.version}: it was deleted or "
            "moved (a force-push), or the mirrors cannot read a private repository. The go "
            f"command fails with '{c.path}@{c.version}: invalid version: unknown revision'.",
            fix,
            c.name,
        )
    if "invalid version" in texts:
        return Finding(
            "invalid-version",
            "error",
            f"{c.name}: the mirrors call {c.version} an invalid version",
            texts.strip().splitlines()[0][:300] if texts.strip() else "",
            _invalid_fix(c),
            c.name,
        )
    if gone:
        return Finding(
            "gone",
            "error",
            f"{_what(c, kind)}: 410 Gone from " + ", ".join(gone),
            "410 Gone means the mirror will not serve this version (it could not fetch it, or "
            "it was withdrawn: a deleted tag, a private repository). The go command moves on "
            "after 404/410, but no entry of GOPROXY has it, so it fails with "
            "'reading ...: 410 Gone'. Pick a version that exists.",
            fix,
            c.name,
        )
    return Finding(
        "not-found",
        "error",
        f"{_what(c, kind)}: no proxy in GOPROXY has it (404)",
        "The go command fails with 'reading ...: 404 Not Found'.",
        fix,
        c.name,
    )


def _module_findings(
    c: ModuleCheck, env: GoEnv, recommended: str, db_name: str | None
) -> list[Finding]:
    out: list[Finding] = []
    proxy_fix = (go_env_w_line("GOPROXY", recommended),)
    if c.invalid:
        return [
            Finding(
                "invalid-version",
                "error",
                f"{c.name}: invalid version",
                f"{c.invalid}. From major version v2 on the module path must end in /vN "
                "(or the version carry +incompatible when the repository has no go.mod).",
                _invalid_fix(c),
                c.name,
            )
        ]
    if c.required and "mod" not in c.gosum:
        out.append(
            Finding(
                "missing-go-sum",
                "error",
                f"missing go.sum entry for {c.name}",
                f"go.mod requires {c.name} but go.sum has no line for it: the go command stops "
                f"with 'missing go.sum entry for module providing package' / "
                f"'{c.path}@{c.version}: missing go.sum entry for go.mod file'.",
                ("go mod tidy",),
                c.name,
            )
        )
    for kind in c.kinds:
        gs, db = c.gosum.get(kind), (c.db or {}).get(kind)
        if gs and db and gs != db:
            out.append(
                Finding(
                    "gosum-mismatch",
                    "error",
                    f"go.sum line {c.gosum_line.get(kind, 0)} for {_what(c, kind)} does not match "
                    "the checksum database",
                    f"go.sum has {gs}, {db_name or 'the checksum database'} has {db}. The go "
                    f"command stops with 'verifying {_what(c, kind)}: checksum mismatch ... "
                    "SECURITY ERROR'. Unless you know why go.sum differs (an edited or merged "
                    "file), drop the line and let the go command record the verified one.",
                    _drop_go_sum_lines(c),
                    c.name,
                )
            )
        ref, ref_name = (db, "the checksum database") if db else (gs, "go.sum")
        served = c.served.get(kind, [])
        for s in served:
            if s.error.startswith("invalid content"):
                out.append(
                    Finding(
                        "mirror-invalid",
                        "error",
                        f"{s.proxy} serves an invalid {_what(c, kind)}: {s.error}",
                        "The go command refuses the file and stops; it does not try the next "
                        "mirror. Remove this mirror from GOPROXY.",
                        proxy_fix,
                        s.proxy,
                    )
                )
            elif s.h1 and ref and s.h1 != ref:
                out.append(
                    Finding(
                        "mirror-tampered",
                        "error",
                        f"{s.proxy} serves a different {_what(c, kind)}: {s.h1}, "
                        f"{ref_name} has {ref}",
                        f"checksum mismatch: the go command stops with 'verifying "
                        f"{_what(c, kind)}: checksum mismatch ... SECURITY ERROR' and does not try "
                        "the next mirror. This mirror altered the file: remove it from GOPROXY "
                        "(gomirror, as an upstream, discards such a copy and tries the next).",
                        proxy_fix,
                        s.proxy,
                    )
                )
        if served and all(s.status in (404, 410) for s in served):
            out.append(_not_found_finding(c, kind, served, env))
    if c.db_state == "not-found" and not c.nosumdb and not c.private:
        fix: tuple[str, ...] = (f"go get {c.path}@latest",)
        if looks_private(c.path):
            fix = (go_env_w_line("GONOSUMDB", module_host(c.path)),)
        out.append(
            Finding(
                "not-in-sumdb",
                "error",
                f"{c.name} is not in the checksum database",
                f"The go command fails with 'verifying module: {c.name}: ... 404 Not Found': the "
                "version does not exist publicly (a tag that was never pushed, or a private "
                "module that GONOSUMDB/GOPRIVATE should exempt).",
                fix,
                c.name,
            )
        )
    elif c.db_state == "forged":
        out.append(
            Finding(
                "sumdb-forged",
                "error",
                f"the checksum database answer for {c.name} does not verify",
                f"{c.db_error}. Whoever serves the database route signs with the wrong key or "
                "rewrote its history; do not trust it.",
                proxy_fix,
                c.name,
            )
        )
    elif c.db_state == "error":
        out.append(
            Finding(
                "sumdb-lookup-failed",
                "warning",
                f"could not look {c.name} up in the checksum database",
                c.db_error,
                (),
                c.name,
            )
        )
    for route, problem in c.other_routes.items():
        out.append(
            Finding(
                "sumdb-route-forged",
                "error",
                f"{route} serves a checksum database that does not verify",
                problem,
                proxy_fix,
                route,
            )
        )
    if c.private:
        out.append(
            Finding(
                "private-direct",
                "info",
                f"{c.name} matches GONOPROXY: the go command fetches it direct (not checked)",
                "",
                (),
                c.name,
            )
        )
    return out


def mod_findings(
    checks: Sequence[ModuleCheck], env: GoEnv, recommended: str, db_name: str | None
) -> list[Finding]:
    """Every module finding (see the module docstring)."""
    out: list[Finding] = []
    for c in checks:
        out.extend(_module_findings(c, env, recommended, db_name))
    return out
