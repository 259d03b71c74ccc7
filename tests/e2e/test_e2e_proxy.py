"""test_e2e_proxy drives the real go command through gomirror against simulated mirrors.

The go command (GOSUMDB=off, its own module cache) talks only to gomirror, which
talks only to ``UpstreamSimulator`` mirrors serving Go's testdata corpus and
synthetic modules. Every file the go command ends up with must be byte-identical
to the upstream's; the protocol corners (case encoding, ``+incompatible``,
pseudo-versions, queries, the ``.info`` canonical rule, not-found text, negative
caching, 429 handling) are checked on the wire, in the go command's output and
in gomirror's cache directory.
"""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest

from support.corpus import Corpus, escape_path, escape_version, is_pseudo_version
from support.gorunner import GoRunner, parse_json_stream
from support.server import GomirrorProcess

pytestmark = pytest.mark.e2e

GRAPH = [f"example.com/graph/m{i:03d}" for i in range(6)]
UPPER = "example.com/Upper/Case"
QUOTE = "rsc.io/quote"


def assert_same_files(go: GoRunner, corpus: Corpus, module: str, version: str) -> None:
    """The go command's cached .mod/.zip/.info are exactly what the upstream served."""
    mv = corpus[(module, version)]
    assert go.modcache_file(module, version, "zip").read_bytes() == mv.zip
    if mv.mod is not None:
        assert go.modcache_file(module, version, "mod").read_bytes() == mv.mod
    info_file = go.modcache_file(module, version, "info")
    if info_file.exists():  # dependencies only loaded for their go.mod have no .info
        assert json.loads(info_file.read_bytes())["Version"] == version


def raw_get(mirror: GomirrorProcess, raw_path: str) -> tuple[int, dict[str, str], bytes]:
    """GET a raw request path, exactly as written (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_mod_download_of_a_graph(
    tmp_path: Path, e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url)
    go = go_runner(mirror.url)
    app = tmp_path / "app"
    go.init_module(app, "example.com/app", requires={GRAPH[0]: "v1.1.0"})

    go.run("mod", "download", cwd=app)
    # go ≥ 1.17 main module (graph pruning): the zip of the direct requirement only.
    assert sim.count("/example.com/graph/*/@v/v1.1.0.zip") == 1
    assert_same_files(go, e2e_corpus, GRAPH[0], "v1.1.0")

    objs = go.mod_download_json("all", cwd=app)
    got = {(o["Path"], o["Version"]) for o in objs if "Error" not in o}
    assert got == {(m, "v1.1.0") for m in GRAPH}
    for o in objs:
        assert "Error" not in o, o
        assert_same_files(go, e2e_corpus, o["Path"], o["Version"])
        mv = e2e_corpus[(o["Path"], o["Version"])]
        assert o["Sum"] == mv.h1
        assert o["GoModSum"] == mv.gomod_h1
    # Every upstream file was fetched once, whatever the go command asked twice.
    for m in GRAPH:
        assert sim.count(f"/{m}/@v/v1.1.0.zip") == 1
        assert sim.count(f"/{m}/@v/v1.1.0.mod") == 1
    # gomirror's cache is itself a GOPROXY tree with the same bytes.
    for m in GRAPH:
        cached = mirror.cache_dir / m / "@v" / "v1.1.0.zip"
        assert cached.read_bytes() == e2e_corpus[(m, "v1.1.0")].zip

    # A second client is served from the cache: the upstream sees nothing new.
    before = sim.count()
    go2 = go_runner(mirror.url)
    assert {(o["Path"], o.get("Error")) for o in go2.mod_download_json("all", cwd=app)} == {
        (m, None) for m in GRAPH
    }
    assert sim.requests_for("*.zip")[before:] == []
    assert sim.count("*.zip") == len(GRAPH)


def test_go_get_latest_prefix_and_list_versions(
    tmp_path: Path, e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url)
    go = go_runner(mirror.url)
    app = tmp_path / "app"
    go.init_module(app, "example.com/app")

    go.run("get", f"{QUOTE}@latest", cwd=app)
    gomod = (app / "go.mod").read_text()
    assert re.search(rf"{re.escape(QUOTE)} v1\.5\.2\b", gomod), gomod
    assert sim.count(f"/{QUOTE}/@v/list") >= 1
    assert_same_files(go, e2e_corpus, QUOTE, "v1.5.2")
    assert_same_files(go, e2e_corpus, "rsc.io/sampler", "v1.3.0")

    go.run("get", f"{QUOTE}@v1.3", cwd=app)  # prefix query: highest v1.3.x
    assert re.search(rf"{re.escape(QUOTE)} v1\.3\.0\b", (app / "go.mod").read_text())
    go.run("get", f"{QUOTE}@v1", cwd=app)
    assert re.search(rf"{re.escape(QUOTE)} v1\.5\.2\b", (app / "go.mod").read_text())

    versions = go.list_versions(QUOTE)
    expected = [
        v for v in e2e_corpus.versions(QUOTE) if not is_pseudo_version(v) and v.startswith("v1.")
    ]
    assert versions == expected
    assert go.list_versions("example.com/graph/m001") == ["v1.0.0", "v1.1.0"]


def test_case_encoded_paths(start_sim, start_gomirror, go_runner, e2e_corpus: Corpus) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url)
    go = go_runner(mirror.url)
    for module, version in [("rsc.io/QUOTE", "v1.5.2"), (UPPER, "v1.0.0"), (UPPER, "v1.1.0-Beta")]:
        (obj,) = go.mod_download_json(f"{module}@{version}")
        assert obj["Version"] == version and "Error" not in obj, obj
        assert_same_files(go, e2e_corpus, module, version)
        key = f"{escape_path(module)}/@v/{escape_version(version)}.zip"
        assert (mirror.cache_dir / key).read_bytes() == e2e_corpus[(module, version)].zip
    assert go.list_versions(UPPER) == ["v1.0.0", "v1.1.0-Beta"]

    # The go command sent the case encoding percent-escaped (%21); gomirror decoded it and
    # asked the upstream for the same case-encoded path.
    assert "/example.com/%21upper/%21case/@v/v1.1.0-%21beta.zip" in mirror.log()
    assert sim.count("/example.com/!upper/!case/@v/v1.1.0-!beta.zip") == 1
    assert sim.count("/rsc.io/!q!u!o!t!e/@v/v1.5.2.zip") == 1
    assert sim.count("/rsc.io/quote/*") == 0
    # And it accepts both spellings, while a raw upper-case path is a bad request.
    for path in ("/example.com/%21upper/%21case/@v/list", "/example.com/!upper/!case/@v/list"):
        status, _, body = mirror.get(path)
        assert (status, body) == (200, b"v1.0.0\nv1.1.0-Beta\n")
    status, headers, body = raw_get(mirror, "/example.com/Upper/Case/@v/list")
    assert status == 400 and headers["Content-Type"].startswith("text/plain")
    assert body.startswith(b"bad request: ")


def test_incompatible_and_pseudo_versions(
    start_sim, start_gomirror, go_runner, e2e_corpus: Corpus
) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url)
    go = go_runner(mirror.url)
    pseudo = "v0.0.0-20170915032832-14c0d48ead0c"
    cases = [("rsc.io/breaker", "v2.0.0+incompatible"), ("golang.org/x/text", pseudo)]
    for module, version in cases:
        (obj,) = go.mod_download_json(f"{module}@{version}")
        assert "Error" not in obj, obj
        assert obj["Version"] == version
        assert obj["Sum"] == e2e_corpus[(module, version)].h1
        assert_same_files(go, e2e_corpus, module, version)
    assert (mirror.cache_dir / "rsc.io/breaker/@v/v2.0.0+incompatible.zip").is_file()
    assert sim.count("/rsc.io/breaker/@v/v2.0.0+incompatible.zip") == 1
    # +incompatible versions are listed for the v0/v1 module path.
    assert "v2.0.0+incompatible" in go.list_versions("rsc.io/breaker")


def test_missing_module_shows_gomirror_404_text(start_sim, start_gomirror, go_runner) -> None:
    a, b = start_sim(), start_sim()
    mirror = start_gomirror(f"{a.url},{b.url}")
    go = go_runner(mirror.url)
    proc = go.run("mod", "download", "example.com/nowhere@v1.0.0", check=False)
    assert proc.returncode != 0
    assert "404 Not Found" in proc.stderr
    # The go command shows gomirror's plain-text body: the headline, then every mirror asked.
    lines = [ln.strip() for ln in proc.stderr.splitlines()]
    i = lines.index("server response:")
    assert lines[i + 1] == "not found: example.com/nowhere@v1.0.0.info"
    assert lines[i + 2].startswith(f"{a.url}: 404 Not Found")
    assert lines[i + 3].startswith(f"{b.url}: 404 Not Found")
    # Both mirrors were asked once.
    assert a.count("/example.com/nowhere/@v/v1.0.0.info") == 1
    assert b.count("/example.com/nowhere/@v/v1.0.0.info") == 1


def test_negative_caching(start_sim, start_gomirror) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url, env={"GOMIRROR_NEGATIVE_TTL": "300"})
    for path in (
        "/example.com/nowhere/@v/v1.0.0.info",
        "/example.com/nowhere/@v/v1.0.0.mod",
        "/example.com/nowhere/@v/v1.0.0.zip",
        "/example.com/nowhere/@v/list",
        "/example.com/nowhere/@latest",
    ):
        first = mirror.get(path)
        second = mirror.get(path)
        assert first[0] == second[0] == 404, (path, first)
        assert first[2] == second[2]
        assert first[1]["Content-Type"] == "text/plain; charset=utf-8"
        assert sim.count(path) == 1, path
    # A module that exists is unaffected.
    assert mirror.get("/rsc.io/quote/@v/list")[0] == 200


def test_non_canonical_info_query_is_passed_upstream(
    start_sim, start_gomirror, go_runner, e2e_corpus: Corpus
) -> None:
    corpus = Corpus()
    mv = e2e_corpus[(QUOTE, "v1.5.2")]
    corpus.add(mv)
    sim = start_sim(corpus)
    sim.add_query(QUOTE, "master", "v1.5.2")
    mirror = start_gomirror(sim.url)
    go = go_runner(mirror.url)
    (obj,) = go.mod_download_json(f"{QUOTE}@master")
    assert obj["Version"] == "v1.5.2" and "Error" not in obj, obj
    assert sim.count(f"/{QUOTE}/@v/master.info") == 1
    assert_same_files(go, corpus, QUOTE, "v1.5.2")
    status, headers, body = mirror.get(f"/{QUOTE}/@v/master.info")
    assert status == 200 and json.loads(body)["Version"] == "v1.5.2"
    assert headers["Cache-Control"].startswith("public, max-age=")
    assert "immutable" not in headers["Cache-Control"]


def test_info_with_wrong_version_is_rejected(
    start_sim, start_gomirror, go_runner, e2e_corpus: Corpus
) -> None:
    liar, honest = start_sim(), start_sim()
    liar.add_fault(f"/{QUOTE}/@v/v1.5.1.info", replace_body=b'{"Version":"v1.5.2"}')
    liar.add_fault(f"/{QUOTE}/@v/v1.5.0.info", replace_body=b"{not json")
    mirror = start_gomirror(f"{liar.url},{honest.url}")
    go = go_runner(mirror.url)
    for v in ("v1.5.1", "v1.5.0"):
        (obj,) = go.mod_download_json(f"{QUOTE}@{v}")
        assert obj["Version"] == v and "Error" not in obj, obj
        assert honest.count(f"/{QUOTE}/@v/{v}.info") == 1
        assert_same_files(go, e2e_corpus, QUOTE, v)
    cached = json.loads((mirror.cache_dir / QUOTE / "@v/v1.5.1.info").read_bytes())
    assert cached["Version"] == "v1.5.1"

    # With only the liar, the go command gets gomirror's error, not the wrong version.
    lone = start_gomirror(liar.url)
    proc = go_runner(lone.url).run("mod", "download", f"{QUOTE}@v1.5.1", check=False)
    assert proc.returncode != 0
    assert "instead of requested version v1.5.1" in proc.stderr
    assert "502 Bad Gateway" in proc.stderr


def test_malformed_requests_unknown_paths_health_and_metrics(start_sim, start_gomirror) -> None:
    sim = start_sim()
    mirror = start_gomirror(sim.url)
    for raw in (
        "/rsc.io/quote/@v/%zz.info",
        "/rsc.io/%2/@v/list",
        "/rsc.io/QUOTE/@v/list",
        "/rsc.io/../quote/@v/list",
        "/rsc.io/quote/@v/..info",
        "/rsc.io/quote/@v/v1.5.zip",
    ):
        status, headers, body = raw_get(mirror, raw)
        assert status == 400, (raw, status, body)
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert body.startswith(b"bad request: ") and body.endswith(b"\n")
    for raw in ("/favicon.ico", "/rsc.io/quote/@v/v1.5.2.txt", "/rsc.io/quote/@v/v2.0.0.zip"):
        status, headers, body = raw_get(mirror, raw)
        assert status == 404, (raw, status, body)
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
        assert body.startswith(b"not found: ")
    assert sim.count() == 0  # nothing invalid reached the upstream

    assert mirror.get("/healthz")[:3:2] == (200, b"ok\n")
    for _ in range(2):
        assert mirror.get(f"/{QUOTE}/@v/v1.5.2.mod")[0] == 200
        assert mirror.get(f"/{QUOTE}/@v/v1.5.2.zip")[0] == 200
    assert mirror.get("/example.com/nowhere/@v/list")[0] == 404
    status, headers, body = mirror.get("/metrics")
    assert status == 200
    text = body.decode()
    assert 'gomirror_requests_total{endpoint="zip",status="200"} 2.0' in text
    assert 'gomirror_requests_total{endpoint="list",status="404"} 1.0' in text
    assert 'gomirror_cache_total{endpoint="zip",result="miss"} 1.0' in text
    assert 'gomirror_cache_total{endpoint="zip",result="hit"} 1.0' in text
    assert 'gomirror_cache_total{endpoint="mod",result="hit"} 1.0' in text
    assert (
        f'gomirror_upstream_requests_total{{op="zip",outcome="ok",upstream="{sim.url}"}} 1.0'
        in text
    )
    assert (
        f'gomirror_upstream_requests_total{{op="list",outcome="not_found",upstream="{sim.url}"}} 1.0'
        in text
    )


def test_429_with_retry_after_is_waited_out_once(
    start_sim, start_gomirror, go_runner, e2e_corpus: Corpus
) -> None:
    sim, other = start_sim(), start_sim()
    zip_path = f"/{QUOTE}/@v/v1.4.0.zip"
    sim.fail(zip_path, 429, "slow down", headers={"Retry-After": "1"}, times=1)
    mirror = start_gomirror(f"{sim.url},{other.url}")
    go = go_runner(mirror.url)
    (obj,) = go.mod_download_json(f"{QUOTE}@v1.4.0")
    assert "Error" not in obj, obj
    assert_same_files(go, e2e_corpus, QUOTE, "v1.4.0")
    reqs = sim.requests_for(zip_path)
    assert [r.status for r in reqs] == [429, 200]
    assert reqs[1].monotonic - reqs[0].monotonic >= 0.9
    assert other.count() == 0


def test_json_stream_helper_round_trips() -> None:
    assert parse_json_stream('{"a":1}\n{"b":2}') == [{"a": 1}, {"b": 2}]
