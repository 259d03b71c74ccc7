"""Shared fixtures for the end-to-end tests: corpus, simulators, gomirror processes, go runners.

``e2e_corpus`` (one per test module) is Go's testdata corpus plus synthetic modules:
a six-module graph under ``example.com/graph``, a case-encoded path
(``example.com/Upper/Case``), and ``example.com/big`` (a 1 MiB incompressible zip).
``start_sim`` starts an ``UpstreamSimulator`` (default: serving ``e2e_corpus``),
``start_gomirror`` a real ``gomirror serve`` subprocess with ``--sumdb off``, and
``go_runner`` a ``GoRunner`` with its own module cache; all are stopped at teardown.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator

GRAPH_PREFIX = "example.com/graph"
GRAPH_SIZE = 6
UPPER = "example.com/Upper/Case"
BIG = "example.com/big"
BIG_SIZE = 1 << 20

StartSim = Callable[..., UpstreamSimulator]
StartGomirror = Callable[..., GomirrorProcess]
MakeGo = Callable[[str], GoRunner]


def build_corpus() -> Corpus:
    corpus = Corpus.from_go_testdata()
    # go 1.16 modules are not pruned: the whole graph is in the build list.
    corpus.synthetic_graph(
        GRAPH_SIZE, prefix=GRAPH_PREFIX, versions=("v1.0.0", "v1.1.0"), go_version="1.16"
    )
    corpus.add_module(UPPER, "v1.0.0", {"case.go": b"package Case\n"})
    corpus.add_module(UPPER, "v1.1.0-Beta", {"case.go": b"package Case\n"})
    corpus.synthetic_module(BIG, "v1.0.0", BIG_SIZE, n_files=4)
    return corpus


@pytest.fixture(scope="module")
def e2e_corpus() -> Corpus:
    return build_corpus()


@pytest.fixture
def start_sim(e2e_corpus: Corpus) -> Iterator[StartSim]:
    started: list[UpstreamSimulator] = []
    names = itertools.count()

    def start(corpus: Corpus | None = None, name: str | None = None) -> UpstreamSimulator:
        sim = UpstreamSimulator(
            e2e_corpus if corpus is None else corpus, name=name or f"sim{next(names)}"
        )
        started.append(sim.start())
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def start_gomirror(tmp_path: Path) -> Iterator[StartGomirror]:
    started: list[GomirrorProcess] = []
    names = itertools.count()

    def start(
        upstream: str,
        *,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        cache_dir: Path | None = None,
    ) -> GomirrorProcess:
        d = tmp_path / f"gomirror{next(names)}"
        d.mkdir()
        proc = GomirrorProcess(
            d, upstream=upstream, env=env, extra_args=extra_args, cache_dir=cache_dir
        )
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def go_runner(tmp_path: Path) -> MakeGo:
    names = itertools.count()

    def make(proxy: str) -> GoRunner:
        return GoRunner(tmp_path / f"go{next(names)}", proxy)

    return make
