"""mirrorbench measures which GOPROXY mirror is best from here, now: ``gomirror bench``'s logic.

:func:`bench` runs one workload against every mirror. First a discovery
pass asks each mirror for ``@v/list`` and ``@latest`` of every workload
module and whether it proxies the checksum database
(``/sumdb/<name>/supported``, timed). Each module's reference version is
then the given one (a project's requirement), else the newest version every
answering mirror lists, so content can be compared fairly. Then ``rounds``
rounds: in each, every mirror (all at once, each one request at a time, so
none is favoured by parallelism) gets ``@v/list``, ``@latest``, ``.info``
and ``.mod`` of every module and the ``.zip`` of the first. Every request is
timed (first byte and total).

Content is checked as gomirror checks downloads: the ``.info`` must name
the version asked for, the ``.mod`` hash and the zip (every zip rule, then
its ``h1:``) go to the checksum-database verifier, and a hash the database
contradicts is a *disagreement*: that mirror tampers. With the database
off, a mirror whose hash differs from the majority's disagrees instead.

Each mirror gets a verdict: ``tampered`` (any disagreement), ``dead`` (no
request succeeded), ``failing`` (under ``MIN_SUCCESS`` of them did),
``slow`` (median small-request time above ``slow``), ``lagging`` (its
newest version of some module is older than another mirror's) or ``good``.
The recommendation ranks the good mirrors by median small-request time plus
median zip time, then the slow and lagging ones as fallbacks, at most
``MAX_RECOMMENDED``, joined with ``|`` (any error moves on) and ending
``,direct`` for modules no mirror has; tampered, dead and failing mirrors
are never recommended.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp

from gomirror.errors import ChecksumMismatch, GomirrorError
from gomirror.module import semver
from gomirror.module.dirhash import hash_gomod
from gomirror.module.info import parse_info, parse_list
from gomirror.module.modzip import check_zip
from gomirror.module.paths import escape_path, escape_version
from gomirror.upstream.goproxy import redact_url
from gomirror.upstream.verified import Verifier

WELL_KNOWN = (
    "https://goproxy.cn",
    "https://goproxy.io",
    "https://mirrors.aliyun.com/goproxy/",
    "https://mirrors.cloud.tencent.com/go/",
    "https://repo.huaweicloud.com/repository/goproxy/",
    "https://proxy.golang.org",
)
POPULAR = (
    "github.com/google/uuid",
    "github.com/pkg/errors",
    "golang.org/x/sync",
    "github.com/spf13/pflag",
    "gopkg.in/yaml.v3",
)
MIN_SUCCESS = 0.8
MAX_RECOMMENDED = 3
SMALL_KINDS = ("list", "latest", "info", "mod")
READ_CHUNK = 256 << 10

Kind = Literal["list", "latest", "info", "mod", "zip", "supported"]
Verdict = Literal["good", "slow", "lagging", "failing", "dead", "tampered"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed request."""

    kind: Kind
    module: str
    ok: bool
    seconds: float
    first_byte: float = 0.0
    size: int = 0
    status: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Disagreement:
    module: str
    version: str
    file: str  # "go.mod" or "zip"
    served: str
    expected: str
    against: str  # "checksum database <name>" or "the other mirrors"

    def __str__(self) -> str:
        what = f"{self.module}@{self.version}" + ("/go.mod" if self.file == "go.mod" else "")
        return f"{what}: served {self.served}, {self.against} has {self.expected}"


@dataclass
class MirrorResult:
    """Everything measured for one mirror."""

    url: str  # what is asked (it may hold credentials from the configuration)
    samples: list[Sample] = field(default_factory=list)
    newest: dict[str, str] = field(default_factory=dict)  # module → newest version listed
    listed: dict[str, set[str]] = field(default_factory=dict)  # module → versions it knows
    lagging: list[str] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    sumdb_supported: bool | None = None
    sumdb_seconds: float | None = None
    verdict: Verdict = "good"
    hashes: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (m, v, file) → h1

    @property
    def name(self) -> str:
        """The URL without credentials: what reports show."""
        return redact_url(self.url)

    def measured(self, kind: str | None = None) -> list[Sample]:
        return [
            s for s in self.samples if s.kind != "supported" and (kind is None or s.kind == kind)
        ]

    @property
    def success_ratio(self) -> float:
        rows = self.measured()
        return sum(1 for s in rows if s.ok) / len(rows) if rows else 0.0

    def seconds(self, kinds: Sequence[str]) -> list[float]:
        return sorted(s.seconds for s in self.samples if s.kind in kinds and s.ok)

    @property
    def small_p50(self) -> float | None:
        return percentile(self.seconds(SMALL_KINDS), 0.5)

    @property
    def zip_p50(self) -> float | None:
        return percentile(self.seconds(("zip",)), 0.5)

    @property
    def zip_throughput(self) -> float | None:
        """Bytes per second over every successful zip download."""
        rows = [s for s in self.samples if s.kind == "zip" and s.ok and s.seconds > 0]
        total = sum(s.seconds for s in rows)
        return sum(s.size for s in rows) / total if rows and total > 0 else None

    @property
    def score(self) -> float:
        return (self.small_p50 or 0.0) + (self.zip_p50 or 0.0)

    def errors(self, limit: int = 5) -> list[str]:
        return [f"{s.kind} {s.module}: {s.error}" for s in self.samples if not s.ok][:limit]

    def to_json(self) -> dict[str, object]:
        lat = {}
        for kind in (*SMALL_KINDS, "zip"):
            xs = self.seconds((kind,))
            lat[kind] = {
                "n": len(self.measured(kind)),
                "ok": len(xs),
                "p50": percentile(xs, 0.5),
                "p90": percentile(xs, 0.9),
                "max": xs[-1] if xs else None,
            }
        return {
            "url": self.name,
            "verdict": self.verdict,
            "success_ratio": round(self.success_ratio, 4),
            "requests": len(self.measured()),
            "latency": lat,
            "zip_throughput": self.zip_throughput,
            "newest": self.newest,
            "lagging": self.lagging,
            "sumdb": {"supported": self.sumdb_supported, "seconds": self.sumdb_seconds},
            "disagreements": [str(d) for d in self.disagreements],
            "errors": self.errors(),
        }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class BenchReport:
    mirrors: list[MirrorResult]
    reference: dict[str, str]
    rounds: int
    sumdb: str | None
    recommended: list[str]

    @property
    def goproxy(self) -> str:
        if not self.recommended:
            return ""
        return "GOPROXY=" + "|".join(self.recommended) + ",direct"

    @property
    def upstream(self) -> str:
        return "|".join(self.recommended)

    @property
    def exit_code(self) -> int:
        tampered = any(m.verdict == "tampered" for m in self.mirrors)
        return 1 if tampered or not self.recommended else 0

    def to_json(self) -> dict[str, object]:
        return {
            "rounds": self.rounds,
            "sumdb": self.sumdb,
            "reference": self.reference,
            "mirrors": [m.to_json() for m in self.mirrors],
            "recommended": self.recommended,
            "recommended_goproxy": self.goproxy,
            "recommended_upstream": self.upstream,
        }


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int = 3
    timeout: float = 10.0
    slow: float = 0.5
    sumdb_name: str | None = None


class _Bench:
    def __init__(
        self,
        mirrors: Sequence[str],
        modules: dict[str, str | None],
        session: aiohttp.ClientSession,
        verifier: Verifier | None,
        tmp_path: Callable[[], Path],
        opts: Options,
    ) -> None:
        self.results = [MirrorResult(m.rstrip("/")) for m in mirrors]
        self.modules = modules
        self.session = session
        self.verifier = verifier
        self.tmp_path = tmp_path
        self.opts = opts
        self.timeout = aiohttp.ClientTimeout(total=opts.timeout, sock_connect=min(opts.timeout, 5))
        self.reference: dict[str, str] = {}
        self.checked: dict[tuple[str, str, str, str], GomirrorError | None] = {}

    async def _request(
        self, r: MirrorResult, kind: Kind, module: str, tail: str, *, to_file: Path | None = None
    ) -> tuple[Sample, bytes]:
        url = f"{r.url}/{tail}" if kind == "supported" else f"{r.url}/{escape_path(module)}/{tail}"
        t0 = time.monotonic()
        first = 0.0
        try:
            async with self.session.get(url, timeout=self.timeout) as resp:
                first = time.monotonic() - t0
                if resp.status != 200:
                    text = (await resp.text(errors="replace")).strip().split("\n", 1)[0][:120]
                    return Sample(
                        kind,
                        module,
                        False,
                        time.monotonic() - t0,
                        first,
                        0,
                        resp.status,
                        f"{resp.status} {text}",
                    ), b""
                if to_file is None:
                    body = await resp.read()
                    return Sample(
                        kind, module, True, time.monotonic() - t0, first, len(body), 200
                    ), body
                size = 0
                with open(to_file, "wb") as f:  # noqa: ASYNC230 - local temp file, small writes
                    async for chunk in resp.content.iter_chunked(READ_CHUNK):
                        f.write(chunk)
                        size += len(chunk)
                return Sample(kind, module, True, time.monotonic() - t0, first, size, 200), b""
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            why = "timed out" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            return Sample(kind, module, False, time.monotonic() - t0, first, 0, 0, why[:160]), b""

    # --- discovery ---------------------------------------------------------------------

    async def discover(self, r: MirrorResult) -> None:
        if self.opts.sumdb_name:
            s, _ = await self._request(
                r, "supported", "", f"sumdb/{self.opts.sumdb_name}/supported"
            )
            r.samples.append(s)
            r.sumdb_supported = s.ok
            r.sumdb_seconds = s.seconds if s.status else None
        for module in self.modules:
            s, body = await self._request(r, "list", module, "@v/list")
            r.samples.append(s)
            versions = parse_list(body) if s.ok else []
            s, body = await self._request(r, "latest", module, "@latest")
            r.samples.append(s)
            if s.ok:
                with contextlib.suppress(GomirrorError):
                    versions.append(parse_info(body).version)
            if versions:
                r.newest[module] = max(versions, key=semver.sort_key)
            if s.ok or versions:
                r.listed[module] = set(versions)

    def choose_references(self) -> None:
        for module, given in self.modules.items():
            if given:
                self.reference[module] = given
                continue
            lists = [r.listed[module] for r in self.results if r.listed.get(module)]
            common: set[str] = set.intersection(*lists) if lists else set()
            pool = common or set().union(*lists)
            if pool:
                self.reference[module] = max(pool, key=semver.sort_key)
        newest_any: dict[str, str] = {}
        for r in self.results:
            for module, v in r.newest.items():
                if module not in newest_any or semver.compare(v, newest_any[module]) > 0:
                    newest_any[module] = v
        for r in self.results:
            r.lagging = sorted(
                m
                for m, v in newest_any.items()
                if m in r.newest and semver.compare(r.newest[m], v) < 0
            )

    # --- measured rounds ---------------------------------------------------------------

    async def round(self, r: MirrorResult) -> None:
        for module, version in self.reference.items():
            r.samples.append((await self._request(r, "list", module, "@v/list"))[0])
            r.samples.append((await self._request(r, "latest", module, "@latest"))[0])
            ev = escape_version(version)
            s, body = await self._request(r, "info", module, f"@v/{ev}.info")
            if s.ok:
                try:
                    got = parse_info(body).version
                    if got != version:
                        s = _failed(s, f"info names {got}, not {version}")
                except GomirrorError as e:
                    s = _failed(s, f"invalid .info: {e}")
            r.samples.append(s)
            s, body = await self._request(r, "mod", module, f"@v/{ev}.mod")
            r.samples.append(s)
            if s.ok:
                r.hashes[(module, version, "go.mod")] = hash_gomod(body)
        if self.reference:
            module, version = next(iter(self.reference.items()))
            dst = self.tmp_path()
            try:
                s, _ = await self._request(
                    r, "zip", module, f"@v/{escape_version(version)}.zip", to_file=dst
                )
                if s.ok:
                    try:
                        z = await asyncio.to_thread(check_zip, dst, module, version)
                        r.hashes[(module, version, "zip")] = z.h1
                    except GomirrorError as e:
                        s = _failed(s, f"invalid zip: {str(e).splitlines()[0][:120]}")
                r.samples.append(s)
            finally:
                dst.unlink(missing_ok=True)

    # --- content -----------------------------------------------------------------------

    async def check_content(self) -> None:
        if self.verifier is not None:
            for r in self.results:
                for (module, version, file), h1 in sorted(r.hashes.items()):
                    err = await self._verify(module, version, file, h1)
                    if isinstance(err, ChecksumMismatch):
                        r.disagreements.append(
                            Disagreement(
                                module,
                                version,
                                file,
                                h1,
                                err.expected,
                                f"checksum database {self.opts.sumdb_name}",
                            )
                        )
            return
        votes: dict[tuple[str, str, str], Counter[str]] = {}
        for r in self.results:
            for k, h1 in r.hashes.items():
                votes.setdefault(k, Counter())[h1] += 1
        for r in self.results:
            for k, h1 in sorted(r.hashes.items()):
                (top, n), *rest = votes[k].most_common()
                if h1 != top and (not rest or n > rest[0][1]):
                    r.disagreements.append(
                        Disagreement(k[0], k[1], k[2], h1, top, "the other mirrors")
                    )

    async def _verify(self, module: str, version: str, file: str, h1: str) -> GomirrorError | None:
        key = (module, version, file, h1)
        if key not in self.checked:
            assert self.verifier is not None
            try:
                await self.verifier.check(module, version, "zip" if file == "zip" else "mod", h1)
                self.checked[key] = None
            except GomirrorError as e:
                self.checked[key] = e
        return self.checked[key]

    # --- verdicts ----------------------------------------------------------------------

    def judge(self) -> list[str]:
        for r in self.results:
            ratio = r.success_ratio
            p50 = r.small_p50
            if r.disagreements:
                r.verdict = "tampered"
            elif ratio == 0:
                r.verdict = "dead"
            elif ratio < MIN_SUCCESS:
                r.verdict = "failing"
            elif p50 is not None and p50 > self.opts.slow:
                r.verdict = "slow"
            elif r.lagging:
                r.verdict = "lagging"
            else:
                r.verdict = "good"
        good = sorted((r for r in self.results if r.verdict == "good"), key=lambda r: r.score)
        fallback = sorted(
            (r for r in self.results if r.verdict in ("lagging", "slow")), key=lambda r: r.score
        )
        return [r.name for r in [*good, *fallback][:MAX_RECOMMENDED]]


def _failed(s: Sample, why: str) -> Sample:
    return Sample(s.kind, s.module, False, s.seconds, s.first_byte, s.size, s.status, why)


Progress = Callable[[str], None]


async def bench(
    mirrors: Sequence[str],
    modules: dict[str, str | None],
    session: aiohttp.ClientSession,
    verifier: Verifier | None,
    tmp_path: Callable[[], Path],
    opts: Options,
    on_progress: Progress | None = None,
) -> BenchReport:
    """Benchmark mirrors on the workload modules (module → version, or None: discover it)."""
    tell = on_progress or (lambda _what: None)
    b = _Bench(mirrors, modules, session, verifier, tmp_path, opts)
    tell("discovery")
    await asyncio.gather(*(b.discover(r) for r in b.results))
    b.choose_references()
    for n in range(opts.rounds):
        tell(f"round {n + 1}")
        await asyncio.gather(*(b.round(r) for r in b.results))
    tell("checking content")
    await b.check_content()
    recommended = b.judge()
    return BenchReport(b.results, b.reference, opts.rounds, opts.sumdb_name, recommended)
