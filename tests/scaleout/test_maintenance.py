"""test_maintenance runs ``gomirror verify`` and ``gomirror cache gc`` against a bucket two instances are serving from.

Two gomirror processes share one S3 bucket (moto) and one Redis, with a test
checksum database; an ``UpstreamSimulator`` is their upstream. After every
module has been cached once, go-command-like clients keep downloading
(``.info`` → ``.mod`` → ``.zip``, random version, random instance, bytes
checked) while the CLI runs, as its own process with the same storage
settings: ``verify``, then ``cache gc --max-size`` (about half the cache),
then ``verify`` again. Checked: no client ever gets a non-200 answer, a cut
answer or wrong bytes (an evicted version is fetched from the upstream again);
both verify runs exit 0 with every file verified against the checksum
database; gc evicts something and the clients' refetches reach the upstream;
gc never removes the checksum database's state; when the load stops, every
verified module file (``.mod``, ``.zip``) in the bucket has its sidecar and
every sidecar its file; and a
final ``verify`` is clean. Also: ``verify --quarantine`` on the bucket moves a
tampered object and its sidecar under ``_gomirror/quarantine/``, and an
instance then fetches and verifies the file again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gomirror.storage.s3 import S3Settings, S3Storage
from scaleout.cluster import Cluster, download, file_path, http_get, wait_for
from support.corpus import Corpus, ModuleVersion
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

N_MODULES = 12
ZIP_BYTES = 40 << 10
CLIENTS = 3
FILE_EXTS = (".info", ".mod", ".zip")
STATE_PREFIXES = ("sumdb/", "_gomirror/sumdb/")


@pytest.fixture
def corpus() -> Corpus:
    c = Corpus()
    for i in range(N_MODULES):
        c.synthetic_module(f"example.com/maint/m{i:02d}", "v1.0.0", ZIP_BYTES, n_files=2, seed=i)
    return c


@pytest.fixture
def db(corpus: Corpus) -> Iterator[TestSumdb]:
    sumdb = TestSumdb()
    for mv in corpus:
        sumdb.add(mv.path, mv.version, mv.h1, mv.gomod_h1)
    with sumdb:
        yield sumdb


class Load:
    """Clients downloading random versions from random instances in a thread, until stopped."""

    def __init__(self, urls: list[str], mvs: list[ModuleVersion]) -> None:
        self.urls, self.mvs = urls, mvs
        self.problems: list[str] = []
        self.downloads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the clients did not stop"

    async def _main(self) -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, i) for i in range(CLIENTS)))

    async def _client(self, session: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            mv, url = rng.choice(self.mvs), rng.choice(self.urls)
            info, mod, zipped = await download(session, url, mv)
            what = f"{url} {mv.path}@{mv.version}"
            for name, got, want in (("mod", mod, mv.mod), ("zip", zipped, mv.zip)):
                if got.status != 200 or got.body != want:
                    self.problems.append(
                        f"{what} .{name}: {got.status} {len(got.body)} bytes {got.error}"
                    )
            if info.status != 200 or json.loads(info.body or b"{}").get("Version") != mv.version:
                self.problems.append(f"{what} .info: {info.status} {info.body[:100]!r}")
            self.downloads += 1


def run_cli(
    cluster: Cluster, tmp: Path, db: TestSumdb, upstream: str, *args: str, status: int = 0
) -> str:
    """One ``gomirror`` command on the cluster's bucket and Redis; its stdout, asserting its exit."""
    work = tmp / "cli"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOMIRROR_")}
    env.update(cluster.env("maintenance"))
    env.update(
        {
            "GOMIRROR_CACHE_DIR": str(work / "cache"),
            "GOMIRROR_UPSTREAM": upstream,
            "GOMIRROR_SUMDB": f"{db.verifier_key} {db.url}",
            "HOME": str(work / "home"),
        }
    )
    p = subprocess.run(
        [sys.executable, "-m", "gomirror.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == status, (
        f"gomirror {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    )
    return p.stdout


def bucket(cluster: Cluster) -> S3Storage:
    s3 = cluster.s3
    return S3Storage(
        S3Settings(
            bucket=s3.bucket,
            prefix=cluster.prefix,
            endpoint=s3.url,
            region=s3.region,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            addressing="path",
        )
    )


def bucket_keys(cluster: Cluster) -> set[str]:
    async def keys() -> set[str]:
        storage = bucket(cluster)
        try:
            return {k async for k in storage.keys()}  # noqa: SIM118 - an async iterator
        finally:
            await storage.close()

    return asyncio.run(keys())


def module_files(keys: set[str]) -> set[str]:
    return {k for k in keys if "/@v/" in k and k.endswith(FILE_EXTS) and not k.startswith("_")}


def assert_verified_all(out: str, at_least: int) -> None:
    summary = out.strip().splitlines()[-1]
    assert " 0 mismatched, 0 skipped" in summary, out
    ok = int(summary.split(": ")[1].split(" ok")[0])
    assert ok >= at_least, out


def test_verify_and_gc_run_against_the_bucket_while_two_instances_serve(
    cluster: Cluster, corpus: Corpus, db: TestSumdb, tmp_path: Path
) -> None:
    mvs = sorted(corpus, key=lambda mv: mv.path)
    with UpstreamSimulator(corpus, name="maint") as sim:
        sumdb = f"{db.verifier_key} {db.url}"
        instances: list[GomirrorProcess] = [
            cluster.instance(name, upstream=sim.url, sumdb=sumdb) for name in ("a", "b")
        ]
        urls = [gm.url for gm in instances]

        async def warm() -> None:
            async with aiohttp.ClientSession() as session:
                for mv in mvs:
                    got = await download(session, urls[0], mv)
                    assert [g.status for g in got] == [200, 200, 200], got
                    assert got[2].body == mv.zip

        asyncio.run(warm())
        assert sim.count("*.zip") == N_MODULES
        before = bucket_keys(cluster)
        files = module_files(before)
        assert len([k for k in files if k.endswith(".zip")]) == N_MODULES
        state = {k for k in before if k.startswith(STATE_PREFIXES)}
        assert state, sorted(before)  # the checksum database's tiles and tree head are shared

        with Load(urls, mvs) as load:
            first = run_cli(cluster, tmp_path, db, sim.url, "verify")
            assert_verified_all(first, at_least=2 * N_MODULES)  # every .zip and .mod
            total = N_MODULES * ZIP_BYTES
            gc_out = json.loads(
                run_cli(
                    cluster,
                    tmp_path,
                    db,
                    sim.url,
                    "cache",
                    "gc",
                    "--max-size",
                    str(total // 2),
                    "--json",
                )
            )
            assert gc_out["evicted"], gc_out
            assert gc_out["errors"] == [], gc_out
            evicted = {(v["module"], v["version"]) for v in gc_out["evicted"]}
            second = run_cli(cluster, tmp_path, db, sim.url, "verify")
            assert " 0 mismatched, 0 skipped" in second.strip().splitlines()[-1], second
            # Clients keep going until an evicted version was fetched from the upstream again.
            wait_for(
                lambda: sim.count("*.zip") > N_MODULES or bool(load.problems),
                "a client fetching an evicted version again",
                timeout=30,
            )
        assert load.problems == [], load.problems[:10]
        assert load.downloads > 0
        assert sim.count("*.zip") > N_MODULES
        assert {m for m, _ in evicted} <= {mv.path for mv in mvs}

        after = bucket_keys(cluster)
        assert state <= after, sorted(state - after)  # gc never touches the sumdb state
        files_after = module_files(after)
        sidecars = {k for k in after if k.endswith(tuple(e + ".json" for e in FILE_EXTS))}
        # .mod and .zip are verified, so stored with a sidecar; a .info has none.
        verified = {k for k in files_after if not k.endswith(".info")}
        assert {k + ".json" for k in verified} <= sidecars, "a file without its sidecar"
        assert {k.removesuffix(".json") for k in sidecars} <= files_after, (
            "a sidecar without its file"
        )
        final = run_cli(cluster, tmp_path, db, sim.url, "verify")
        assert_verified_all(
            final, at_least=len([k for k in files_after if not k.endswith(".info")])
        )


def test_verify_quarantines_a_tampered_object_and_the_instances_fetch_it_again(
    cluster: Cluster, corpus: Corpus, db: TestSumdb, tmp_path: Path
) -> None:
    mv = sorted(corpus, key=lambda mv: mv.path)[0]
    with UpstreamSimulator(corpus, name="maint") as sim:
        gm = cluster.instance("a", upstream=sim.url, sumdb=f"{db.verifier_key} {db.url}")
        key = file_path(mv, "mod").lstrip("/")
        assert http_get(gm.url + "/" + key) == (200, mv.mod)
        assert mv.mod is not None
        tampered = mv.mod + b"// tampered\n"

        async def tamper() -> None:
            storage = bucket(cluster)
            try:  # written by another process, without the sidecar's digest: served as is
                await storage.put_bytes(key, tampered)
            finally:
                await storage.close()

        asyncio.run(tamper())
        out = run_cli(cluster, tmp_path, db, sim.url, "verify", "--quarantine", status=1)
        assert f"MISMATCH {mv.path}@{mv.version}/go.mod" in out, out
        assert f"{key}: moved to _gomirror/quarantine/{key}" in out, out
        keys = bucket_keys(cluster)
        assert key not in keys and key + ".json" not in keys
        assert {f"_gomirror/quarantine/{key}", f"_gomirror/quarantine/{key}.json"} <= keys
        assert http_get(gm.url + "/" + key) == (200, mv.mod)
        # An instance without the good copy in memory fetches (and verifies) it again.
        fresh = cluster.instance("b", upstream=sim.url, sumdb=f"{db.verifier_key} {db.url}")
        assert http_get(fresh.url + "/" + key) == (200, mv.mod)
        assert sim.count("*.mod") == 2
