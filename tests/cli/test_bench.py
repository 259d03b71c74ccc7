"""test_bench runs ``gomirror bench`` against loopback mirrors that differ in speed and honesty.

Four ``UpstreamSimulator`` mirrors serve one small corpus: ``fast``, which
also carries a ``TestSumdb`` under ``/sumdb/<name>/``; ``slow`` (every answer
delayed); ``tamper``, which serves a ``.mod`` the checksum database
contradicts; and ``dead`` (nothing listens). The benchmark must call each
by its name, recommend ``fast|slow,direct`` (never the tampering or dead
one), report that only ``fast`` proxies the checksum database, and exit 1
because a mirror tampers; without the bad ones it exits 0.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from support.corpus import Corpus
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TestSumdb

LIB, UTIL = "example.com/lib", "example.com/util"
SLOW_LATENCY = 0.2


@dataclasses.dataclass
class Mirrors:
    fast: UpstreamSimulator
    slow: UpstreamSimulator
    tamper: UpstreamSimulator
    dead: UpstreamSimulator
    db: TestSumdb
    corpus: Corpus

    def bench(
        self, *mirrors: UpstreamSimulator, extra: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gomirror.cli.main",
                "bench",
                *(m.url for m in mirrors),
                "--module",
                LIB,
                "--module",
                UTIL,
                "--rounds",
                "2",
                "--slow",
                str(SLOW_LATENCY / 2),
                "--timeout",
                "5",
                "--upstream",
                "off",
                "--sumdb",
                f"{self.db.verifier_key} {self.fast.url}/sumdb/{self.db.name}",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


@pytest.fixture
def mirrors() -> Iterator[Mirrors]:
    corpus = Corpus()
    for v in ("v1.0.0", "v1.1.0"):
        corpus.synthetic_module(LIB, v, 32 << 10)
    corpus.synthetic_module(UTIL, "v1.0.0", 4 << 10)

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)

    async def sumdb(request: web.Request) -> web.Response:
        sub = request[SUBPATH]
        if sub == "/supported":
            return web.Response(text="")
        a = db.answer(sub)
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    sims = [UpstreamSimulator(corpus, name=n) for n in ("fast", "slow", "tamper", "dead")]
    for s in sims:
        s.start()
    fast, slow, tamper, dead = sims
    try:
        fast.mount(f"/sumdb/{db.name}", sumdb)
        slow.add_fault("*", latency=SLOW_LATENCY)
        tamper.add_fault(
            f"/{LIB}/@v/v1.1.0.mod",
            replace_body=b"module example.com/lib\n\nrequire evil.example v1.0.0\n",
        )
        dead.set_down(True)
        yield Mirrors(fast, slow, tamper, dead, db, corpus)
    finally:
        for s in sims:
            s.stop()


def by_url(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["url"]: m for m in rep["mirrors"]}


def test_names_slow_and_tampering_mirrors_and_recommends(mirrors: Mirrors) -> None:
    m = mirrors
    proc = m.bench(m.fast, m.slow, m.tamper, m.dead, extra=("--json",))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["recommended_goproxy"] == f"GOPROXY={m.fast.url}|{m.slow.url},direct"
    assert rep["recommended_upstream"] == f"{m.fast.url}|{m.slow.url}"
    assert rep["reference"] == {LIB: "v1.1.0", UTIL: "v1.0.0"}
    got = by_url(rep)
    verdicts = {url: r["verdict"] for url, r in got.items()}
    assert verdicts == {
        m.fast.url: "good",
        m.slow.url: "slow",
        m.tamper.url: "tampered",
        m.dead.url: "dead",
    }
    bad = m.corpus[(LIB, "v1.1.0")].gomod_h1
    assert len(got[m.tamper.url]["disagreements"]) == 1
    assert got[m.tamper.url]["disagreements"][0].startswith(f"{LIB}@v1.1.0/go.mod: served h1:")
    assert got[m.tamper.url]["disagreements"][0].endswith(f"has {bad}")
    assert got[m.fast.url]["disagreements"] == []
    assert got[m.fast.url]["success_ratio"] == 1.0 and got[m.dead.url]["success_ratio"] == 0.0
    assert got[m.slow.url]["latency"]["mod"]["p50"] >= SLOW_LATENCY
    assert got[m.fast.url]["latency"]["mod"]["p50"] < SLOW_LATENCY
    # 2 modules × (list, latest, info, mod) + 1 zip, per round, after the discovery pass.
    assert got[m.fast.url]["requests"] == 2 * 2 + 2 * (2 * 4 + 1)
    assert got[m.fast.url]["zip_throughput"] > 0
    assert {u: r["sumdb"]["supported"] for u, r in got.items()} == {
        m.fast.url: True,
        m.slow.url: False,
        m.tamper.url: False,
        m.dead.url: False,
    }
    assert got[m.fast.url]["newest"] == {LIB: "v1.1.0", UTIL: "v1.0.0"}

    proc = m.bench(m.fast, m.slow, m.tamper, m.dead, extra=("--rounds", "1"))
    assert proc.returncode == 1
    out = proc.stdout
    assert f"TAMPERED {m.tamper.url}: {LIB}@v1.1.0/go.mod: served h1:" in out, out
    assert f"SLOW {m.slow.url}: median" in out, out
    assert f"DEAD {m.dead.url}: 0% of requests answered" in out, out
    assert f"  go env -w 'GOPROXY={m.fast.url}|{m.slow.url},direct'" in out.splitlines(), out
    assert f'  gomirror.toml: [upstream] upstream = "{m.fast.url}|{m.slow.url}"' in out, out


def test_honest_mirrors_exit_0(mirrors: Mirrors) -> None:
    m = mirrors
    proc = m.bench(m.slow, m.fast, extra=("--json", "--rounds", "1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["recommended"] == [m.fast.url, m.slow.url]  # ranked by speed, not by argument order


def test_usage_errors(mirrors: Mirrors) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gomirror.cli.main", "bench", "direct", "--sumdb", "off"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "not one (give a URL)" in proc.stderr
    proc = mirrors.bench(mirrors.fast, extra=("--module", "not a path"))
    assert proc.returncode == 2 and "invalid --module" in proc.stderr
