"""test_cache runs ``gomirror cache stats | gc | purge`` on a cache a real gomirror filled.

A ``TestSumdb`` vouches for every module and an ``UpstreamSimulator`` serves
them; a ``gomirror serve`` process caches ``.info``, ``.mod`` and ``.zip`` of
each, so the cache also holds checksum-database tiles, lookups and a tree
head. Access times are set with ``os.utime`` to give each version a known
last use. ``gc`` must evict exactly the least recently used versions, never
the checksum-database state, and never a zip a slow client is still
downloading (that client gets every byte); ``purge`` must make a new tag
visible at once and delete verified files only with ``--force``, leaving an
audit event. Reads answered from memory, which touch no file, still keep a
version from ``gc --unused-for`` through the servers' batched read log.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import Corpus, escape_path
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

BIG, MID, SMALL = "example.com/big", "example.com/mid", "example.com/small"
VERSIONS = [(BIG, "v1.0.0"), (MID, "v1.0.0"), (SMALL, "v1.0.0"), (SMALL, "v1.1.0")]
DAY = 86400.0


def build_corpus() -> Corpus:
    c = Corpus()
    c.synthetic_module(BIG, "v1.0.0", 16 << 20, n_files=4)  # bigger than any socket buffer
    c.synthetic_module(MID, "v1.0.0", 64 << 10)
    c.synthetic_module(SMALL, "v1.0.0", 1 << 10)
    c.synthetic_module(SMALL, "v1.1.0", 1 << 10)
    return c


@dataclasses.dataclass
class World:
    corpus: Corpus
    sim: UpstreamSimulator
    db: TestSumdb
    mirror: GomirrorProcess

    @property
    def cache(self) -> Path:
        return self.mirror.cache_dir

    def cache_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gomirror.cli.main",
                "cache",
                *args,
                "--cache-dir",
                str(self.cache),
                "--sumdb",
                f"{self.db.verifier_key} {self.db.url}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=self.mirror.env,
        )

    def cache_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.cache_cmd(*args, "--json")
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def version_files(self, module: str, version: str) -> list[Path]:
        d = self.cache / escape_path(module) / "@v"
        return sorted(d.glob(f"{version}.*"))

    def used(self, module: str, version: str, days_ago: float) -> None:
        """Make a version look last used days_ago (atime and mtime of each of its files)."""
        t = time.time() - days_ago * DAY
        for f in self.version_files(module, version):
            os.utime(f, (t, t))

    def state_files(self) -> dict[str, bytes]:
        """The checksum database's cached state: must survive any gc."""
        out = {}
        for base in ("sumdb", "_gomirror/sumdb"):
            for f in (self.cache / base).rglob("*"):
                if f.is_file():
                    out[str(f.relative_to(self.cache))] = f.read_bytes()
        return out


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    corpus = build_corpus()

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)
    (tmp_path / "srv").mkdir()
    with db, UpstreamSimulator(corpus) as sim:
        mirror = GomirrorProcess(
            tmp_path / "srv",
            upstream=sim.url,
            sumdb=f"{db.verifier_key} {db.url}",
            # Reads recorded only at stop (ages stay as set); no predicted fetches (exact counts).
            env={"GOMIRROR_LAST_USE_FLUSH": "0", "GOMIRROR_PREDICT": "off"},
        )
        with mirror:
            for path, version in VERSIONS:
                for ext in ("info", "mod", "zip"):
                    status, _, body = mirror.get(f"/{path}/@v/{version}.{ext}")
                    assert status == 200, body
            assert mirror.get(f"/{SMALL}/@v/list")[0] == 200
            assert mirror.get(f"/{SMALL}/@latest")[0] == 200
            yield World(corpus, sim, db, mirror)


def test_stats(world: World) -> None:
    code, st = world.cache_json("stats", "--server", world.mirror.url, "--top", "2")
    assert code == 0, st
    assert (st["modules"], st["versions"], st["zips"]) == (3, 4, 4)
    # 4 versions × (.info, .mod, .zip, .mod.json, .zip.json); list and @latest of small.
    assert st["by_kind"]["version"]["files"] == 20
    assert st["by_kind"]["mutable"]["files"] == 2
    assert st["by_kind"]["sumdb"]["files"] > 0
    assert [m["module"] for m in st["top_modules"]] == [BIG, MID]
    assert st["top_modules"][0]["bytes"] > 16 << 20
    assert st["files"] == sum(k["files"] for k in st["by_kind"].values())
    ratio = st["hit_ratio"]
    assert ratio["by_endpoint"]["zip"]["miss"] == 4 and ratio["ratio"] == 0.0
    world.mirror.get(f"/{SMALL}/@v/v1.0.0.zip")  # one hit
    _, st = world.cache_json("stats", "--server", world.mirror.url)
    assert st["hit_ratio"]["by_endpoint"]["zip"]["ratio"] == pytest.approx(1 / 5)

    proc = world.cache_cmd("stats")
    assert proc.returncode == 0
    assert "3 modules, 4 versions, 4 zips" in proc.stdout
    assert "largest modules" in proc.stdout and BIG in proc.stdout

    code, st = world.cache_json("stats", "--server", "http://127.0.0.1:9")
    assert code == 1 and "is the server running" in st["error"]


def test_gc_unused_for_evicts_exactly_the_old_versions(world: World) -> None:
    state = world.state_files()
    assert any(k.startswith("sumdb/") for k in state) and any("latest" in k for k in state)
    world.used(SMALL, "v1.0.0", 100)
    world.used(MID, "v1.0.0", 40)
    world.used(BIG, "v1.0.0", 2)

    code, dry = world.cache_json("gc", "--unused-for", "30d", "--dry-run")
    assert code == 0, dry
    assert {(e["module"], e["version"]) for e in dry["evicted"]} == {
        (SMALL, "v1.0.0"),
        (MID, "v1.0.0"),
    }
    assert world.version_files(SMALL, "v1.0.0")  # a dry run removes nothing

    code, done = world.cache_json("gc", "--unused-for", "30d")
    assert code == 0, done
    assert done["evicted"] == dry["evicted"]
    assert world.version_files(SMALL, "v1.0.0") == []
    assert world.version_files(MID, "v1.0.0") == []
    assert len(world.version_files(SMALL, "v1.1.0")) == 5
    assert len(world.version_files(BIG, "v1.0.0")) == 5
    # small lost a version: its list and @latest are dropped too; the database state stays.
    assert not (world.cache / SMALL / "@v" / "list").exists()
    assert world.state_files() == state
    # The server fetches an evicted version again, verified.
    status, _, body = world.mirror.get(f"/{SMALL}/@v/v1.0.0.zip")
    assert status == 200 and body == world.corpus[(SMALL, "v1.0.0")].zip


def test_gc_max_size_is_lru_and_keeps_the_sumdb_state(world: World) -> None:
    state = world.state_files()
    world.used(SMALL, "v1.0.0", 3)
    world.used(BIG, "v1.0.0", 2)
    world.used(SMALL, "v1.1.0", 1)
    world.used(MID, "v1.0.0", 0.5)
    _, st = world.cache_json("stats")
    total = st["bytes"]
    big = sum(f.stat().st_size for f in world.version_files(BIG, "v1.0.0"))
    # Just under the total less the big module: small v1.0.0 (oldest) and big must both go.
    code, rep = world.cache_json("gc", "--max-size", str(total - big))
    assert code == 0, rep
    assert [(e["module"], e["version"]) for e in rep["evicted"]] == [
        (SMALL, "v1.0.0"),
        (BIG, "v1.0.0"),
    ]
    assert rep["bytes_after"] <= total - big and rep["target_reached"]
    assert world.state_files() == state

    code, rep = world.cache_json("gc", "--max-size", "1KB")
    assert code == 1 and not rep["target_reached"]  # the database state alone is bigger
    assert {e["module"] for e in rep["evicted"]} == {SMALL, MID}
    assert world.state_files() == state
    proc = world.cache_cmd("gc", "--max-size", "1KB")
    assert proc.returncode == 1 and "still over --max-size" in proc.stdout

    proc = world.cache_cmd("gc")
    assert proc.returncode == 2 and "--max-size SIZE or --unused-for" in proc.stderr
    proc = world.cache_cmd("gc", "--max-size", "lots")
    assert proc.returncode == 2 and "10GiB" in proc.stderr


def test_gc_never_evicts_a_zip_being_served(world: World) -> None:
    want = world.corpus[(BIG, "v1.0.0")].zip
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", world.mirror.port))
    try:
        sock.sendall(f"GET /{BIG}/@v/v1.0.0.zip HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while b"\r\n\r\n" not in got:  # the headers: the server has opened the file
            got += sock.recv(4096)
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # The client stalls; the server is stuck in sendfile with the zip open. gc everything.
        code, rep = world.cache_json("gc", "--max-size", "0")
        assert f"{BIG}@v1.0.0" in rep["in_use"], rep
        assert BIG not in {e["module"] for e in rep["evicted"]}
        assert {e["module"] for e in rep["evicted"]} == {SMALL, MID}
        assert code == 1  # the target (0 bytes) cannot be reached
        while len(body) < len(want):
            chunk = sock.recv(1 << 20)
            assert chunk, "connection closed early"
            body += chunk
        assert body == want
    finally:
        sock.close()
    assert len(world.version_files(BIG, "v1.0.0")) == 5
    # Once nobody reads it, it can go.
    code, rep = world.cache_json("gc", "--max-size", "0")
    assert [e["module"] for e in rep["evicted"]] == [BIG] and rep["in_use"] == []


def test_gc_while_clients_download(world: World) -> None:
    """gc runs again and again while clients download a zip: every download is whole and right."""
    want = world.corpus[(BIG, "v1.0.0")].zip
    stop = threading.Event()
    results: list[tuple[int, bool]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while not stop.is_set():
                status, _, body = world.mirror.get(f"/{BIG}/@v/v1.0.0.zip")
                results.append((status, body == want))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    raced = 0
    try:
        for _ in range(4):
            _, rep = world.cache_json("gc", "--max-size", "0")
            assert rep["errors"] == [], rep
            names = rep["in_use"] + [f"{e['module']}@{e['version']}" for e in rep["evicted"]]
            raced += f"{BIG}@v1.0.0" in names
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert raced > 0  # gc met the zip while clients were downloading it
    assert len(results) >= 4
    assert all(r == (200, True) for r in results), [r for r in results if r != (200, True)]
    status, _, body = world.mirror.get(f"/{BIG}/@v/v1.0.0.zip")
    assert status == 200 and body == want


def test_gc_keeps_versions_read_from_memory(world: World) -> None:
    """Hits that touch no file (in-memory copies) still count as use, through the batched log."""
    world.mirror.stop()  # flushes the reads it recorded
    logs = sorted((world.cache / "_gomirror" / "lastuse").glob("*.json"))
    assert logs, "the server recorded no reads"
    old = time.time() - 100 * DAY
    for f in logs:  # a hundred days pass without a read
        doc = json.loads(f.read_text())
        f.write_text(json.dumps({"versions": dict.fromkeys(doc["versions"], old)}))
    for path, version in VERSIONS:
        world.used(path, version, 100)
    server = GomirrorProcess(
        world.mirror.tmp,
        upstream=world.sim.url,
        cache_dir=world.cache,
        sumdb=f"{world.db.verifier_key} {world.db.url}",
        env={"GOMIRROR_LAST_USE_FLUSH": "0.2", "GOMIRROR_PREDICT": "off"},
    )
    mod = world.cache / escape_path(SMALL) / "@v" / "v1.0.0.mod"
    with server:
        assert server.get(f"/{SMALL}/@v/v1.0.0.mod")[0] == 200  # read from disk, then kept
        st = mod.stat()
        os.utime(mod, ns=(int(old * 1e9), st.st_mtime_ns))  # the file says: unused for 100 days
        for _ in range(20):
            status, headers, _ = server.get(f"/{SMALL}/@v/v1.0.0.mod")
            assert status == 200 and headers["X-Gomirror-Cache"] == "hit"
        assert mod.stat().st_atime < old + DAY  # memory hits left the file alone
        vid = f"{escape_path(SMALL)}/@v/v1.0.0"
        deadline = time.monotonic() + 20
        while True:  # polling for the batched write, with a deadline
            fresh = [
                f
                for f in (world.cache / "_gomirror" / "lastuse").glob("*.json")
                if json.loads(f.read_text())["versions"].get(vid, 0) > old + DAY
            ]
            if fresh:
                break
            assert time.monotonic() < deadline, "the read was never recorded"
            time.sleep(0.05)
        code, dry = world.cache_json("gc", "--unused-for", "30d", "--dry-run")
        assert code == 0, dry
        evicted = {(e["module"], e["version"]) for e in dry["evicted"]}
        assert (SMALL, "v1.0.0") not in evicted
        assert {(MID, "v1.0.0"), (SMALL, "v1.1.0"), (BIG, "v1.0.0")} <= evicted
        code, done = world.cache_json("gc", "--unused-for", "30d")
        assert code == 0 and done["evicted"] == dry["evicted"]
    assert len(world.version_files(SMALL, "v1.0.0")) == 5
    # The log was compacted to what is left: one object, no evicted version in it.
    left = [json.loads(f.read_text()) for f in (world.cache / "_gomirror/lastuse").glob("*.json")]
    names = {v for doc in left for v in doc["versions"]}
    assert vid in names and f"{escape_path(MID)}/@v/v1.0.0" not in names


def test_purge(world: World) -> None:
    world.sim.add_query(SMALL, "master", "v1.0.0")
    assert world.mirror.get(f"/{SMALL}/@v/master.info")[0] == 200
    query = world.cache / "_gomirror" / "query" / SMALL / "@v" / "master.info"
    assert query.is_file()
    # A new tag upstream: the cached list (fresh for mutable_ttl) does not show it yet.
    world.corpus.synthetic_module(SMALL, "v1.2.0", 1 << 10)
    assert world.mirror.get(f"/{SMALL}/@v/list")[2] == b"v1.0.0\nv1.1.0\n"

    code, rep = world.cache_json("purge", SMALL)
    assert code == 0, rep
    removed = set(rep["purged"][0]["removed"])
    assert removed == {
        f"{SMALL}/@v/list",
        f"{SMALL}/@latest",
        f"_gomirror/query/{SMALL}/@v/master.info",
    }
    assert world.mirror.get(f"/{SMALL}/@v/list")[2] == b"v1.0.0\nv1.1.0\nv1.2.0\n"
    assert len(world.version_files(SMALL, "v1.0.0")) == 5  # immutable files untouched

    proc = world.cache_cmd("purge", f"{SMALL}@v1.0.0")
    assert proc.returncode == 1
    assert "add --force" in proc.stdout
    assert len(world.version_files(SMALL, "v1.0.0")) == 5

    before = world.sim.count(f"/{SMALL}/@v/v1.0.0.zip")
    code, rep = world.cache_json("purge", f"{SMALL}@v1.0.0", "--force")
    assert code == 0, rep
    assert world.version_files(SMALL, "v1.0.0") == []
    events = [
        json.loads(f.read_text()) for f in (world.cache / "_gomirror" / "events").rglob("*.json")
    ]
    audit = [e for e in events if e["kind"] == "cache_purged"]
    assert len(audit) == 1
    assert (audit[0]["module"], audit[0]["version"]) == (SMALL, "v1.0.0")
    assert f"{SMALL}/@v/v1.0.0.zip" in audit[0]["detail"]
    # The server fetches (and verifies) it again.
    status, _, body = world.mirror.get(f"/{SMALL}/@v/v1.0.0.zip")
    assert status == 200 and body == world.corpus[(SMALL, "v1.0.0")].zip
    assert world.sim.count(f"/{SMALL}/@v/v1.0.0.zip") == before + 1

    code, rep = world.cache_json("purge", "not a module")
    assert code == 1 and "malformed module path" in rep["errors"][0]
