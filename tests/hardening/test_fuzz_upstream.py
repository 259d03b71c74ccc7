"""test_fuzz_upstream fuzzes gomirror's upstream side: a hostile mirror's .info/.mod/list/@latest/.zip.

Two in-process gomirrors share one hostile simulator mirror A; the checksum
database (a ``TestSumdb`` knowing the honest hashes) is served by an honest
mirror B. ``solo`` asks only A; ``chained`` asks ``A,B`` (a comma: only a
not-found would fall through by Go's rules, so reaching B proves that bad
content always means "try the next one"). A is never parked or distrusted
(``untrusted_for = 0``, a huge ``down_after``), so every example reaches it.

Each example makes a fresh module (so no earlier answer is cached), and A
answers one of its files with hypothesis-made bytes: random bytes, the honest
body mutated (flipped, cut, padded, spliced), deep JSON (up to 200,000
levels), almost-right ``.info`` objects and version lists, go.mod variants,
zips with extra, renamed, escaping or duplicate entries; sometimes labelled
with a ``Content-Encoding`` (valid gzip, bogus gzip/deflate/br, a gzip bomb).

Invariants: no 500 (or any 5xx but 502/504) from either server; a ``.mod`` or
``.zip`` answered 200 is the honest one (the ``.mod`` byte for byte, the
zip file for file: mirrors may re-zip); a 200 ``.info`` names
the version asked for, a 200 ``@latest`` a canonical version, a 200 list is
UTF-8 text without NULs; ``chained`` answers every request 200 (the ``.mod``
and ``.zip`` honestly); nothing but honest ``.mod``/``.zip`` bytes ever lands in
either cache; no unhandled exception is logged; ``/healthz`` keeps
answering while the hostile answer is processed; and the status page, its
JSON and ``/metrics`` (which show what mirrors did) still render.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import struct
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardening.kit import (
    HYPOTHESIS_WARNING,
    Figures,
    InProcessGomirror,
    RawResponse,
    config,
    failed_requests,
    get_request,
    mount_sumdb,
    raw_request,
)
from support.corpus import Corpus, ModuleVersion, build_zip
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

pytestmark = pytest.mark.filterwarnings(HYPOTHESIS_WARNING)

PREFIX = "example.com/hostile/m"
V = "v1.0.0"
HEALTHZ_MAX_SECONDS = 1.0  # generous for 2 shared cores; a stalled loop takes longer
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
CANONICAL = re.compile(
    r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+incompatible)?"
)


@dataclass
class World:
    corpus: Corpus
    hostile: UpstreamSimulator
    honest: UpstreamSimulator
    solo: InProcessGomirror
    chained: InProcessGomirror
    counter: Iterator[int] = field(default_factory=itertools.count)
    healthz_worst: float = 0.0

    def fresh_module(self) -> ModuleVersion:
        path = f"{PREFIX}{next(self.counter):05d}"
        files = {"a.go": b"package m\n\nconst A = 1\n", "sub/b.go": b"package sub\n"}
        return self.corpus.add_module(path, V, files)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    corpus = Corpus()

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)
    tmp = tmp_path_factory.mktemp("fuzz-upstream")
    with (
        UpstreamSimulator(corpus, name="hostile") as a,
        UpstreamSimulator(corpus, name="honest") as b,
    ):
        spec = mount_sumdb(b, db)
        common = {
            "sumdb": spec,
            "untrusted_for": "0",
            "down_after": "1000000000",
            "timeout_park": "0.01",
        }
        with (
            InProcessGomirror(config(tmp / "solo", a.url, **common)) as solo,
            InProcessGomirror(config(tmp / "chained", f"{a.url},{b.url}", **common)) as chained,
        ):
            yield World(corpus, a, b, solo, chained)


# --------------------------------------------------------------------------- strategies

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
depths = st.sampled_from([100, 1000, 5000, 50_000, 200_000])
versions = st.one_of(
    st.sampled_from(
        [
            V,
            "v1.0.1",
            "v0.0.1",
            "v2.0.0",
            "V1.0.0",
            "v1.0",
            "",
            "v1.0.0+incompatible",
            "v1.0.0-pre",
            "../../etc/passwd",
            "v1.0.0\n",
            "v1.0.0\x00",
            "v99999999999999999999.0.0",
            "master",
            "v0.0.0-20190101000000-abcdefabcdef",
            "v1.0.0 v1.0.1",
        ]
    ),
    st.text(max_size=20),
)
TIMES: list[object] = [
    "2019-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "2019-13-45T25:61:61Z",
    "2019-01-01T00:00:00+25:00",
    "2019-01-01",
    "",
    None,
    12345,
    [],
    {},
]
times = st.sampled_from(TIMES)


@st.composite
def mutated(draw: st.DrawFn, honest: bytes) -> bytes:
    op = draw(st.sampled_from(["flip", "cut", "insert", "append", "double", "prefix"]))
    # A position as a fraction of the length: honest bodies of different examples differ in
    # size by a byte or two, and hypothesis needs the same draws to replay an example.
    i = draw(st.integers(0, 9_999)) * len(honest) // 10_000
    junk = draw(st.binary(min_size=1, max_size=64))
    if op == "flip" and honest:
        return honest[:i] + bytes([honest[i] ^ draw(st.integers(1, 255))]) + honest[i + 1 :]
    if op == "cut":
        return honest[:i]
    if op == "insert":
        return honest[:i] + junk + honest[i:]
    if op == "append":
        return honest + junk
    if op == "double":
        return honest + honest
    return junk + honest


def deep_json(depth: int, inside_info: bool) -> bytes:
    nest = b"[" * depth + b"]" * depth
    return b'{"Version":' + nest + b"}" if inside_info else nest


@st.composite
def info_bodies(draw: st.DrawFn, honest: bytes) -> bytes:
    kind = draw(st.sampled_from(["object", "json", "deep"]))
    if kind == "deep":
        return deep_json(draw(depths), draw(st.booleans()))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    obj: dict[str, object] = {}
    if draw(st.booleans()):
        obj["Version"] = draw(versions)
    if draw(st.booleans()):
        obj["Time"] = draw(times)
    if draw(st.booleans()):
        obj[draw(st.sampled_from(["version", "VERSION", "Origin", "time", "X"]))] = draw(
            json_values
        )
    pad = b" " * draw(st.sampled_from([0, 0, 10, 1 << 20]))
    return json.dumps(obj).encode() + pad


@st.composite
def list_bodies(draw: st.DrawFn, honest: bytes) -> bytes:
    lines = draw(st.lists(st.one_of(versions, st.text(max_size=30)), max_size=8))
    text = "\n".join(lines).encode("utf-8", "surrogatepass")
    extra = draw(
        st.sampled_from(
            [b"", b"\x00", b"\xff\xfe", b"\r\n", b"v1.0.0 extra fields\n", b"x" * 70000]
        )
    )
    return text + extra


@st.composite
def mod_bodies(draw: st.DrawFn, honest: bytes) -> bytes:
    kind = draw(st.sampled_from(["lines", "other"]))
    if kind == "other":
        return draw(
            st.sampled_from(
                [b"module example.com/other\n", b"", b"module\n", b"\x00" * 10, b"go 1.21\n"]
            )
        )
    extra = draw(
        st.lists(
            st.sampled_from(
                [
                    b"require rsc.io/evil v1.0.0",
                    b"replace x => ../y",
                    b"exclude a v1",
                    b"// comment",
                    b"module example.com/other",
                    b"go 99999",
                    b"require (",
                    b"\xff",
                    b"retract v1.0.0",
                ]
            ),
            min_size=1,
            max_size=4,
        )
    )
    return honest + b"\n" + b"\n".join(extra) + b"\n"


@st.composite
def zip_bodies(draw: st.DrawFn, honest: ModuleVersion) -> bytes:
    prefix = f"{honest.path}@{V}/"
    entries = list(honest.files)
    op = draw(st.sampled_from(["extra", "rename", "drop", "dup", "case", "swap-mod", "raw-name"]))
    if op == "raw-name":  # a file name that is not UTF-8 (no UTF-8 flag), same length
        raw = bytes([draw(st.integers(0x80, 0xFF))])
        return honest.zip.replace(f"{prefix}a.go".encode(), f"{prefix}".encode() + raw + b".go")
    if op == "extra":
        name = draw(
            st.sampled_from(
                [
                    prefix + "backdoor.go",
                    prefix + "../escape.go",
                    "/abs.go",
                    prefix + "a/../../x.go",
                    "other@v1.0.0/x.go",
                    prefix + "vendor/modules.txt",
                    prefix + "x\\y.go",
                    prefix + "\u00e9.go",
                    prefix + "",
                    prefix + "dir/",
                ]
            )
        )
        entries.append((name, draw(st.binary(max_size=64))))
    elif op == "rename" and entries:
        i = draw(st.integers(0, len(entries) - 1))
        entries[i] = (
            draw(st.sampled_from(["../x.go", prefix + "A.GO", "x.go", prefix + "sub/../a.go"])),
            entries[i][1],
        )
    elif op == "drop" and entries:
        entries.pop(draw(st.integers(0, len(entries) - 1)))
    elif op == "dup" and entries:
        entries.append(entries[0])
    elif op == "case":
        entries.append((prefix + "A.go", b"package m\n"))
    else:
        entries = [
            (n, b"module example.com/other\n" if n.endswith("/go.mod") else d) for n, d in entries
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we want
        return build_zip(entries)


@st.composite
def hostile_answers(draw: st.DrawFn, mv: ModuleVersion) -> tuple[str, bytes, dict[str, str]]:
    endpoint = draw(st.sampled_from(["info", "mod", "zip", "list", "latest"]))
    honest = {
        "info": mv.info,
        "mod": mv.mod or b"",
        "zip": mv.zip,
        "list": b"v1.0.0\n",
        "latest": mv.info,
    }[endpoint]
    shapes = [st.binary(max_size=2048), mutated(honest)]
    if endpoint in ("info", "latest"):
        shapes.append(info_bodies(honest))
    elif endpoint == "list":
        shapes.append(list_bodies(honest))
    elif endpoint == "mod":
        shapes.append(mod_bodies(honest))
    else:
        shapes += [zip_bodies(mv), zip_bodies(mv)]
    body = draw(st.one_of(*shapes))
    encoding = draw(
        st.sampled_from(["", "", "", "", "gzip", "gzip-bogus", "deflate-bogus", "br", "bomb"])
    )
    headers: dict[str, str] = {}
    if encoding == "gzip":
        body, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
    elif encoding == "bomb":
        body, headers = gzip.compress(b"\0" * (32 << 20), 1), {"Content-Encoding": "gzip"}
    elif encoding:
        headers = {"Content-Encoding": encoding.removesuffix("-bogus")}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(
            st.sampled_from(
                ["text/html", "application/octet-stream", "nonsense", "text/plain; charset=ebcdic"]
            )
        )
    return endpoint, body, headers


# --------------------------------------------------------------------------- checks


def request_path(mv: ModuleVersion, endpoint: str) -> str:
    if endpoint == "list":
        return f"/{mv.path}/@v/list"
    if endpoint == "latest":
        return f"/{mv.path}/@latest"
    return f"/{mv.path}/@v/{V}.{endpoint}"


def fetch(world: World, server: InProcessGomirror, path: str) -> RawResponse:
    """GET path while another thread keeps asking /healthz; records the slowest /healthz."""
    done = threading.Event()
    worst = [0.0]

    def ping() -> None:
        while True:
            started = time.monotonic()
            r = raw_request(server.port, get_request(b"/healthz"), timeout=10)
            worst[0] = max(worst[0], time.monotonic() - started)
            assert r.status == 200
            if done.wait(0.02):  # the probe's pace; it ends as soon as the fetch is done
                return

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    try:
        return raw_request(server.port, get_request(path.encode()), timeout=120)
    finally:
        done.set()
        pinger.join(30)
        world.healthz_worst = max(world.healthz_worst, worst[0])


def check_common(
    world: World, server: InProcessGomirror, r: RawResponse, path: str, started: float
) -> None:
    assert r.status != 0, f"no answer for {path}"
    assert r.status != 500, f"500 for {path}: {r.body[:300]!r}"
    if r.status >= 500:
        assert r.status in (502, 504), (path, r.status, r.body[:300])
    assert not server.errors, server.errors
    failed = failed_requests([world.honest], started)
    assert not failed, f"the honest mirror failed: test broken: {failed}"


def zip_files(data: bytes) -> list[tuple[str, bytes]]:
    """The files of a zip as the go command reads them: names from the central directory,
    each entry's data found through its local header (whose own name Go ignores)."""
    out = []
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            off = info.header_offset
            name_len, extra_len = struct.unpack("<HH", data[off + 26 : off + 30])
            start = off + 30 + name_len + extra_len
            raw = data[start : start + info.compress_size]
            if info.compress_type == zipfile.ZIP_DEFLATED:
                raw = zlib.decompress(raw, -15)
            out.append((info.filename, raw))
    return sorted(out)


def check_served(mv: ModuleVersion, endpoint: str, r: RawResponse) -> None:
    if r.status != 200:
        return
    if endpoint == "mod":
        assert r.body == mv.mod, f"served a .mod that is not the honest one: {r.body[:200]!r}"
    elif endpoint == "zip":
        # Mirrors may re-zip: the bytes can differ, the files (names and content) cannot.
        assert zip_files(r.body) == zip_files(mv.zip), (
            "served a zip whose files are not the honest ones"
        )
    elif endpoint == "info":
        obj = json.loads(r.body)
        assert isinstance(obj, dict) and obj.get("Version") == V, r.body[:200]
    elif endpoint == "latest":
        obj = json.loads(r.body)
        assert isinstance(obj, dict) and isinstance(obj.get("Version"), str), r.body[:200]
        assert CANONICAL.fullmatch(obj["Version"]), r.body[:200]
        assert obj["Version"].startswith(("v0.", "v1.")), r.body[:200]  # no /vN suffix on the path
    else:
        text = r.body.decode("utf-8")
        assert "\x00" not in text


def check_cache(cache: Path, mv: ModuleVersion) -> None:
    """Nothing but honest .mod/.zip bytes (and a sane .info) is stored for the module."""
    vdir = cache / mv.path / "@v"
    mod, zipf, info = vdir / f"{V}.mod", vdir / f"{V}.zip", vdir / f"{V}.info"
    if mod.exists():
        assert mod.read_bytes() == mv.mod, "a bad .mod was cached"
    if zipf.exists():
        assert zip_files(zipf.read_bytes()) == zip_files(mv.zip), "a bad zip was cached"
    if info.exists():
        obj = json.loads(info.read_bytes())
        assert isinstance(obj, dict) and obj.get("Version") == V, "a bad .info was cached"


def check_status_pages(server: InProcessGomirror) -> None:
    """The status page and its JSON still render after whatever the hostile mirror sent."""
    for path in (b"/", b"/-/status.json"):
        r = raw_request(server.port, get_request(path))
        assert r.status == 200, (
            f"{path.decode()}: {r.status} {r.body[:200]!r} ({server.errors[-1:]})"
        )
    json.loads(raw_request(server.port, get_request(b"/-/status.json")).body)
    assert not server.errors, server.errors


# --------------------------------------------------------------------------- the test


@FUZZ
@given(data=st.data())
def test_hostile_mirror_answers_never_get_served(
    world: World, figures: Figures, data: st.DataObject
) -> None:
    mv = world.fresh_module()
    endpoint, body, headers = data.draw(hostile_answers(mv), label="hostile answer")
    path = request_path(mv, endpoint)
    rule = world.hostile.add_fault(path, replace_body=body, headers=headers)
    try:
        started = time.monotonic()
        solo = fetch(world, world.solo, path)
        check_common(world, world.solo, solo, path, started)
        check_served(mv, endpoint, solo)

        chained = fetch(world, world.chained, path)
        check_common(world, world.chained, chained, path, started)
        assert chained.status == 200, f"A,B: {chained.status} for {path}: {chained.body[:300]!r}"
        check_served(mv, endpoint, chained)
        assert rule.hits >= 2, "the hostile mirror was not asked by both servers"
    finally:
        world.hostile.remove_fault(rule)
    check_cache(world.solo.cfg.cache.cache_dir, mv)
    check_cache(world.chained.cfg.cache.cache_dir, mv)
    if int(mv.path[-5:]) % 10 == 0:  # they show what mirrors sent (the last 50 events)
        check_status_pages(world.solo)
        check_status_pages(world.chained)
    figures.add(f"cases: hostile {endpoint}")
    figures.add("cases: hostile upstream answers")
    figures.add("requests fuzzed", 2)
    assert world.healthz_worst < HEALTHZ_MAX_SECONDS, f"/healthz took {world.healthz_worst:.2f}s"
    figures.put("healthz worst seconds during hostile answers", round(world.healthz_worst, 3))


def test_honest_content_still_flows_after_fuzzing(world: World) -> None:
    check_status_pages(world.solo)
    check_status_pages(world.chained)
    mv = world.fresh_module()
    for endpoint in ("info", "mod", "zip"):
        for server in (world.solo, world.chained):
            r = raw_request(server.port, get_request(request_path(mv, endpoint).encode()))
            assert r.status == 200, (endpoint, r.status, r.body[:200])
            check_served(mv, endpoint, r)


def test_a_zip_with_a_non_utf8_file_name_does_not_break_the_status_page(world: World) -> None:
    """One case the fuzzer finds only sometimes, pinned: a raw 0x8b byte in a zip entry name."""
    mv = world.fresh_module()
    path = request_path(mv, "zip")
    evil = mv.zip.replace(f"{mv.path}@{V}/a.go".encode(), f"{mv.path}@{V}/".encode() + b"\x8b.go")
    rule = world.hostile.add_fault(path, replace_body=evil)
    try:
        r = raw_request(world.solo.port, get_request(path.encode()))
        assert r.status == 502, (r.status, r.body[:200])
    finally:
        world.hostile.remove_fault(rule)
    check_status_pages(world.solo)
