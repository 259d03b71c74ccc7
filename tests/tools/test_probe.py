"""test_probe times real loopback simulators and checks the go command's checksum-database walk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gomirror.tools.goenv import parse_proxy_list
from gomirror.tools.probe import Probe, ProbeOptions, probe_findings, probe_url, walk_sumdb
from support.corpus import Corpus
from support.ports import free_port
from support.simulator import UpstreamSimulator

OPTS = ProbeOptions(connect_timeout=2.0, read_timeout=1.0, slow=0.3)


@pytest.fixture
def sim() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(Corpus(), name="probe") as s:
        yield s


def probe(url: str) -> Probe:
    return asyncio.run(probe_url(url, "proxy", url, OPTS))


def test_ok_probe_measures_phases(sim: UpstreamSimulator) -> None:
    p = probe(f"{sim.url}/golang.org/x/text/@v/list")
    assert (p.outcome, p.status) == ("ok", 404)  # a 404 still proves the mirror answers
    assert p.connect is not None and p.first_byte is not None and p.total is not None
    assert p.tls is None  # plain http
    assert p.first_byte <= p.total
    assert "not found" in p.body


def test_slow_hang_dead_and_failing(sim: UpstreamSimulator) -> None:
    sim.add_fault("/slow/*", latency=0.5)
    sim.add_fault("/hang/*", hang=True)
    sim.fail("/fail/*", 503)
    slow = probe(f"{sim.url}/slow/@v/list")
    assert slow.outcome == "slow" and slow.first_byte is not None and slow.first_byte >= 0.5
    hang = probe(f"{sim.url}/hang/@v/list")
    assert hang.outcome == "hang" and "no answer within 1s" in hang.error
    assert hang.connect is not None and hang.first_byte is None
    fail = probe(f"{sim.url}/fail/@v/list")
    assert (fail.outcome, fail.status) == ("http-error", 503)
    dead = probe(f"http://127.0.0.1:{free_port()}/x/@v/list")
    assert dead.outcome == "dead" and dead.first_byte is None


def _sup(url: str, status: int | None, outcome: str = "ok") -> Probe:
    return Probe("supported", url, f"{url}/sumdb/sum.golang.org/supported", status, outcome)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("goproxy", "supported", "kind", "base"),
    [
        (
            "https://a|https://b,direct",
            {"https://a": (404, "ok"), "https://b": (200, "ok")},
            "proxy",
            "https://b/sumdb/sum.golang.org",
        ),
        (
            "https://a,https://b",
            {"https://a": (503, "http-error"), "https://b": (200, "ok")},
            "unavailable",
            None,
        ),
        (
            "https://a|https://b",
            {"https://a": (None, "dead"), "https://b": (200, "ok")},
            "proxy",
            "https://b/sumdb/sum.golang.org",
        ),
        ("https://a,direct", {"https://a": (410, "ok")}, "direct", "https://sum.golang.org"),
        ("https://a,off", {"https://a": (404, "ok")}, "direct", "https://sum.golang.org"),
    ],
)
def test_walk_sumdb_follows_the_go_command(
    goproxy: str, supported: dict[str, tuple[int | None, str]], kind: str, base: str | None
) -> None:
    sup = {u: _sup(u, s, o) for u, (s, o) in supported.items()}
    route = walk_sumdb(parse_proxy_list(goproxy), sup, "sum.golang.org")
    assert (route.kind, route.base) == (kind, base)


def test_findings_name_the_timeout_that_bites() -> None:
    from gomirror.tools.probe import ProbeReport, SumdbRoute

    entries = parse_proxy_list("https://a,https://b|https://c")
    report = ProbeReport(
        "sum.golang.org",
        proxies=[
            Probe("proxy", "https://a", "u", None, "dead", "connect timed out after 2s"),
            Probe("proxy", "https://b", "u", None, "hang", "no answer within 1s after connecting"),
            Probe("proxy", "https://c", "u", 200, "slow", first_byte=2.0),
        ],
        route=SumdbRoute("off"),
    )
    f = {x.subject: x for x in probe_findings(report, entries, "https://c")}
    assert f["https://a"].severity == "error" and "30 s" in f["https://a"].explanation
    assert f["https://b"].code == "proxy-hangs" and "forever" in f["https://b"].explanation
    assert f["https://c"].code == "proxy-slow" and "2000 ms" in f["https://c"].title
    assert all(x.fix == ("go env -w GOPROXY=https://c",) for x in f.values())
