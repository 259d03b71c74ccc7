"""test_cli_verify runs ``gomirror verify`` on a cache filled by a real gomirror process.

A ``TestSumdb`` (cmd/go's test key) records Go's testdata graph; an honest
``UpstreamSimulator`` serves it; ``gomirror serve`` caches every ``.mod`` and
``.zip``. Then files are corrupted on disk: ``verify`` must report each one
(against the sidecar, or against the checksum database when the sidecar was
rewritten too), print the summary, exit 1, and with ``--quarantine`` move the
bad file and its sidecar under ``_gomirror/quarantine/``; the running gomirror
then fetches, verifies and serves the honest file again.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus, build_zip, h1_mod, h1_zip
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

GRAPH = [
    ("rsc.io/quote", "v1.5.2"),
    ("rsc.io/sampler", "v1.3.0"),
    ("golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c"),
]
QUOTE, V = GRAPH[0]


@dataclasses.dataclass
class World:
    corpus: Corpus
    db: TestSumdb
    mirror: GomirrorProcess

    @property
    def cache(self) -> Path:
        return self.mirror.cache_dir

    def verify(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gomirror.cli.main",
                "verify",
                "--cache-dir",
                str(self.cache),
                "--sumdb",
                f"{self.db.verifier_key} {self.db.url}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=self.mirror.env,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    corpus = Corpus.from_go_testdata(only=[m for m, _ in GRAPH])

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)
    (tmp_path / "mirror").mkdir()
    with db, UpstreamSimulator(corpus) as sim:
        mirror = GomirrorProcess(
            tmp_path / "mirror", upstream=sim.url, sumdb=f"{db.verifier_key} {db.url}"
        )
        with mirror:
            for path, version in GRAPH:
                for ext in ("mod", "zip"):
                    status, _, body = mirror.get(f"/{path}/@v/{version}.{ext}")
                    assert status == 200, body
            yield World(corpus, db, mirror)


def test_clean_cache_verifies(world: World) -> None:
    proc = world.verify()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "checked 6 files: 6 ok, 0 mismatched, 0 skipped"


def test_corrupt_zip_is_reported_quarantined_and_refetched(world: World) -> None:
    mv = world.corpus[(QUOTE, V)]
    key = f"{QUOTE}/@v/{V}.zip"
    bad = build_zip([*mv.files, (f"{QUOTE}@{V}/evil.go", b"package quote\n")])
    (world.cache / key).write_bytes(bad)

    proc = world.verify()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "checked 6 files: 5 ok, 1 mismatched, 0 skipped", proc.stdout
    problem = [ln for ln in lines if ln.startswith("MISMATCH")]
    assert problem == [
        f"MISMATCH {QUOTE}@{V}: cached file has {h1_zip(bad)}, recorded when cached: {mv.h1}"
    ], proc.stdout
    assert (world.cache / key).read_bytes() == bad  # no --quarantine: left in place

    proc = world.verify("--quarantine")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not (world.cache / key).exists()
    assert not (world.cache / (key + ".json")).exists()
    q = world.cache / "_gomirror" / "quarantine" / key
    assert q.read_bytes() == bad
    assert json.loads(Path(str(q) + ".json").read_text())["h1"] == mv.h1

    # The running gomirror no longer has the file: it refetches and re-verifies it.
    status, _, body = world.mirror.get(f"/{QUOTE}/@v/{V}.zip")
    assert status == 200
    assert h1_zip(body) == mv.h1
    assert json.loads((world.cache / (key + ".json")).read_text())["h1"] == mv.h1
    proc = world.verify()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "checked 6 files: 6 ok, 0 mismatched, 0 skipped"


def test_database_catches_rewritten_sidecar(world: World) -> None:
    path, version = GRAPH[1]
    key = f"{path}/@v/{version}.mod"
    evil = (world.cache / key).read_bytes() + b"require rsc.io/evil v1.0.0\n"
    (world.cache / key).write_bytes(evil)
    side = world.cache / (key + ".json")
    meta = json.loads(side.read_text())
    meta["h1"] = h1_mod(evil)
    side.write_text(json.dumps(meta))

    proc = world.verify("--quarantine")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    good = world.corpus[(path, version)].gomod_h1
    assert (
        f"MISMATCH {path}@{version}/go.mod: cached file has {h1_mod(evil)},"
        f" checksum database has {good}"
    ) in proc.stdout.splitlines(), proc.stdout
    assert proc.stdout.splitlines()[-1] == "checked 6 files: 5 ok, 1 mismatched, 0 skipped"
    assert not (world.cache / key).exists()
    status, _, body = world.mirror.get(f"/{path}/@v/{version}.mod")
    assert status == 200 and h1_mod(body) == good


def test_truncated_zip_is_invalid(world: World) -> None:
    path, version = GRAPH[2]
    key = f"{path}/@v/{version}.zip"
    data = (world.cache / key).read_bytes()
    (world.cache / key).write_bytes(data[: len(data) // 2])
    proc = world.verify()
    assert proc.returncode == 1
    assert any(
        ln.startswith(f"MISMATCH {path}@{version}: cached file is invalid")
        for ln in proc.stdout.splitlines()
    ), proc.stdout


def test_sumdb_off_only_checks_sidecars(world: World) -> None:
    world.db.clear_requests()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomirror.cli.main",
            "verify",
            "--cache-dir",
            str(world.cache),
            "--sumdb",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=world.mirror.env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "checked 6 files: 0 ok, 0 mismatched, 6 skipped"
    assert world.db.requests == []
