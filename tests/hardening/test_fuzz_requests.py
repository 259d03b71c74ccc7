"""test_fuzz_requests fuzzes gomirror's request side: hostile paths, versions, request bytes.

One in-process gomirror (the real tree from ``app.build``) serves a simulator
mirror and a test checksum database (verification on, ``/sumdb/`` served). Its
module's list and ``.info`` are cached first, so over-long elements land on an
existing parent directory. Hypothesis then sends request paths built from
``..``, percent-escapes (valid, broken, encoded slashes and NULs), unicode,
control characters, huge elements and query strings; version elements that
are almost-semver, case-encoded, or junk; and raw bytes on the request line.

The invariant for every answer: there is one; it is never a 5xx except a
502/504 when an upstream really failed during that request (the simulator
saw a 5xx or dropped it); an error body is short ``text/plain`` (at most the
648 bytes the go command shows) and never echoes a huge element back; and no
unhandled exception is logged. After each test the server still answers
``/healthz`` and serves the real module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardening.kit import (
    HYPOTHESIS_WARNING,
    MAX_ERROR_BODY,
    Figures,
    InProcessGomirror,
    RawResponse,
    config,
    get_request,
    mount_sumdb,
    raw_request,
    upstream_failed,
)
from support.corpus import Corpus
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

pytestmark = pytest.mark.filterwarnings(HYPOTHESIS_WARNING)

M = "example.com/fuzz/mod"
UP = "example.com/Fuzz/Up"
UP_ESC = "example.com/!fuzz/!up"
DB = "localhost.localdev/sumdb"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class World:
    corpus: Corpus
    sim: UpstreamSimulator
    server: InProcessGomirror


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    corpus = Corpus()
    for v in ("v1.0.0", "v1.1.0", "v1.2.0-pre"):
        corpus.add_module(M, v, {"mod.go": b"package mod\n"})
    corpus.add_module(UP, "v1.0.0", {"up.go": b"package up\n"})

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)
    with UpstreamSimulator(corpus, name="mirror") as sim:
        spec = mount_sumdb(sim, db)
        cfg = config(tmp_path_factory.mktemp("fuzz-requests") / "cache", sim.url, sumdb=spec)
        with InProcessGomirror(cfg) as server:
            for path in (f"/{M}/@v/list", f"/{M}/@v/v1.0.0.info", f"/{M}/@v/v1.0.0.mod"):
                r = raw_request(server.port, get_request(path.encode()))
                assert r.status == 200, (path, r)  # parents cached: long elements hit them
            yield World(corpus, sim, server)


def check(world: World, sent: bytes, r: RawResponse, started: float, figures: Figures) -> None:
    figures.add("requests fuzzed")
    assert r.status != 0, f"no answer to {sent[:200]!r}"
    if r.status >= 500:
        assert r.status in (502, 504) and upstream_failed([world.sim], started), (
            f"{r.status} for client input {sent[:300]!r}: {r.body[:300]!r}"
        )
    if r.status >= 400:
        assert r.header("Content-Type").startswith("text/plain"), (sent[:200], r.headers)
        assert len(r.body) <= MAX_ERROR_BODY, (sent[:200], len(r.body), r.body[:200])
    assert not world.server.errors, world.server.errors


def send(world: World, path: bytes, figures: Figures) -> RawResponse:
    started = time.monotonic()
    data = get_request(path)
    r = raw_request(world.server.port, data)
    check(world, data, r, started, figures)
    # A huge element is never echoed back whole.
    for element in path.split(b"/"):
        if len(element) > 300:
            assert element not in r.raw, f"echoed a {len(element)}-byte element"
    return r


def still_healthy(world: World) -> None:
    assert raw_request(world.server.port, get_request(b"/healthz")).status == 200
    r = raw_request(world.server.port, get_request(f"/{M}/@v/v1.0.0.mod".encode()))
    assert r.status == 200 and r.body == world.corpus[M, "v1.0.0"].mod
    assert not world.server.errors, world.server.errors


# --------------------------------------------------------------------------- strategies

ESCAPES = ["%2e%2e", "%2F", "%2f", "%00", "%", "%z", "%zz", "%e2%82", "%ff", "%C0%AF", "%25", "%21"]
SPECIAL = [
    "..",
    ".",
    "",
    "@v",
    "@latest",
    "list",
    "sumdb",
    "!",
    "!!a",
    "~",
    "-",
    "v1.0.0",
    "@v1.0.0",
]
SPECIAL += ["lookup", "tile", "latest", "supported", "8", "data", "000.p", "x" * 255, "é" * 128]


def pct_bytes(b: bytes) -> str:
    return "".join(f"%{x:02X}" for x in b)


elements = st.one_of(
    st.sampled_from(SPECIAL + ESCAPES),
    st.text(max_size=24),
    st.binary(min_size=1, max_size=16).map(pct_bytes),
    st.from_regex(r"[a-zA-Z0-9.!~_-]{1,16}", fullmatch=True),
    st.integers(200, 1500).map(lambda n: "a" * n),
    st.integers(60, 300).map(lambda n: "é" * n),
    # Many elements that each fit a file name but together exceed PATH_MAX (4096).
    st.integers(4, 30).map(lambda n: "/".join(["e" * 250] * n)),
    st.text(alphabet="é漢\x00\x7f\ufffd%!", min_size=50, max_size=200),
)
prefixes = st.sampled_from(
    [
        "",
        f"/{M}",
        f"/{M}/@v",
        f"/{UP_ESC}/@v",
        f"/sumdb/{DB}",
        f"/sumdb/{DB}/lookup",
        "/sumdb",
        "/example.com",
        "/-",
    ]
)
suffixes = st.sampled_from(
    [
        "",
        ".info",
        ".mod",
        ".zip",
        "/@v/list",
        "/@latest",
        "/@v/v1.0.0.info",
        "/@v/v1.0.0.zip",
        "@v1.0.0",
    ]
)
queries = st.one_of(
    st.just(""),
    st.text(max_size=40).map(lambda s: "?" + s),
    st.integers(100, 7000).map(lambda n: "?q=" + "x" * n),
)


def as_bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogatepass")


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(elements, min_size=0, max_size=6))
    path = draw(prefixes) + "/" + "/".join(parts) + draw(suffixes)
    if draw(st.sampled_from([True, True, True, False])):
        path = quote(path, safe="/%!~@")  # the same path, percent-encoded as a client would
    return as_bytes(path + draw(queries))


semverish = st.builds(
    lambda major, minor, patch, pre, build: f"v{major}.{minor}.{patch}{pre}{build}",
    st.sampled_from(["0", "1", "2", "01", "99999999999999999999"]),
    st.sampled_from(["0", "1", "00", "10"]),
    st.sampled_from(["0", "1", "", "0.0"]),
    st.one_of(st.just(""), st.from_regex(r"-[0-9A-Za-z.!-]{0,20}", fullmatch=True)),
    st.one_of(st.just(""), st.sampled_from(["+incompatible", "+meta", "+", "+!x"])),
)
versions = st.one_of(
    semverish,
    st.text(max_size=30),
    st.from_regex(
        r"v[0-9.]{0,12}(-[0-9A-Za-z.!~-]{0,12})?(\+[0-9A-Za-z.!-]{0,8})?", fullmatch=True
    ),
    st.sampled_from(
        [
            "master",
            "latest",
            "upgrade",
            "patch",
            "V1.0.0",
            "!v1.0.0",
            "v1.0.0%2Fx",
            "v1.0.0/..",
            "..",
            ".",
            "v1.0.0\x00",
            "v1.0.0.info",
            "v1.0.0-0.20190101000000-abcdefabcdef",
            "v0.0.0-20190101000000-abcdefabcdef",
            "v1.0.0-!pre",
            "v2.0.0",
            "v2.0.0+incompatible",
        ]
    ),
    st.integers(200, 1200).map(lambda n: "v1.0.0-" + "a" * n),
)


@st.composite
def version_paths(draw: st.DrawFn) -> bytes:
    module = draw(st.sampled_from([M, UP_ESC, M + "/v2", "example.com/fuzz"]))
    version = draw(versions)
    ext = draw(st.sampled_from([".info", ".mod", ".zip", "", ".info.info"]))
    safe = draw(st.sampled_from(["!~+", "!~+%/", ""]))
    return as_bytes(f"/{module}/@v/{quote(version, safe=safe)}{ext}")


# --------------------------------------------------------------------------- tests


@FUZZ
@given(path=paths())
def test_fuzzed_paths_never_crash_the_server(world: World, figures: Figures, path: bytes) -> None:
    send(world, path, figures)
    figures.add("cases: request paths")


@FUZZ
@given(path=version_paths())
def test_fuzzed_versions_never_crash_the_server(
    world: World, figures: Figures, path: bytes
) -> None:
    r = send(world, path, figures)
    if r.status == 200:
        assert path.startswith(f"/{M}/@v/".encode()) or path.startswith(f"/{UP_ESC}/@v/".encode())
    figures.add("cases: versions")


@FUZZ
@given(
    line=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda p: b"GET /" + p + b" HTTP/1.1", st.binary(max_size=300)),
        st.builds(
            lambda m, p: m + b" " + p + b" HTTP/1.1",
            st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"G\x00T", b"get", b"DELETE", b""]),
            st.binary(max_size=100).map(lambda b: b"/" + b),
        ),
    ),
    headers=st.lists(st.binary(max_size=80), max_size=4),
)
def test_raw_request_bytes_never_crash_the_server(
    world: World, figures: Figures, line: bytes, headers: list[bytes]
) -> None:
    data = line + b"\r\nHost: fuzz.test\r\n" + b"".join(h + b"\r\n" for h in headers)
    data += b"Connection: close\r\n\r\n"
    started = time.monotonic()
    r = raw_request(world.server.port, data)
    # A request line the parser rejects still gets an answer (400), never a silent close.
    check(world, data, r, started, figures)
    figures.add("cases: raw request bytes")


def test_server_is_healthy_after_fuzzing(world: World) -> None:
    still_healthy(world)
