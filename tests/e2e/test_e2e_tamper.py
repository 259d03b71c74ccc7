"""test_e2e_tamper puts gomirror behind dishonest mirrors and checks only honest bytes get through.

Four ``UpstreamSimulator`` mirrors serve Go's testdata graph (rsc.io/quote
v1.5.2 → rsc.io/sampler → golang.org/x/text); three of them tamper with
rsc.io/quote v1.5.2: one flips a byte of the zip and of the go.mod, one serves
a different go.mod (alone and inside the zip), one serves a zip with an extra
file (and a go.mod with an extra line). The honest mirror is last in the list.
A ``TestSumdb`` records the honest hashes. The real go command, with the test
key as GOSUMDB (verifying through gomirror's pass-through) and no go.sum, must
succeed without any checksum error, gomirror must record a tamper event per
rejected answer naming the mirror, and with only dishonest mirrors the go
command must fail with gomirror's checksum-mismatch text while nothing is
cached for that version.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus, build_zip, h1_mod, h1_zip
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb

pytestmark = pytest.mark.e2e

QUOTE, V = "rsc.io/quote", "v1.5.2"
GRAPH = [
    (QUOTE, V),
    ("rsc.io/sampler", "v1.3.0"),
    ("golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c"),
]
ZIP_PATH = f"/{QUOTE}/@v/{V}.zip"
MOD_PATH = f"/{QUOTE}/@v/{V}.mod"


@dataclasses.dataclass
class Mirrors:
    corpus: Corpus
    db: TestSumdb
    honest: UpstreamSimulator
    bad_mod: UpstreamSimulator
    bad_flip: UpstreamSimulator
    bad_extra: UpstreamSimulator
    evil_mod: bytes
    extra_mod: bytes
    extra_zip: bytes

    @property
    def dishonest(self) -> list[UpstreamSimulator]:
        return [self.bad_mod, self.bad_flip, self.bad_extra]


@pytest.fixture(scope="module")
def mirrors() -> Iterator[Mirrors]:
    corpus = Corpus.from_go_testdata(only=[m for m, _ in GRAPH])
    mv = corpus[(QUOTE, V)]
    assert mv.mod is not None
    prefix = f"{QUOTE}@{V}/"
    evil_mod = mv.mod + b"\nrequire rsc.io/evil v1.0.0\n"
    evil_zip = build_zip(
        [(n, evil_mod if n == prefix + "go.mod" else d) for n, d in mv.files]
        + (
            []
            if any(n == prefix + "go.mod" for n, _ in mv.files)
            else [(prefix + "go.mod", evil_mod)]
        )
    )
    extra_zip = build_zip(
        [*mv.files, (prefix + "backdoor.go", b"package quote\n\nvar Owned = 1\n")]
    )
    extra_mod = mv.mod + b"// extra\n"

    def source(module: str, version: str) -> tuple[str, str] | None:
        found = corpus.get(module, version)
        return None if found is None else (found.h1, found.gomod_h1)

    db = TestSumdb(source=source)
    sims = {n: UpstreamSimulator(corpus, name=n) for n in ("honest", "mod", "flip", "extra")}
    sims["mod"].add_fault(MOD_PATH, replace_body=evil_mod)
    sims["mod"].add_fault(ZIP_PATH, replace_body=evil_zip)
    sims["flip"].add_fault(MOD_PATH, flip_byte=len(b"module "))
    sims["flip"].add_fault(ZIP_PATH, flip_byte=-40)  # inside the central directory
    sims["extra"].add_fault(MOD_PATH, replace_body=extra_mod)
    sims["extra"].add_fault(ZIP_PATH, replace_body=extra_zip)
    with db:
        for s in sims.values():
            s.start()
        try:
            yield Mirrors(
                corpus,
                db,
                sims["honest"],
                sims["mod"],
                sims["flip"],
                sims["extra"],
                evil_mod,
                extra_mod,
                extra_zip,
            )
        finally:
            for s in sims.values():
                s.stop()


def start_mirror(
    tmp: Path, m: Mirrors, upstreams: list[UpstreamSimulator], *, untrusted_for: float = 0.0
) -> GomirrorProcess:
    """A gomirror over upstreams; by default a tampering mirror is asked again every time
    (``untrusted_for = 0``) so every tamper of every file is seen and recorded."""
    (tmp / "mirror").mkdir()
    return GomirrorProcess(
        tmp / "mirror",
        upstream=",".join(s.url for s in upstreams),
        sumdb=f"{m.db.verifier_key} {m.db.url}",
        env={"GOMIRROR_UNTRUSTED_FOR": str(untrusted_for)},
    ).start()


def events(cache: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((cache / "_gomirror/events").rglob("*.json"))]


def test_only_honest_content_is_served(tmp_path: Path, mirrors: Mirrors) -> None:
    m = mirrors
    mirror = start_mirror(tmp_path, m, [*m.dishonest, m.honest])
    try:
        go = GoRunner(tmp_path / "go", mirror.url, sumdb=TEST_VERIFIER_KEY)
        app = tmp_path / "app"
        go.init_module(app, "example.com/app")
        proc = go.run("get", f"{QUOTE}@{V}", cwd=app)
        assert "checksum" not in proc.stderr.lower() and "SECURITY" not in proc.stderr
        go_sum = set((app / "go.sum").read_text().splitlines())
        for path, version in GRAPH:
            assert set(m.corpus[(path, version)].go_sum_lines()) <= go_sum, go_sum
        verify = go.run("mod", "verify", cwd=app)
        assert "all modules verified" in verify.stdout, verify.stdout

        cache = mirror.cache_dir
        for ext in ("zip", "mod"):
            side = json.loads((cache / f"{QUOTE}/@v/{V}.{ext}.json").read_text())
            assert side["upstream"] == m.honest.url, side
            assert side["verdict"]["verified"] is True
        assert (cache / f"{QUOTE}/@v/{V}.mod").read_bytes() == m.corpus[(QUOTE, V)].mod

        evs = events(cache)
        by_upstream: dict[object, list[dict[str, object]]] = {}
        for ev in evs:
            assert ev["module"] == QUOTE and ev["version"] == V, ev
            by_upstream.setdefault(ev["upstream"], []).append(ev)
        assert set(by_upstream) == {s.url for s in m.dishonest}, evs
        for bad in m.dishonest:
            assert {e["file"] for e in by_upstream[bad.url]} == {"zip", "mod"}, by_upstream
        honest = m.corpus[(QUOTE, V)]
        mod_mismatch = next(e for e in by_upstream[m.bad_mod.url] if e["file"] == "mod")
        assert mod_mismatch["kind"] == "checksum_mismatch"
        assert mod_mismatch["expected"] == honest.gomod_h1
        assert mod_mismatch["got"] == h1_mod(m.evil_mod)
        extra = next(e for e in by_upstream[m.bad_extra.url] if e["file"] == "zip")
        assert extra["kind"] == "checksum_mismatch"
        assert (extra["expected"], extra["got"]) == (honest.h1, h1_zip(m.extra_zip))

        status, _, body = mirror.get("/metrics")
        assert status == 200
        metrics = body.decode()
        for bad in m.dishonest:
            pat = rf'gomirror_tamper_events_total\{{[^}}]*upstream="{re.escape(bad.url)}"[^}}]*\}} ([0-9.]+)'
            counts = [float(x) for x in re.findall(pat, metrics)]
            assert sum(counts) == 2.0, (bad.url, metrics)
        assert f'upstream="{m.honest.url}"' not in "".join(
            ln for ln in metrics.splitlines() if ln.startswith("gomirror_tamper_events_total")
        )
    finally:
        mirror.stop()


def test_only_dishonest_mirrors_fail_with_mismatch(tmp_path: Path, mirrors: Mirrors) -> None:
    m = mirrors
    mirror = start_mirror(tmp_path, m, [m.bad_mod, m.bad_extra])
    try:
        honest = m.corpus[(QUOTE, V)]
        go = GoRunner(tmp_path / "go", mirror.url, sumdb=TEST_VERIFIER_KEY)
        proc = go.run("mod", "download", "-json", f"{QUOTE}@{V}", check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "checksum mismatch" in out, out
        assert honest.gomod_h1 in out and h1_mod(m.extra_mod) in out, out

        status, _, body = mirror.get(ZIP_PATH)
        text = body.decode()
        assert status == 502, text
        assert text.startswith(f"checksum mismatch for {QUOTE}@{V}: sumdb has {honest.h1}"), text
        assert h1_zip(m.extra_zip) in text, text

        vdir = mirror.cache_dir / QUOTE / "@v"
        cached = sorted(p.name for p in vdir.iterdir()) if vdir.exists() else []
        assert not [n for n in cached if n.startswith(V + ".zip") or n.startswith(V + ".mod")], (
            cached
        )
        assert not go.modcache_file(QUOTE, V, "zip").exists()
    finally:
        mirror.stop()


def test_a_tampering_mirror_is_not_asked_again_while_a_trusted_one_answers(
    tmp_path: Path, mirrors: Mirrors
) -> None:
    """After a checksum mismatch the mirror is `untrusted`: later files come from the honest one."""
    m = mirrors
    for s in (m.bad_mod, m.honest):
        s.clear()
    mirror = start_mirror(tmp_path, m, [m.bad_mod, m.honest], untrusted_for=3600)
    try:
        go = GoRunner(tmp_path / "go", mirror.url, sumdb=TEST_VERIFIER_KEY)
        app = tmp_path / "app"
        go.init_module(app, "example.com/app")
        go.run("get", f"{QUOTE}@{V}", cwd=app)
        first_bad = [r.path for r in m.bad_mod.requests if r.path.endswith((".zip", ".mod"))]
        # It served one tampered file, and was asked for nothing after that.
        assert len(first_bad) == 1, first_bad
        status, _, body = mirror.get("/metrics")
        assert status == 200
        assert b"checksum_mismatch" in body
    finally:
        mirror.stop()
