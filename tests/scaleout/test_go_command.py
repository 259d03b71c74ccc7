"""test_go_command has the real go command download through instances that share S3, and through an L1 → L2 chain.

Shared storage: the go command downloads a six-module graph through instance
1, then, with a fresh module cache, through instance 2, whose local cache
directory is empty: every file comes from S3 and the upstream simulator sees
no second request. Chain: an edge gomirror (L1, disk) whose upstream is a
central one (L2, on the shared bucket), whose upstream is the simulator, with
a test checksum database reachable by L1 only through L2's ``/sumdb/``
pass-through: ``go get`` through L1 verifies at the go command, at L1 and at
L2 (both sidecars say verified); a private module routed ``direct`` at L1
(from a local git repository) never reaches L2; and with the simulator down,
L1 still answers a list it has cached.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from scaleout.cluster import Cluster, http_get, metric, wait_for
from support.corpus import Corpus, escape_path, escape_version
from support.gitrepos import RepoBuilder
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb

GRAPH = "example.com/graph"
PRIVATE = "git.corp.example"
CORP = "git.corp.example/group/sub/proj"


def graph_corpus() -> tuple[Corpus, list[str]]:
    c = Corpus()
    paths = c.synthetic_graph(6, prefix=GRAPH, versions=("v1.0.0",), go_version="1.16")
    return c, paths


def go_get(go: GoRunner, app: Path, *targets: str) -> None:
    go.init_module(app, "example.com/app")
    go.run("get", *targets, cwd=app)
    go.run("mod", "download", cwd=app)


def test_a_graph_through_instance_1_then_instance_2_comes_from_s3(
    cluster: Cluster, tmp_path: Path
) -> None:
    corpus, paths = graph_corpus()
    with UpstreamSimulator(corpus, name="graph") as sim:
        one = cluster.instance("one", upstream=sim.url)
        two = cluster.instance("two", upstream=sim.url)
        go_get(GoRunner(tmp_path / "go1", one.url), tmp_path / "app1", f"{paths[0]}@v1.0.0")
        assert sim.count("*.zip") == len(paths)
        sim.clear()
        go2 = GoRunner(tmp_path / "go2", two.url)
        go_get(go2, tmp_path / "app2", f"{paths[0]}@v1.0.0")
        for p in paths:
            assert go2.modcache_file(p, "v1.0.0", "zip").is_file()
        assert sim.paths() == []  # all of it from the bucket
        # Instance 2 kept no module file locally: its cache dir holds only its own state.
        local = [f for f in two.cache_dir.rglob("*.zip") if "_gomirror" not in f.parts]
        assert local == []


def key(path: str, version: str, ext: str) -> str:
    return f"{escape_path(path)}/@v/{escape_version(version)}.{ext}"


def test_l1_l2_chain_verifies_at_both_levels_keeps_private_local_and_serves_stale(
    cluster: Cluster, tmp_path: Path
) -> None:
    corpus, paths = graph_corpus()
    db = TestSumdb()
    for mv in corpus:
        db.add(mv.path, mv.version, mv.h1, mv.gomod_h1)
    corp = RepoBuilder(tmp_path / "corp" / "group" / "sub" / "proj")
    corp.commit({"go.mod": f"module {CORP}\n\ngo 1.16\n", "p.go": "package proj\n"})
    corp.tag("v1.0.0")
    with db, UpstreamSimulator(corpus, name="origin") as sim:
        l2 = cluster.instance(
            "l2",
            upstream=sim.url,
            sumdb=f"{db.verifier_key} {db.url}",
            env={"GOMIRROR_MUTABLE_TTL": "0.5"},
        )
        (tmp_path / "l1").mkdir()
        l1 = GomirrorProcess(
            tmp_path / "l1",
            upstream=l2.url,
            sumdb=TEST_VERIFIER_KEY,  # no URL: through L2's /sumdb/ pass-through
            extra_args=["--private", PRIVATE],
            env={
                "GOMIRROR_MUTABLE_TTL": "0.5",
                "GOMIRROR_MONITOR": "false",
                "GOMIRROR_PREDICT": "off",
                "GOMIRROR_DIRECT_RULES": f"{PRIVATE}/*/*/*=file://{tmp_path}/corp/{{path}}",
            },
        )
        with l1:
            go = GoRunner(tmp_path / "go", l1.url, sumdb=TEST_VERIFIER_KEY, nosumdb=PRIVATE)
            app = tmp_path / "app"
            go_get(go, app, f"{paths[0]}@v1.0.0", f"{CORP}@v1.0.0")
            sums = set((app / "go.sum").read_text().splitlines())
            for mv in corpus:
                assert set(mv.go_sum_lines()) <= sums
            assert any(line.startswith(f"{CORP} v1.0.0 h1:") for line in sums)
            # L1 verified what it cached (its sidecar says so); L2 verified too (its metrics).
            side_file = l1.cache_dir / (key(paths[0], "v1.0.0", "zip") + ".json")
            side = json.loads(side_file.read_text())
            assert '"verified": true' in side_file.read_text() and l2.url in side["upstream"]
            assert f"/lookup/{paths[0]}@v1.0.0" in db.requests
            l2_metrics = http_get(l2.url + "/metrics")[1].decode()
            verified = metric(l2_metrics, "gomirror_verifications_total", result="verified")
            assert verified is not None and verified >= 2 * len(paths), l2_metrics
            assert metric(l2_metrics, "gomirror_verifications_total", result="failed") in (
                None,
                0.0,
            )
            assert f"path=/{escape_path(paths[0])}/@v/v1.0.0.zip " in l2.log()
            # The private module stayed at L1: L2 and the origin never saw its path.
            assert PRIVATE not in l2.log()
            assert not any(PRIVATE in p for p in sim.paths())
            assert not any(PRIVATE in r for r in db.requests)

            # Stale-if-error through the chain: the origin goes away, L1 still answers.
            list_path = f"/{escape_path(paths[1])}/@v/list"
            assert http_get(l1.url + list_path) == (200, b"v1.0.0\n")
            sim.set_down(True)
            wait_for(
                lambda: (
                    http_get(l1.url + list_path)[0] == 200
                    and "serving stale" in l1.log() + l2.log()
                ),
                "the chain serves its stale list once the copies are past the TTL",
            )
            status, body = http_get(l1.url + list_path)
            assert (status, body) == (200, b"v1.0.0\n")
            # ...and says so: L2's stale marker travels to L1's answer, never cached as fresh.
            wait_for(
                lambda: l2.url in (stale_header(l1.url + list_path) or ""),
                "L1 passes on L2's stale marker, naming L2",
            )
            with urllib.request.urlopen(l1.url + list_path, timeout=30) as r:
                assert r.headers["Cache-Control"] == "no-cache"


def stale_header(url: str) -> str | None:
    """The X-Gomirror-Stale header of a GET, or None when the answer is fresh."""
    with urllib.request.urlopen(url, timeout=30) as r:
        value: str | None = r.headers.get("X-Gomirror-Stale")
        return value
