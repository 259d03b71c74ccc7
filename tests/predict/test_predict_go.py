"""Prediction with the real go command: a ``gomirror serve`` subprocess in front of an UpstreamSimulator.

The go command's results with prediction on equal those with it off, and every
file reaches the mirror once; a private module named in a public go.mod is
never asked of the mirror. Waits poll a condition with a deadline, never sleep.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import Corpus
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator

ROOT_PREFIX = "example.com/pg"
PUB = "example.com/pub"
DEP = "example.com/pubdep"
SECRET = "corp.example.com/secret"
V = "v1.0.0"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.synthetic_graph(8, prefix=ROOT_PREFIX, fanout=2, seed=3, go_version="1.16")
    # The mirror would serve the private module too: a leak would succeed silently.
    c.add_module(SECRET, V, {"s.go": b"package secret\n"})
    c.add_module(DEP, V, {"d.go": b"package pubdep\n"})
    c.add_module(
        PUB,
        V,
        {"p.go": b"package pub\n"},
        gomod=f"module {PUB}\n\ngo 1.16\n\nrequire (\n\t{SECRET} {V}\n\t{DEP} {V}\n)\n".encode(),
    )
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus) as s:
        yield s


def until(cond: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition, with a deadline


def metric(gm: GomirrorProcess, name: str) -> float:
    _, _, body = gm.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def summary(objs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (o.get("Path"), o.get("Version"), o.get("Sum"), o.get("GoModSum"), o.get("Error"))
        for o in objs
    )


def test_go_mod_download_is_the_same_with_prediction_on_and_off(
    tmp_path: Path, sim: UpstreamSimulator
) -> None:
    results: dict[str, list[tuple[Any, ...]]] = {}
    for mode in ("off", "mod+info+zip"):
        d = tmp_path / mode.replace("+", "-")
        d.mkdir()
        sim.clear()
        with GomirrorProcess(d, upstream=sim.url, env={"GOMIRROR_PREDICT": mode}) as gm:
            go = GoRunner(d / "go", gm.url)
            work = d / "app"
            go.init_module(work, "example.com/app", "1.16", {f"{ROOT_PREFIX}/m000": V})
            results[mode] = summary(go.mod_download_json("all", cwd=work))
            paths = Counter(r.path for r in sim.requests)
            assert all(n == 1 for n in paths.values()), paths.most_common(3)  # one fetch per file
            hits = metric(gm, 'gomirror_predict_total{outcome="hit"}')
            if mode == "off":
                assert hits == 0
            else:
                assert hits > 0  # the go command got predicted files
    assert results["off"] == results["mod+info+zip"]
    assert len(results["off"]) == 8 and all(r[4] is None for r in results["off"])


def test_a_private_requirement_is_never_asked_of_the_mirror(
    tmp_path: Path, sim: UpstreamSimulator
) -> None:
    env = {
        "GOMIRROR_PREDICT": "mod+info+zip",
        # Should direct mode ever be asked, it fails locally instead of reaching out.
        "GOMIRROR_DIRECT_RULES": f"{SECRET}=file://{tmp_path}/no-such-repo",
    }
    with GomirrorProcess(
        tmp_path, upstream=sim.url, env=env, extra_args=["--private", "corp.example.com"]
    ) as gm:
        go = GoRunner(tmp_path / "go", gm.url)
        objs = go.mod_download_json(f"{PUB}@{V}")
        assert objs[0].get("Error") is None and objs[0]["Version"] == V
        # The public requirement is predicted; the private one, offered in the same
        # walk, was decided before that request left.
        until(lambda: sim.count(f"/{DEP}/@v/{V}.info") == 1, "the predicted public requirement")
        until(lambda: metric(gm, 'gomirror_predict_total{outcome="skipped"}') > 0, "a skip")
        assert not [r.path for r in sim.requests if "corp.example.com" in r.path]
        assert "corp.example.com" not in gm.log()  # no attempt anywhere, direct included
