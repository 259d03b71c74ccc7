"""probe times every proxy in GOPROXY and the checksum-database route the go command will use.

Each HTTP probe runs on a fresh connection (so connecting is measured, not a
pooled socket) with explicit timeouts: ``connect_timeout`` for the TCP and
TLS set-up and ``read_timeout`` for silence after the request. Phases come
from aiohttp's ``TraceConfig``: DNS, connection (TCP + TLS; for https a raw
TCP connect is timed first so the TLS handshake can be told apart) and the
first byte (response headers). The HTTP proxy, if any, is the one the go
command would use (:func:`~gomirror.tools.goenv.http_proxy_for`).

:func:`probe_all` probes each proxy with a ``@v/list`` request, asks each for
``/sumdb/<name>/supported``, then walks the list as the go command does
(protocol.md §4.7): the first proxy answering 200 carries every lookup; a
404/410, or any error after ``|``, moves on; any other error after ``,``
makes the database unavailable; ``direct``, ``off`` or the end of the list
mean ``https://<name>``. That route's ``/latest`` is probed last.
:func:`probe_findings` turns the results into findings that name the slow or
dead mirror and the go command timeout that will bite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from gomirror.errors import ConfigError
from gomirror.sumdb.verifier import SumdbSpec, parse_sumdb_spec
from gomirror.tools.findings import Finding
from gomirror.tools.goenv import GoEnv, ProxyEntry, go_env_w_line, http_proxy_for, parse_proxy_list
from gomirror.tools.hosts import PUBLIC_GOPROXY

log = logging.getLogger(__name__)

Outcome = Literal["ok", "slow", "dead", "hang", "http-error"]
BODY_PEEK = 4096

# The go command's HTTP client is net/http's default transport: 30 s to dial,
# 10 s for the TLS handshake, and no limit on waiting for a response.
GO_DIAL_TIMEOUT = 30
GO_TLS_TIMEOUT = 10


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    slow: float = 1.0  # first byte later than this (seconds) is "slow"


@dataclass
class Probe:
    """One timed request (times in seconds from the request start; None: not reached)."""

    role: Literal["proxy", "supported", "sumdb"]
    target: str
    url: str
    status: int | None = None
    outcome: Outcome = "ok"
    error: str = ""
    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    first_byte: float | None = None
    total: float | None = None
    via: str | None = None
    body: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SumdbRoute:
    """Where the go command sends checksum-database traffic."""

    kind: Literal["proxy", "direct", "explicit", "unavailable", "off"]
    base: str | None = None  # URL below which lookup/, tile/ and latest are read
    proxy: str | None = None  # the GOPROXY entry carrying it, or that made it unavailable
    reason: str = ""


@dataclass
class ProbeReport:
    name: str | None  # checksum database name (None: GOSUMDB=off or invalid)
    proxies: list[Probe] = field(default_factory=list)
    supported: dict[str, Probe] = field(default_factory=dict)
    route: SumdbRoute = field(default_factory=lambda: SumdbRoute("off"))
    route_probe: Probe | None = None

    def healthy(self) -> list[str]:
        return [p.target for p in self.proxies if p.outcome in ("ok", "slow")]

    def bad(self) -> dict[str, str]:
        return {p.target: p.outcome for p in self.proxies if p.outcome in ("dead", "hang")}

    def slow(self) -> set[str]:
        return {p.target for p in self.proxies if p.outcome == "slow"}

    def to_json(self) -> dict[str, Any]:
        return {
            "sumdb": self.name,
            "proxies": [p.to_json() for p in self.proxies],
            "supported": {k: v.to_json() for k, v in self.supported.items()},
            "route": asdict(self.route),
            "route_probe": self.route_probe.to_json() if self.route_probe else None,
        }


def _now() -> float:
    return time.monotonic()


def _trace_config() -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    def mark(name: str) -> Any:
        async def cb(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
            marks = ctx.trace_request_ctx
            if isinstance(marks, dict):
                marks.setdefault(name, _now())

        return cb

    tc.on_request_start.append(mark("start"))
    tc.on_dns_resolvehost_start.append(mark("dns_start"))
    tc.on_dns_resolvehost_end.append(mark("dns_end"))
    tc.on_connection_create_start.append(mark("conn_start"))
    tc.on_connection_create_end.append(mark("conn_end"))
    tc.on_request_end.append(mark("headers"))
    return tc


async def _tcp_connect_time(url: str, limit: float) -> float | None:
    u = urlsplit(url)
    host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    if not host:
        return None
    start = _now()
    try:
        async with asyncio.timeout(limit):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    elapsed = _now() - start
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return elapsed


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:300]


async def probe_url(
    url: str,
    role: Literal["proxy", "supported", "sumdb"],
    target: str,
    opts: ProbeOptions,
    *,
    proxy: str | None = None,
) -> Probe:
    """GET ``url`` once on a fresh connection and time it (see the module docstring)."""
    if url.startswith("file://"):
        return _probe_file(url, role, target)
    probe = Probe(role, target, url, via=proxy)
    marks: dict[str, float] = {}
    tcp = None
    if url.startswith("https://") and proxy is None:
        tcp = await _tcp_connect_time(url, opts.connect_timeout)
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=opts.connect_timeout, sock_read=opts.read_timeout
    )
    connector = aiohttp.TCPConnector(force_close=True, use_dns_cache=False)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, trace_configs=[_trace_config()], trust_env=False
            ) as session,
            session.get(
                URL(url, encoded=True),
                timeout=timeout,
                proxy=proxy,
                trace_request_ctx=marks,
                allow_redirects=True,
                headers={"User-Agent": "gomirror-doctor"},
            ) as resp,
        ):
            probe.status = resp.status
            peek = await resp.content.read(BODY_PEEK)
            probe.body = peek.decode("utf-8", "replace")
    except TimeoutError as e:
        connected = "conn_end" in marks
        probe.outcome = "hang" if connected else "dead"
        probe.error = (
            f"no answer within {opts.read_timeout:g}s after connecting"
            if connected
            else f"connect timed out after {opts.connect_timeout:g}s"
        ) + (f" ({_describe(e)})" if str(e) else "")
    except (aiohttp.ClientError, OSError) as e:
        probe.outcome = "dead"
        probe.error = _describe(e)
    _fill_times(probe, marks, tcp)
    if probe.outcome == "ok" and probe.status is not None:
        if probe.status == 429 or probe.status >= 500 or probe.status in (401, 403):
            probe.outcome = "http-error"
            probe.error = f"HTTP {probe.status}"
        elif probe.first_byte is not None and probe.first_byte > opts.slow:
            probe.outcome = "slow"
    log.debug("probe done", extra={"url": url, "outcome": probe.outcome})
    return probe


def _fill_times(probe: Probe, marks: dict[str, float], tcp: float | None) -> None:
    start = marks.get("start")
    if start is None:
        return

    def since(a: str, b: str) -> float | None:
        return marks[b] - marks[a] if a in marks and b in marks else None

    probe.dns = since("dns_start", "dns_end")
    conn = since("conn_start", "conn_end")
    if conn is not None and tcp is not None:
        probe.connect, probe.tls = min(tcp, conn), max(0.0, conn - tcp)
    else:
        probe.connect = conn
    probe.first_byte = since("start", "headers")
    probe.total = _now() - start


def _probe_file(url: str, role: Literal["proxy", "supported", "sumdb"], target: str) -> Probe:
    path = Path(urlsplit(url).path)
    probe = Probe(role, target, url, first_byte=0.0, total=0.0)
    root = Path(urlsplit(target).path)
    if not root.is_dir():
        probe.outcome, probe.error = "dead", f"no such directory: {root}"
    else:
        probe.status = 200 if path.exists() else 404
    return probe


def sumdb_spec(env: GoEnv) -> SumdbSpec | None:
    """The parsed GOSUMDB, or None when off or invalid (the settings check reports that)."""
    try:
        return parse_sumdb_spec(env.get("GOSUMDB").strip() or "sum.golang.org")
    except ConfigError:
        return None


def walk_sumdb(entries: Sequence[ProxyEntry], supported: dict[str, Probe], name: str) -> SumdbRoute:
    """The checksum-database route the go command picks (see the module docstring)."""
    for e in entries:
        if e.ignored:
            break
        if e.is_keyword:
            return SumdbRoute("direct", f"https://{name}", None, f"GOPROXY reached {e.url}")
        p = supported.get(e.url)
        if p is None:
            continue
        if p.outcome in ("ok", "slow") and p.status == 200:
            return SumdbRoute("proxy", f"{e.url}/sumdb/{name}", e.url, "supported answered 200")
        if p.outcome in ("ok", "slow") and p.status in (404, 410):
            continue
        if e.fallback_on_error:
            continue
        why = p.error or f"HTTP {p.status}"
        return SumdbRoute("unavailable", None, e.url, f"{e.url}/sumdb/{name}/supported: {why}")
    return SumdbRoute("direct", f"https://{name}", None, "no proxy supports it")


async def probe_all(env: GoEnv, opts: ProbeOptions, probe_module: str) -> ProbeReport:
    """Probe every proxy and the checksum-database route (see the module docstring)."""
    entries = [e for e in parse_proxy_list(env.goproxy) if not e.ignored]
    urls = [e.url for e in entries if e.is_url]
    spec = sumdb_spec(env)
    report = ProbeReport(spec.name if spec else None)

    def get(url: str, role: Literal["proxy", "supported", "sumdb"], target: str) -> Any:
        return probe_url(url, role, target, opts, proxy=http_proxy_for(url, env.values))

    jobs = [get(f"{u}/{probe_module}/@v/list", "proxy", u) for u in urls]
    sup_urls = urls if spec is not None and spec.url is None else []
    jobs += [get(f"{u}/sumdb/{spec.name}/supported", "supported", u) for u in sup_urls if spec]
    results = await asyncio.gather(*jobs)
    report.proxies = list(results[: len(urls)])
    report.supported = {p.target: p for p in results[len(urls) :]}
    if spec is None:
        report.route = SumdbRoute("off", reason="GOSUMDB=off" if env.get("GOSUMDB") else "")
        return report
    if spec.url is not None:
        report.route = SumdbRoute("explicit", spec.url.rstrip("/"), None, "GOSUMDB names a URL")
    else:
        report.route = walk_sumdb(entries, report.supported, spec.name)
    if report.route.base is not None:
        report.route_probe = await get(f"{report.route.base}/latest", "sumdb", report.route.base)
    return report


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def probe_findings(
    report: ProbeReport, entries: Sequence[ProxyEntry], recommended: str
) -> list[Finding]:
    """Findings naming slow, hanging, dead or failing mirrors and a broken sumdb route."""
    fix = (go_env_w_line("GOPROXY", recommended),)
    sep = {e.url: e.sep for e in entries}
    out: list[Finding] = []
    fastest = min((p.first_byte for p in report.proxies if p.first_byte is not None), default=None)
    for p in report.proxies:
        stops = sep.get(p.target) != "|"
        if p.outcome == "hang":
            out.append(
                Finding(
                    "proxy-hangs",
                    "error",
                    f"{p.target} accepts connections but never answers ({p.error})",
                    "The go command sets no timeout on a proxy's response: it waits on this "
                    "mirror forever, and '|' does not help because nothing fails. Remove it.",
                    fix,
                    p.target,
                )
            )
        elif p.outcome == "dead":
            bite = (
                f"the go command waits up to {GO_DIAL_TIMEOUT} s (its dial timeout) per "
                "connection before it gives up"
                if "timed out" in p.error
                else "the go command gets the error at once"
            )
            out.append(
                Finding(
                    "proxy-dead",
                    "error" if stops else "warning",
                    f"{p.target} is unreachable: {p.error}",
                    f"{bite}; "
                    + (
                        "after ',' that error stops every download."
                        if stops
                        else "after '|' it moves on to the next entry, paying that cost on every "
                        "request."
                    ),
                    fix,
                    p.target,
                )
            )
        elif p.outcome == "http-error":
            out.append(
                Finding(
                    "proxy-http-error",
                    "error" if stops else "warning",
                    f"{p.target} answers {p.status} to {p.url}",
                    "After ',' a status other than 404/410 stops the download with this error; "
                    "after '|' the next entry is tried.",
                    fix,
                    p.target,
                )
            )
        elif p.outcome == "slow":
            out.append(
                Finding(
                    "proxy-slow",
                    "warning",
                    f"{p.target} is slow: first byte after {_ms(p.first_byte)}"
                    + (f" (fastest {_ms(fastest)})" if fastest is not None else ""),
                    "Every module request pays this; put faster mirrors first. The go command "
                    "never times out a slow answer.",
                    fix,
                    p.target,
                )
            )
    out.extend(_route_findings(report, fix))
    return out


def _route_findings(report: ProbeReport, fix: tuple[str, ...]) -> list[Finding]:
    route, rp = report.route, report.route_probe
    if route.kind == "unavailable":
        return [
            Finding(
                "sumdb-unavailable",
                "error",
                f"the checksum database is unavailable through {route.proxy}",
                f"{route.reason}. After ',' the go command does not try the next proxy or the "
                "database itself: every download of a module missing from go.sum fails with "
                "'verifying module: ... unavailable'.",
                fix,
                route.proxy or "",
            )
        ]
    if rp is None or (rp.outcome == "ok" and rp.status == 200):
        return []
    if rp.outcome in ("ok", "slow") and rp.status == 200:
        return [
            Finding(
                "sumdb-slow",
                "warning",
                f"the checksum database route {route.base} is slow ({_ms(rp.first_byte)})",
                "Every module not yet in go.sum waits for a lookup and its tiles.",
                fix,
                route.base or "",
            )
        ]
    what = rp.error or f"HTTP {rp.status}"
    if route.kind == "proxy":
        why = (
            f"{route.proxy} answered 200 to supported, so the go command sends every lookup "
            "there and never falls back"
        )
        fixes = fix
    else:
        why = (
            "no proxy in GOPROXY carries the database, so the go command connects to it "
            f"directly ({GO_TLS_TIMEOUT} s TLS timeout, {GO_DIAL_TIMEOUT} s dial timeout)"
        )
        fixes = (go_env_w_line("GOPROXY", PUBLIC_GOPROXY),)
    return [
        Finding(
            "sumdb-route-broken",
            "error",
            f"the checksum database route {route.base} fails: {what}",
            f"{why}: every module not yet in go.sum fails with 'verifying module: ...'.",
            fixes,
            route.base or "",
        )
    ]
