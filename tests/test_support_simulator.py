"""test_support_simulator checks the upstream simulator over real HTTP on loopback.

Plain http.client is the client here (the go command is exercised in test_support_gorunner).
"""

from __future__ import annotations

import http.client
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from support.corpus import Corpus
from support.simulator import SUBPATH, UpstreamSimulator

PSEUDO = "v0.0.0-20200102030405-abcdefabcdef"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool  # False when the connection ended before Content-Length bytes


def fetch(sim: UpstreamSimulator, path: str, timeout: float = 5.0) -> Reply:
    """GET ``path`` on a fresh connection (always closed)."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "support-test/1"})
        resp = conn.getresponse()
        complete = True
        try:
            body = resp.read()
        except http.client.IncompleteRead as e:
            body, complete = e.partial, False
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, complete)
    finally:
        conn.close()


@pytest.fixture
def corpus() -> Corpus:
    c = Corpus.from_go_testdata(only=["rsc.io/quote", "rsc.io/QUOTE", "rsc.io/sampler"])
    c.add_module("example.com/notags", PSEUDO, {"x.go": b"package notags\n"})
    c.synthetic_module("example.com/big", "v1.0.0", 200_000, 4, seed=1)
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="sim-a") as s:
        yield s


def test_serves_the_goproxy_protocol(sim: UpstreamSimulator, corpus: Corpus) -> None:
    r = fetch(sim, "/rsc.io/quote/@v/list")
    assert r.status == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.body.decode() == corpus.list_text("rsc.io/quote")
    r = fetch(sim, "/rsc.io/quote/@v/v1.5.2.info")
    assert json.loads(r.body)["Version"] == "v1.5.2"
    assert r.headers["content-type"] == "application/json"
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.mod").body == corpus["rsc.io/quote", "v1.5.2"].mod
    r = fetch(sim, "/example.com/big/@v/v1.0.0.zip")
    assert r.headers["content-type"] == "application/zip"
    assert int(r.headers["content-length"]) == len(r.body) > 200_000
    assert r.body == corpus["example.com/big", "v1.0.0"].zip
    assert zipfile.ZipFile(io.BytesIO(r.body)).testzip() is None
    assert json.loads(fetch(sim, "/rsc.io/quote/@latest").body)["Version"] == "v1.5.2"
    assert fetch(sim, "/example.com/notags/@v/list").body == b""
    assert json.loads(fetch(sim, "/example.com/notags/@latest").body)["Version"] == PSEUDO


def test_percent_decoding_and_case_escapes(sim: UpstreamSimulator) -> None:
    r = fetch(sim, "/rsc.io/%21q%21u%21o%21t%21e/@v/v1.5.3-%21p%21r%21e.info")
    assert r.status == 200
    assert json.loads(r.body)["Version"] == "v1.5.3-PRE"
    (rec,) = sim.requests
    assert rec.path == "/rsc.io/!q!u!o!t!e/@v/v1.5.3-!p!r!e.info"
    assert rec.raw_path == "/rsc.io/%21q%21u%21o%21t%21e/@v/v1.5.3-%21p%21r%21e.info"
    assert rec.headers["User-Agent"] == "support-test/1"
    # A raw upper-case letter is not a valid escaped path.
    assert fetch(sim, "/rsc.io/QUOTE/@v/list").status == 404


def test_unknown_paths_are_text_404(sim: UpstreamSimulator) -> None:
    for path in (
        "/rsc.io/nope/@v/list",
        "/rsc.io/quote/@v/v9.9.9.info",
        "/rsc.io/quote/@v/v9.9.9.zip",
        "/rsc.io/quote/@v/v1.5.2.tar",
        "/nothing-here",
        "/rsc.io/nope/@latest",
    ):
        r = fetch(sim, path)
        assert r.status == 404, path
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.body.startswith(b"not found: ") and b"(sim-a)" in r.body


def test_non_canonical_queries(sim: UpstreamSimulator) -> None:
    assert fetch(sim, "/example.com/notags/@v/master.info").status == 404
    sim.add_query("example.com/notags", "master", PSEUDO)
    assert json.loads(fetch(sim, "/example.com/notags/@v/master.info").body)["Version"] == PSEUDO
    hexq = json.loads(fetch(sim, "/rsc.io/quote/@v/c4d4236f92.info").body)
    assert hexq["Version"] == "v1.5.2"
    assert json.loads(fetch(sim, "/example.com/notags/@v/abcdefab.info").body)["Version"] == PSEUDO


def test_status_fault_with_headers_and_times(sim: UpstreamSimulator) -> None:
    rule = sim.fail("*/@v/list", 503, "busy, retry\n", {"Retry-After": "7"}, times=2)
    for _ in range(2):
        r = fetch(sim, "/rsc.io/quote/@v/list")
        assert (r.status, r.body, r.headers["retry-after"]) == (503, b"busy, retry\n", "7")
    assert fetch(sim, "/rsc.io/quote/@v/list").status == 200
    assert rule.hits == 2
    sim.fail(re.compile(r"\.mod$"), 410)
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.mod").status == 410
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.info").status == 200
    sim.clear_faults()
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.mod").status == 200
    assert [r.status for r in sim.requests] == [503, 503, 200, 410, 200, 200]


def test_probability_faults_are_a_seeded_share_over_older_rules(corpus: Corpus) -> None:
    def statuses(seed: int) -> tuple[list[int], int]:
        with UpstreamSimulator(corpus, name="flaky", seed=seed) as s:
            s.add_fault("*.info", headers={"X-Base": "1"})
            rule = s.fail("*.info", 502, probability=0.3)
            got = []
            for _ in range(60):
                r = fetch(s, "/rsc.io/quote/@v/v1.5.2.info")
                # a request the draw skips still gets the older rule, not a bare answer
                assert r.status == 502 or r.headers.get("x-base") == "1"
                got.append(r.status)
            assert fetch(s, "/rsc.io/quote/@v/list").status == 200  # pattern still applies
            return got, rule.hits

    first, hits = statuses(7)
    assert set(first) == {200, 502}
    assert hits == first.count(502)
    assert 6 <= first.count(502) <= 30  # 30 % of 60 = 18; far outside is a broken draw
    assert statuses(7)[0] == first  # same seed, same sequence
    with pytest.raises(ValueError, match="probability"):
        UpstreamSimulator(corpus).add_fault("*", status=502, probability=1.5)


def test_latency_and_bandwidth(sim: UpstreamSimulator) -> None:
    sim.add_fault("*.info", latency=0.25)
    t0 = time.monotonic()
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.info").status == 200
    assert time.monotonic() - t0 >= 0.25
    sim.add_fault("/example.com/big/*", bandwidth=1_000_000)
    t0 = time.monotonic()
    r = fetch(sim, "/example.com/big/@v/v1.0.0.zip")
    elapsed = time.monotonic() - t0
    assert r.complete and len(r.body) > 200_000
    assert elapsed >= len(r.body) / 1_000_000 * 0.9


def test_cut_and_hang(sim: UpstreamSimulator) -> None:
    sim.add_fault("*.zip", cut_after=1000, times=1)
    r = fetch(sim, "/example.com/big/@v/v1.0.0.zip")
    assert r.status == 200 and not r.complete and len(r.body) == 1000
    assert fetch(sim, "/example.com/big/@v/v1.0.0.zip").complete
    sim.add_fault("*/list", hang=True)
    with pytest.raises(TimeoutError):
        fetch(sim, "/rsc.io/quote/@v/list", timeout=0.2)
    sim.add_fault("*.mod", hang_after=10)
    with pytest.raises(TimeoutError):
        fetch(sim, "/rsc.io/quote/@v/v1.5.2.mod", timeout=0.2)
    t0 = time.monotonic()
    sim.stop()  # releases the hung handlers promptly
    assert time.monotonic() - t0 < 5


def test_tampering(sim: UpstreamSimulator, corpus: Corpus) -> None:
    good = corpus["example.com/big", "v1.0.0"].zip
    sim.add_fault("*.zip", flip_byte=-30)
    bad = fetch(sim, "/example.com/big/@v/v1.0.0.zip").body
    assert len(bad) == len(good)
    assert [i for i in range(len(good)) if good[i] != bad[i]] == [len(good) - 30]
    sim.add_fault("/rsc.io/quote/@v/v1.5.2.mod", replace_body=b"module evil.example\n")
    assert fetch(sim, "/rsc.io/quote/@v/v1.5.2.mod").body == b"module evil.example\n"


def test_down_refuses_then_recovers_on_same_port(sim: UpstreamSimulator) -> None:
    url = sim.url
    sim.set_down()
    assert sim.is_down
    with pytest.raises(ConnectionRefusedError):
        fetch(sim, "/rsc.io/quote/@v/list")
    sim.set_down(False)
    assert sim.url == url
    assert fetch(sim, "/rsc.io/quote/@v/list").status == 200
    sim.set_down(True, mode="reset")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        fetch(sim, "/rsc.io/quote/@v/list")
    sim.set_down(False)
    assert fetch(sim, "/rsc.io/quote/@v/list").status == 200


def test_recording_helpers(sim: UpstreamSimulator) -> None:
    fetch(sim, "/rsc.io/quote/@v/list")
    fetch(sim, "/rsc.io/quote/@v/v1.5.2.info")
    fetch(sim, "/rsc.io/sampler/@v/list")
    assert sim.count() == 3
    assert sim.count("*/@v/list") == 2
    assert [r.path for r in sim.requests_for(re.compile(r"^/rsc\.io/quote/"))] == [
        "/rsc.io/quote/@v/list",
        "/rsc.io/quote/@v/v1.5.2.info",
    ]
    assert all(r.method == "GET" and r.time > 0 for r in sim.requests)
    sim.clear()
    assert sim.requests == []


def test_mounts_and_several_instances(corpus: Corpus) -> None:
    async def supported(request: web.Request) -> web.Response:
        return web.Response(text=f"ok {request[SUBPATH]}")

    sub = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello from sub-app")

    sub.router.add_get("/hello", hello)
    a = UpstreamSimulator(corpus, name="a")
    a.mount("/sub", sub)
    b = UpstreamSimulator(Corpus(), name="b")
    with a, b:
        assert a.port != b.port
        a.mount("/sumdb/test.example", supported)
        assert fetch(a, "/sumdb/test.example/supported").body == b"ok /supported"
        assert fetch(a, "/sub/hello").body == b"hello from sub-app"
        assert a.count("/sub/*") == 1  # sub-apps are recorded too
        a.fail("/sumdb/*", 503)
        assert fetch(a, "/sumdb/test.example/supported").status == 503
        assert fetch(b, "/rsc.io/quote/@v/list").status == 404
        assert b.count() == 1 and a.count() == 3
        with pytest.raises(RuntimeError):
            a.mount("/late", web.Application())
