"""test_replicate runs ``gomirror replicate`` between real S3 buckets (moto's server) and disk caches.

The source is filled the way production fills it: a real ``gomirror serve``
with ``storage = "s3"`` caches a module graph (six modules at two versions,
a case-encoded path, a 1 MiB zip) that the real go command downloads through
it from an ``UpstreamSimulator``, plus a version list and ``@latest``. Then:

- bucket → bucket: every module file and sidecar arrives byte for byte and
  nothing mutable or internal does; a re-run copies nothing; a gomirror on
  the target bucket with ``--upstream off`` serves the go command the whole
  graph with the right hashes;
- bucket → disk (the directory then works as ``GOPROXY=file://``) and disk →
  bucket named by ``config:FILE``;
- tampered files in the source (a different valid zip, an edited go.mod, a
  truncated zip) are refused and never reach the target; exit status 1;
- a run killed with SIGKILL mid-way leaves only whole, verified files, and
  the re-run copies exactly what is missing;
- a partial replica (writes failing after a few files) serves what it holds
  and falls back to its upstream for the rest, asking it for nothing it has;
- ``--watch`` picks up files added to the source and stops on SIGTERM;
- usage errors exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from gomirror.cli.main import main
from gomirror.errors import StorageError
from gomirror.storage.base import Storage
from gomirror.storage.s3 import S3Settings, S3Storage
from gomirror.tools.replicate import parse_key, replicate
from storage.s3server import S3Endpoint, S3Server
from support.corpus import Corpus, build_zip, escape_path, h1_mod, h1_zip
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.storagewrap import Passthrough

SRC_BUCKET, DST_BUCKET = "rep-src", "rep-dst"
SRC_PREFIX = "region-a/"
GRAPH = "example.com/graph"
BIG = "example.com/big"
UPPER = "example.com/Upper/Case"
VERSIONS = ("v1.0.0", "v1.1.0")
GRAPH_SIZE = 4
MODS = [f"{GRAPH}/m{i:03d}@{v}" for v in VERSIONS for i in range(GRAPH_SIZE)] + [
    f"{BIG}@v1.0.0",
    f"{UPPER}@v1.0.0",
]
N_FILES = 3 * len(MODS)  # .info, .mod, .zip each


def _corpus() -> Corpus:
    corpus = Corpus()
    corpus.synthetic_graph(GRAPH_SIZE, prefix=GRAPH, versions=VERSIONS, go_version="1.16")
    corpus.synthetic_module(BIG, "v1.0.0", 1 << 20, n_files=4)
    corpus.add_module(UPPER, "v1.0.0", {"case.go": b"package Case\n"})
    return corpus


@dataclass
class World:
    s3: S3Endpoint
    corpus: Corpus
    sim: UpstreamSimulator
    tmp: Path

    def s3_env(self) -> dict[str, str]:
        return {
            "GOMIRROR_S3_ENDPOINT": self.s3.url,
            "GOMIRROR_S3_REGION": self.s3.region,
            "GOMIRROR_S3_ACCESS_KEY": self.s3.access_key,
            "GOMIRROR_S3_SECRET_KEY": self.s3.secret_key,
            "GOMIRROR_S3_ADDRESSING": "path",
        }

    def bucket_env(self, bucket: str, prefix: str) -> dict[str, str]:
        return {
            **self.s3_env(),
            "GOMIRROR_STORAGE": "s3",
            "GOMIRROR_S3_BUCKET": bucket,
            "GOMIRROR_S3_PREFIX": prefix,
        }

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOMIRROR_")}
        env.update(self.s3_env())
        env["HOME"] = str(self.tmp / "home")
        env.update(extra or {})
        return env

    def cmd(self, *args: str, cache: Path | None = None) -> list[str]:
        cache = cache or self.tmp / "replicate-cache"
        return [sys.executable, "-m", "gomirror.cli.main", "replicate", *args,
                "--cache-dir", str(cache)]  # fmt: skip

    def replicate(self, *args: str, cache: Path | None = None) -> tuple[int, dict[str, Any]]:
        """``gomirror replicate ... --json`` run in this process (the CLI's main), and its report."""
        cache = cache or self.tmp / "replicate-cache"
        out = io.StringIO()
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)  # the tool sets up logging for a whole process
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOMIRROR_")}
        try:
            with (
                mock.patch.dict(os.environ, {**env, **self.s3_env()}, clear=True),
                contextlib.redirect_stdout(out),
            ):
                code = main(["replicate", *args, "--json", "--cache-dir", str(cache)])
        finally:
            root.handlers[:], root.level = saved
        assert code in (0, 1), out.getvalue()
        return code, json.loads(out.getvalue())

    def storage(self, bucket: str, prefix: str) -> S3Storage:
        return S3Storage(
            S3Settings(
                bucket=bucket, prefix=prefix, endpoint=self.s3.url, region=self.s3.region,
                access_key=self.s3.access_key, secret_key=self.s3.secret_key, addressing="path",
            )
        )  # fmt: skip

    def objects(self, bucket: str, prefix: str) -> dict[str, bytes]:
        """Every object under the prefix, by key (read with the raw client: no sidecar checks)."""

        async def read() -> dict[str, bytes]:
            st = self.storage(bucket, prefix)
            try:
                c = await st._client()

                async def one(key: str) -> bytes:
                    resp = await c.get_object(Bucket=bucket, Key=prefix + key)
                    async with resp["Body"] as body:
                        data: bytes = await body.read()
                        return data

                keys = [k async for k in st.keys()]  # noqa: SIM118 - an async iterator
                return dict(zip(keys, await asyncio.gather(*map(one, keys)), strict=True))
            finally:
                await st.close()

        return asyncio.run(read())

    def keys(self, bucket: str, prefix: str) -> set[str]:
        async def list_keys() -> set[str]:
            st = self.storage(bucket, prefix)
            try:
                return {k async for k in st.keys()}  # noqa: SIM118 - an async iterator
            finally:
                await st.close()

        return asyncio.run(list_keys())

    def serve(self, name: str, env: dict[str, str], upstream: str) -> GomirrorProcess:
        d = self.tmp / name
        d.mkdir()
        return GomirrorProcess(d, upstream=upstream, env=env).start()

    def download_all(self, proxy: str, name: str) -> None:
        """The go command downloads every module of MODS through proxy, with the corpus's hashes."""
        go = GoRunner(self.tmp / name, proxy)
        got = {f"{r['Path']}@{r['Version']}": r for r in go.mod_download_json(*MODS)}
        assert sorted(got) == sorted(MODS)
        for mv in MODS:
            module, version = mv.split("@")
            want = self.corpus[(module, version)]
            assert "Error" not in got[mv], got[mv]
            assert (got[mv]["Sum"], got[mv]["GoModSum"]) == (want.h1, want.gomod_h1)


def make_bucket(s3: S3Endpoint, bucket: str) -> None:
    req = urllib.request.Request(f"{s3.url}/{bucket}", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def module_keys(objects: dict[str, Any] | set[str]) -> set[str]:
    return {k for k in objects if parse_key(k) is not None}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("replicate")
    server = S3Server.start(tmp / "s3server")
    corpus = _corpus()
    sim = UpstreamSimulator(corpus, name="origin").start()
    try:
        for bucket in (SRC_BUCKET, DST_BUCKET):
            make_bucket(server.endpoint, bucket)
        w = World(server.endpoint, corpus, sim, tmp)
        origin = w.serve("origin-proxy", w.bucket_env(SRC_BUCKET, SRC_PREFIX), sim.url)
        try:
            w.download_all(origin.url, "go-origin")
            for path in (f"/{GRAPH}/m000/@v/list", f"/{GRAPH}/m000/@latest"):
                assert origin.get(path)[0] == 200
        finally:
            origin.stop()
        yield w
    finally:
        sim.stop()
        server.stop()


@pytest.fixture(scope="module")
def source(world: World) -> dict[str, bytes]:
    """The source bucket's objects as the serving gomirror left them."""
    objects = world.objects(SRC_BUCKET, SRC_PREFIX)
    assert len(module_keys(objects)) == N_FILES
    assert any(k.endswith("/@v/list") for k in objects)  # mutable answers exist, to be left out
    return objects


def test_bucket_to_bucket_then_rerun_is_a_noop_and_the_copy_serves_offline(
    world: World, source: dict[str, bytes]
) -> None:
    src, dst = f"s3://{SRC_BUCKET}/{SRC_PREFIX}", f"s3://{DST_BUCKET}/b2b"
    code, report = world.replicate("--from", src, "--to", dst)
    assert code == 0, report
    assert (report["copied"], report["refused"], report["failed"]) == (N_FILES, 0, 0)
    copied = world.objects(DST_BUCKET, "b2b/")
    wanted = {k for k in source if parse_key(k.removesuffix(".json")) is not None}
    assert set(copied) == wanted  # module files and their sidecars, nothing else
    assert not any(k.startswith(("_gomirror/", "sumdb/")) or k.endswith(("/list", "@latest"))
                   for k in copied)  # fmt: skip
    assert all(copied[k] == source[k] for k in copied)

    code, again = world.replicate("--from", src, "--to", dst)
    assert code == 0
    assert (again["copied"], again["present"]) == (0, N_FILES)

    replica = world.serve("replica-b2b", world.bucket_env(DST_BUCKET, "b2b/"), "off")
    try:
        world.download_all(replica.url, "go-b2b")
    finally:
        replica.stop()


def test_bucket_to_disk_then_disk_to_a_bucket_named_by_a_config_file(
    world: World, source: dict[str, bytes], tmp_path: Path
) -> None:
    disk = tmp_path / "disk-replica"
    code, report = world.replicate("--from", f"s3://{SRC_BUCKET}/{SRC_PREFIX}", "--to", str(disk))
    assert code == 0 and report["copied"] == N_FILES, report
    on_disk = {p.relative_to(disk).as_posix() for p in disk.rglob("*") if p.is_file()}
    assert module_keys(on_disk) == module_keys(source)
    for key in module_keys(source):
        assert (disk / key).read_bytes() == source[key]
        if not key.endswith(".info"):
            assert (disk / (key + ".json")).read_bytes() == source[key + ".json"]
    world.download_all(f"file://{disk}", "go-file")  # the disk copy is a GOPROXY tree

    config = tmp_path / "frankfurt.toml"
    config.write_text(
        "[storage]\n"
        'storage = "s3"\n'
        f's3_endpoint = "{world.s3.url}"\n'
        f's3_bucket = "{DST_BUCKET}"\n'
        's3_prefix = "from-disk"\n'
        f's3_region = "{world.s3.region}"\n'
        's3_addressing = "path"\n'
        f's3_access_key = "{world.s3.access_key}"\n'
        f's3_secret_key = "{world.s3.secret_key}"\n'
    )
    code, report = world.replicate("--from", str(disk), "--to", f"config:{config}")
    assert code == 0 and report["copied"] == N_FILES, report
    assert report["to"].startswith(f"s3://{DST_BUCKET}/from-disk/")
    copied = world.objects(DST_BUCKET, "from-disk/")
    assert module_keys(copied) == module_keys(source)
    assert all(copied[k] == source[k] for k in copied)


def test_tampered_files_are_refused_and_never_reach_the_target(
    world: World, source: dict[str, bytes], tmp_path: Path
) -> None:
    disk = tmp_path / "tampered"
    code, _ = world.replicate("--from", f"s3://{SRC_BUCKET}/{SRC_PREFIX}", "--to", str(disk))
    assert code == 0
    base = f"{GRAPH}/m001/@v/v1.0.0"
    other_zip = build_zip([(f"{GRAPH}/m001@v1.0.0/go.mod", b"module example.com/graph/m001\n"),
                           (f"{GRAPH}/m001@v1.0.0/evil.go", b"package m001\n")])  # fmt: skip
    (disk / f"{base}.zip").write_bytes(other_zip)  # a valid zip, but not the one verified
    mod = disk / f"{GRAPH}/m002/@v/v1.0.0.mod"
    mod.write_bytes(mod.read_bytes() + b"// edited\n")
    big = disk / f"{escape_path(BIG)}/@v/v1.0.0.zip"
    big.write_bytes(big.read_bytes()[: 1 << 19])  # truncated
    bad = {f"{base}.zip", f"{GRAPH}/m002/@v/v1.0.0.mod", f"{escape_path(BIG)}/@v/v1.0.0.zip"}

    code, report = world.replicate("--from", str(disk), "--to", f"s3://{DST_BUCKET}/tampered")
    assert code == 1
    assert (report["refused"], report["copied"]) == (3, N_FILES - 3), report
    problems = {p["key"]: p for p in report["problems"]}
    assert set(problems) == bad
    assert all(p["outcome"] == "refused" for p in problems.values())
    assert "MISMATCH" in problems[f"{base}.zip"]["reason"]
    assert "MISMATCH" in problems[f"{GRAPH}/m002/@v/v1.0.0.mod"]["reason"]
    copied = world.objects(DST_BUCKET, "tampered/")
    assert not {k for k in copied if k in bad or k.removesuffix(".json") in bad}
    assert module_keys(copied) == module_keys(source) - bad


def plant(root: Path, n: int) -> dict[str, bytes]:
    """n small modules written into a disk cache as gomirror lays them out; returns every file."""
    files: dict[str, bytes] = {}
    for i in range(n):
        module = f"example.com/many/m{i:03d}"
        gomod = f"module {module}\n".encode()
        zipped = build_zip([(f"{module}@v1.0.0/go.mod", gomod),
                            (f"{module}@v1.0.0/m.go", f"package m{i:03d}\n".encode())])  # fmt: skip
        base = f"{module}/@v/v1.0.0"
        files[f"{base}.info"] = b'{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}'
        files[f"{base}.mod"] = gomod
        files[f"{base}.mod.json"] = json.dumps({"h1": h1_mod(gomod)}).encode()
        files[f"{base}.zip"] = zipped
        files[f"{base}.zip.json"] = json.dumps({"h1": h1_zip(zipped)}).encode()
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


def test_a_killed_run_leaves_only_whole_files_and_the_rerun_copies_what_is_missing(
    world: World, tmp_path: Path
) -> None:
    planted = plant(tmp_path / "many", 30)
    total = len(module_keys(planted))
    cache, src, dst = tmp_path / "cache", str(tmp_path / "many"), f"s3://{DST_BUCKET}/killed"
    proc = subprocess.Popen(
        world.cmd("--from", src, "--to", dst, "--jobs", "1", cache=cache),
        env=world.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not module_keys(world.keys(DST_BUCKET, "killed/")):  # polls the real bucket
            assert proc.poll() is None, "replicate ended before any file was seen"
            assert time.monotonic() < deadline, "no file was copied within 60 s"
        assert proc.poll() is None, "replicate finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    partial = world.objects(DST_BUCKET, "killed/")
    before = module_keys(partial)
    assert 0 < len(before) < total
    for key in before:  # every file there is whole, with its own sidecar
        assert partial[key] == planted[key]
        if not key.endswith(".info"):
            assert partial[key + ".json"] == planted[key + ".json"]

    code, report = world.replicate("--from", src, "--to", dst, cache=cache)
    assert code == 0
    assert (report["present"], report["copied"]) == (len(before), total - len(before))
    done = world.objects(DST_BUCKET, "killed/")
    assert done == planted
    assert not [p for p in (cache / "_gomirror/tmp").rglob("*") if p.suffix == ".zip"]


def test_conflicts_are_left_alone_and_files_without_sidecars_are_not_copied(
    world: World, tmp_path: Path
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    planted = plant(src, 3)
    code, report = world.replicate("--from", str(src), "--to", str(dst))
    assert code == 0 and report["copied"] == 9, report
    clash = "example.com/many/m000/@v/v1.0.0.zip"
    other = json.dumps({"h1": "h1:" + "A" * 43 + "="}).encode()
    (dst / (clash + ".json")).write_bytes(other)  # the target verified something else
    lone = "example.com/many/m001/@v/v1.0.0.mod"
    (src / (lone + ".json")).unlink()  # nothing records what this file should hash to
    (dst / lone).unlink()
    code, report = world.replicate("--from", str(src), "--to", str(dst))
    assert code == 1
    assert (report["conflict"], report["unverified"], report["present"]) == (1, 1, 7), report
    assert {p["key"]: p["outcome"] for p in report["problems"]} == {
        clash: "conflict",
        lone: "unverified",
    }
    assert (dst / (clash + ".json")).read_bytes() == other  # not overwritten
    assert (dst / clash).read_bytes() == planted[clash]
    assert not (dst / lone).exists()


class FailingWrites(Passthrough[Storage]):
    """A Storage whose writes of module files fail once ``allowed`` of them have succeeded."""

    def __init__(self, inner: Storage, allowed: int) -> None:
        super().__init__(inner)
        self.allowed = allowed

    def _spend(self, key: str) -> None:
        if key.endswith(".json"):
            return
        if self.allowed <= 0:
            raise StorageError(f"object store writing {key} failed: injected")
        self.allowed -= 1

    async def put_bytes(self, key: str, data: bytes) -> None:
        self._spend(key)
        await self.inner.put_bytes(key, data)

    async def put_file(self, key: str, src: Path) -> None:
        self._spend(key)
        await self.inner.put_file(key, src)


def test_a_partial_replica_serves_what_it_has_and_asks_its_upstream_for_the_rest(
    world: World, source: dict[str, bytes], tmp_path: Path
) -> None:
    async def partial() -> tuple[int, int, int]:
        src = world.storage(SRC_BUCKET, SRC_PREFIX)
        dst = FailingWrites(world.storage(DST_BUCKET, "partial/"), allowed=N_FILES // 2)
        n = 0

        def temp(suffix: str) -> Path:
            nonlocal n
            n += 1
            return tmp_path / f"t{n}{suffix}"

        try:
            report = await replicate(src, dst, new_temp=temp, jobs=4)
        finally:
            await src.close()
            await dst.close()
        return report.count("copied"), report.count("failed"), report.exit_code

    copied, failed, code = asyncio.run(partial())
    assert (copied, failed, code) == (N_FILES // 2, N_FILES - N_FILES // 2, 1)
    held = module_keys(world.objects(DST_BUCKET, "partial/"))
    assert len(held) == copied

    world.sim.clear()
    replica = world.serve(
        "replica-partial", world.bucket_env(DST_BUCKET, "partial/"), world.sim.url
    )
    try:
        world.download_all(replica.url, "go-partial")
    finally:
        replica.stop()
    asked = {r.path.lstrip("/") for r in world.sim.requests}
    assert asked  # the missing files came from the upstream ...
    assert not asked & held  # ... and nothing the replica holds was asked for
    assert module_keys(world.objects(DST_BUCKET, "partial/")) == module_keys(source)
    # What the replica fetched itself has its own sidecars, with the same h1: present.
    code, report = world.replicate("--from", f"s3://{SRC_BUCKET}/{SRC_PREFIX}",
                                   "--to", f"s3://{DST_BUCKET}/partial")  # fmt: skip
    assert code == 0 and (report["present"], report["copied"]) == (N_FILES, 0), report


def _lines(stream: Any) -> queue.Queue[str]:
    """The stream's lines, read by a thread, so the test can wait on them with a deadline."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


def test_watch_copies_new_files_until_terminated(
    world: World, source: dict[str, bytes], tmp_path: Path
) -> None:
    full = tmp_path / "full"
    assert world.replicate("--from", f"s3://{SRC_BUCKET}/{SRC_PREFIX}", "--to", str(full))[0] == 0
    src, dst = tmp_path / "watched", tmp_path / "watch-target"
    later = f"{GRAPH}/m{GRAPH_SIZE - 1:03d}/@v/"
    shutil.copytree(full, src, ignore=shutil.ignore_patterns("_gomirror"))
    shutil.rmtree(src / later)
    proc = subprocess.Popen(
        world.cmd("--from", str(src), "--to", str(dst), "--watch", "--interval", "0.2s", "--json"),
        env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = _lines(proc.stdout)
        first = json.loads(lines.get(timeout=60))
        assert first["copied"] == N_FILES - 6 and first["refused"] == 0
        staging = tmp_path / "staging"
        shutil.copytree(full / later, staging)
        staging.rename(src / later)  # the new version files appear at once
        copied = 0
        while copied < 6:
            report = json.loads(lines.get(timeout=60))
            assert report["refused"] == report["failed"] == 0, report
            assert report["present"] == 0  # settled files are not looked at again
            copied += report["copied"]
        assert copied == 6
        assert module_keys({str(p.relative_to(dst).as_posix()) for p in dst.rglob("*")}) == (
            module_keys(source)
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["replicate", "--from", "ftp://x/y", "--to", str(tmp_path), *cache]) == 2
    assert "invalid --from" in capsys.readouterr().err
    assert main(["replicate", "--from", str(tmp_path / "none"), "--to", str(tmp_path), *cache]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["replicate", "--from", str(tmp_path), "--to", str(tmp_path), *cache]) == 2
    assert "same storage" in capsys.readouterr().err
    assert main(["replicate", "--from", str(tmp_path), "--to", "s3://b/p", "--from-region",
                 "x", *cache]) == 2  # fmt: skip
    assert "not an S3 bucket" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["replicate", "--to", str(tmp_path)])
    assert e.value.code == 2
