"""test_support_gorunner drives the real go command against the simulator and file trees.

It proves the support layer end to end: the go command downloads from the simulator with
GOSUMDB=off, computes the same h1 values as the corpus helpers and vectors.json, shows the
simulator's 404 text, and fails the way a real client would when faults are injected.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus, build_zip, h1_zip
from support.gorunner import GoCommandError, GoRunner, go_binary, parse_json_stream
from support.simulator import UpstreamSimulator
from support.vectors import group

PSEUDO = "v0.0.0-20200102030405-abcdefabcdef"


@pytest.fixture
def corpus() -> Corpus:
    gosum = group("gosum")["modules"]
    c = Corpus.from_go_testdata(only={m["module"] for m in gosum} | {"rsc.io/QUOTE"})
    c.synthetic_module("example.com/Big", "v1.2.3", 1_500_000, 8, seed=42)
    c.add_module("example.com/notags", PSEUDO, {"n.go": b"package notags\n"})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror-1") as s:
        yield s


@pytest.fixture
def go(tmp_path: Path, sim: UpstreamSimulator) -> GoRunner:
    return GoRunner(tmp_path, sim.url)


def test_environment_is_isolated(go: GoRunner, sim: UpstreamSimulator, tmp_path: Path) -> None:
    assert Path(go_binary()).is_file()
    env = json.loads(go.run("env", "-json").stdout)
    assert env["GOPROXY"] == sim.url
    assert env["GOSUMDB"] == "off"
    assert env["GOTOOLCHAIN"] == "local"
    assert env["GOFLAGS"] == "-modcacherw"
    assert env["GOINSECURE"] == "" and env["GOPRIVATE"] == ""
    for key in ("GOMODCACHE", "GOCACHE", "GOPATH"):
        assert Path(env[key]).is_relative_to(tmp_path), key
    assert parse_json_stream('{"a": 1}\n{"b": [2]}\n') == [{"a": 1}, {"b": [2]}]


def test_go_downloads_testdata_modules_with_vector_hashes(
    go: GoRunner, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    modules = group("gosum")["modules"]
    results = go.mod_download_json(*(f"{m['module']}@{m['version']}" for m in modules))
    by_key = {(r["Path"], r["Version"]): r for r in results}
    for m in modules:
        r = by_key[(m["module"], m["version"])]
        assert "Error" not in r
        mv = corpus[m["module"], m["version"]]
        assert r["Sum"] == m["testdata_h1"] == mv.h1
        assert r["GoModSum"] == m["testdata_go_mod_h1"] == mv.gomod_h1
        assert go.modcache_file(m["module"], m["version"], "zip").read_bytes() == mv.zip
        assert go.modcache_file(m["module"], m["version"], "ziphash").read_text() == mv.h1
    # The go command only used our simulator, and identified itself.
    assert sim.count("*.zip") == len(modules)
    assert all(r.headers.get("User-Agent", "").startswith("GoCommand/") for r in sim.requests)


def test_go_downloads_synthetic_module_with_upper_case_path(
    go: GoRunner, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    mv = corpus["example.com/Big", "v1.2.3"]
    (r,) = go.mod_download_json("example.com/Big@v1.2.3")
    assert r["Sum"] == mv.h1 and r["GoModSum"] == mv.gomod_h1
    assert Path(r["Zip"]) == go.modcache_file("example.com/Big", "v1.2.3", ".zip")
    assert Path(r["Dir"]) == go.modcache_dir("example.com/Big", "v1.2.3")
    assert (Path(r["Dir"]) / "data" / "f0000.bin").stat().st_size == 1_500_000 // 8
    (zip_req,) = sim.requests_for("*.zip")
    assert zip_req.raw_path == "/example.com/%21big/@v/v1.2.3.zip"
    assert zip_req.path == "/example.com/!big/@v/v1.2.3.zip"


def test_go_list_versions_and_queries(go: GoRunner, sim: UpstreamSimulator) -> None:
    versions = go.list_versions("rsc.io/quote")
    assert versions[-2:] == ["v1.5.2", "v1.5.3-pre1"] and "v1.0.0" in versions
    assert sim.count("/rsc.io/quote/@v/list") >= 1
    sim.add_query("example.com/notags", "master", PSEUDO)
    (r,) = go.mod_download_json("example.com/notags@master")
    assert r["Version"] == PSEUDO
    (latest,) = go.mod_download_json("example.com/notags@latest")
    assert latest["Version"] == PSEUDO
    assert sim.count("/example.com/notags/@latest") == 1


def test_go_shows_the_simulator_404_body(go: GoRunner) -> None:
    proc = go.run("mod", "download", "rsc.io/nope@v1.0.0", check=False)
    assert proc.returncode != 0
    assert "404 Not Found" in proc.stderr
    assert "server response: not found: module rsc.io/nope@v1.0.0" in proc.stderr
    with pytest.raises(GoCommandError, match="404 Not Found"):
        go.run("mod", "download", "rsc.io/nope@v1.0.0")


def test_go_reports_injected_status(go: GoRunner, sim: UpstreamSimulator) -> None:
    sim.fail("*.zip", 500, "upstream exploded\n")
    (r,) = go.mod_download_json("rsc.io/quote@v1.5.2", check=False)
    assert "500 Internal Server Error" in r["Error"]
    assert "upstream exploded" in r["Error"]
    assert not go.modcache_file("rsc.io/quote", "v1.5.2", "zip").exists()


def test_go_fails_on_cut_connection(go: GoRunner, sim: UpstreamSimulator) -> None:
    sim.add_fault("*.zip", cut_after=4096)
    (r,) = go.mod_download_json("example.com/Big@v1.2.3", check=False)
    assert "Error" in r and "EOF" in r["Error"]
    assert sim.count("*.zip") == 1


def test_go_detects_tampered_zip_against_go_sum(
    tmp_path: Path, go: GoRunner, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    mv = corpus["rsc.io/quote", "v1.5.2"]
    work = tmp_path / "app"
    go.init_module(work, "example.com/app", requires={"rsc.io/quote": "v1.5.2"})
    (work / "go.sum").write_text("\n".join(mv.go_sum_lines()) + "\n")
    evil = build_zip([(n, d + b"// evil\n" if n.endswith("quote.go") else d) for n, d in mv.files])
    sim.add_fault("/rsc.io/quote/@v/v1.5.2.zip", replace_body=evil)
    proc = go.run("mod", "download", "rsc.io/quote", cwd=work, check=False)
    assert proc.returncode != 0
    assert "checksum mismatch" in proc.stderr and "SECURITY ERROR" in proc.stderr
    assert f"downloaded: {h1_zip(evil)}" in proc.stderr
    assert not go.modcache_file("rsc.io/quote", "v1.5.2", "zip").exists()
    sim.clear_faults()
    sim.add_fault(
        "/rsc.io/quote/@v/v1.5.2.zip", replace_body=corpus["rsc.io/sampler", "v1.3.0"].zip
    )
    proc = go.run("mod", "download", "rsc.io/quote", cwd=work, check=False)
    assert "unexpected file rsc.io/sampler@v1.3.0/" in proc.stderr


def test_go_latency_is_observed(go: GoRunner, sim: UpstreamSimulator) -> None:
    sim.add_fault("*.info", latency=0.3)
    t0 = time.monotonic()
    go.mod_download_json("rsc.io/sampler@v1.3.0")
    assert time.monotonic() - t0 >= 0.3
    (info,) = sim.requests_for("*.info")
    (mod,) = sim.requests_for("*.mod")
    assert mod.monotonic - info.monotonic >= 0.3


def test_go_against_dead_mirror_and_fallback(tmp_path: Path, corpus: Corpus) -> None:
    with UpstreamSimulator(Corpus(), name="empty") as first, UpstreamSimulator(corpus) as second:
        go = GoRunner(tmp_path, f"{first.url},{second.url}")
        (r,) = go.mod_download_json("rsc.io/sampler@v1.3.0")
        assert "Error" not in r
        assert first.count("/rsc.io/sampler/@v/v1.3.0.info") == 1  # 404 then fallback
        assert second.count("/rsc.io/sampler/@v/v1.3.0.zip") == 1
        first.set_down()
        (r,) = go.mod_download_json("rsc.io/quote@v1.5.2", check=False)
        assert "connection refused" in r["Error"]
        assert second.count("/rsc.io/quote/*") == 0  # a refused connection is no 404


def test_go_walks_a_synthetic_graph(tmp_path: Path) -> None:
    corpus = Corpus()
    # go 1.16 go.mod files are not pruned, so the whole graph is loaded.
    paths = corpus.synthetic_graph(6, prefix="example.com/g", fanout=2, seed=5, go_version="1.16")
    with UpstreamSimulator(corpus) as sim:
        go = GoRunner(tmp_path, sim.url)
        work = tmp_path / "app"
        go.init_module(work, "example.com/app", requires={paths[0]: "v1.0.0"})
        go.run("mod", "download", "-json", "all", cwd=work)
        listed = go.run("list", "-m", "all", cwd=work).stdout.split("\n")
        assert {f"{p} v1.0.0" for p in paths} <= set(listed)
        assert {r.path for r in sim.requests_for("*.mod")} == {f"/{p}/@v/v1.0.0.mod" for p in paths}


def test_go_reads_a_written_file_tree(tmp_path: Path, corpus: Corpus) -> None:
    root = corpus.write_tree(tmp_path / "tree")
    go = GoRunner(tmp_path, root.as_uri())
    (r,) = go.mod_download_json("rsc.io/QUOTE@v1.5.3-PRE")
    assert r["Sum"] == corpus["rsc.io/QUOTE", "v1.5.3-PRE"].h1
    assert go.list_versions("rsc.io/quote")[-1] == "v1.5.3-pre1"
