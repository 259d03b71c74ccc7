"""test_e2e_faults puts faulty mirrors behind gomirror and drives the real go command through it.

Go's fall-through rules (``,`` only on not-found, ``|`` on any error, the
``failover`` policy on transient errors), stale-if-error for mutable answers,
single-flight under 50 concurrent clients, invalid zips (corrupt, oversized,
zip-slip, wrong prefix) that must never be served or cached and must leave a
tamper event, and a ``kill -9`` in the middle of a download: the cache must only
ever hold complete, correct files.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.corpus import Corpus, build_zip
from support.gorunner import GoRunner

pytestmark = pytest.mark.e2e

QUOTE, V = "rsc.io/quote", "v1.5.2"
BIG = "example.com/big"


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns something truthy (readiness polling in 5 ms steps)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def events(cache: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_bytes()) for p in sorted((cache / "_gomirror/events").rglob("*.json"))
    ]


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def download_ok(go: GoRunner, corpus: Corpus, module: str, version: str) -> None:
    (obj,) = go.mod_download_json(f"{module}@{version}")
    assert "Error" not in obj, obj
    mv = corpus[(module, version)]
    assert obj["Sum"] == mv.h1
    assert go.modcache_file(module, version, "zip").read_bytes() == mv.zip


def stderr_of_failure(go: GoRunner, *args: str) -> str:
    proc = go.run(*args, check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


# --------------------------------------------------------------------------- fall-through


def test_comma_falls_through_on_404(e2e_corpus: Corpus, start_sim, start_gomirror, go_runner):
    empty, full = start_sim(Corpus()), start_sim()
    mirror = start_gomirror(f"{empty.url},{full.url}")
    download_ok(go_runner(mirror.url), e2e_corpus, QUOTE, V)
    assert empty.count(f"/{QUOTE}/@v/{V}.info") == 1
    assert full.count(f"/{QUOTE}/@v/{V}.zip") == 1


def test_pipe_falls_through_on_500(e2e_corpus: Corpus, start_sim, start_gomirror, go_runner):
    broken, full = start_sim(), start_sim()
    broken.fail("*", 500)
    mirror = start_gomirror(f"{broken.url}|{full.url}")
    download_ok(go_runner(mirror.url), e2e_corpus, QUOTE, V)
    assert broken.count(f"/{QUOTE}/@v/{V}.zip") == 1
    assert full.count(f"/{QUOTE}/@v/{V}.zip") == 1


def test_comma_does_not_fall_through_on_500(start_sim, start_gomirror, go_runner):
    broken, full = start_sim(), start_sim()
    broken.fail("*", 500, "mirror on fire")
    mirror = start_gomirror(f"{broken.url},{full.url}")
    err = stderr_of_failure(go_runner(mirror.url), "mod", "download", f"{QUOTE}@{V}")
    assert "502 Bad Gateway" in err
    lines = [ln.strip() for ln in err.splitlines()]
    i = lines.index("server response:")
    assert lines[i + 1] == f"upstream error: {QUOTE}@{V}.info"
    assert lines[i + 2] == f"{broken.url}: 500 Internal Server Error: mirror on fire"
    assert full.count() == 0


@pytest.mark.parametrize("fault", ["500", "refused"])
def test_failover_policy_falls_through_after_comma(
    fault: str, e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
):
    bad, good = start_sim(), start_sim()
    if fault == "refused":
        bad.set_down(True)
    else:
        bad.fail("*", 500)
    mirror = start_gomirror(f"{bad.url},{good.url}", extra_args=["--policy", "failover"])
    download_ok(go_runner(mirror.url), e2e_corpus, QUOTE, V)
    assert good.count(f"/{QUOTE}/@v/{V}.zip") == 1
    if fault == "500":
        assert bad.count(f"/{QUOTE}/@v/{V}.zip") == 1


# --------------------------------------------------------------------------- timeouts


def test_hanging_mirror_times_out_and_is_parked(e2e_corpus: Corpus, start_sim, start_gomirror):
    """A mirror that accepts and never answers costs one read timeout, then is skipped."""
    hang, good = start_sim(), start_sim()
    hang.add_fault("*", hang=True)
    mirror = start_gomirror(
        f"{hang.url}|{good.url}",
        env={"GOMIRROR_READ_TIMEOUT": "1", "GOMIRROR_TIMEOUT_PARK": "300"},
    )
    started = time.monotonic()
    status, _, body = mirror.get(f"/{QUOTE}/@v/{V}.info")
    first = time.monotonic() - started
    assert status == 200 and json.loads(body)["Version"] == V
    assert first >= 0.9  # the read timeout was waited out once
    started = time.monotonic()
    status, _, _ = mirror.get(f"/{QUOTE}/@v/{V}.mod")
    assert status == 200
    assert time.monotonic() - started < first  # parked: no second wait
    assert hang.count("*") == 1  # the parked mirror was not asked again
    assert good.count(f"/{QUOTE}/@v/{V}.mod") == 1


def test_hanging_mirror_after_comma_is_a_504_with_text(start_sim, start_gomirror):
    hang = start_sim()
    hang.add_fault("*", hang=True)
    mirror = start_gomirror(hang.url, env={"GOMIRROR_READ_TIMEOUT": "0.5"})
    status, headers, body = mirror.get(f"/{QUOTE}/@v/{V}.info")
    assert status == 504
    assert headers["Content-Type"].startswith("text/plain")
    assert b"timed out" in body


# --------------------------------------------------------------------------- stale-if-error


def test_stale_if_error(e2e_corpus: Corpus, start_sim, start_gomirror, go_runner):
    a, b = start_sim(), start_sim()
    mirror = start_gomirror(f"{a.url}|{b.url}", env={"GOMIRROR_MUTABLE_TTL": "0"})
    expected = ["v1.0.0", "v1.1.0"]
    module = "example.com/graph/m002"
    assert go_runner(mirror.url).list_versions(module) == expected
    status, headers, body = mirror.get(f"/{module}/@v/list")
    assert (status, headers["X-Gomirror-Cache"]) == (200, "miss")  # TTL 0: always refetched

    a.set_down(True)
    b.set_down(True)
    status, headers, body = mirror.get(f"/{module}/@v/list")
    assert status == 200
    assert body == b"v1.0.0\nv1.1.0\n"
    assert headers["X-Gomirror-Cache"] == "stale"
    assert headers["X-Gomirror-Stale"]
    assert headers["Cache-Control"] == "no-cache"
    # A fresh go command still lists the versions (the .info/.mod of the latest are immutable).
    assert go_runner(mirror.url).list_versions(module) == expected
    # Something never cached is an error, not a stale answer.
    status, _, body = mirror.get("/example.com/graph/m003/@v/list")
    assert status == 502 and body.startswith(b"upstream error: ")


# --------------------------------------------------------------------------- single-flight


def test_fifty_concurrent_clients_one_upstream_fetch(e2e_corpus: Corpus, start_sim, start_gomirror):
    sim = start_sim()
    path = f"/{BIG}/@v/v1.0.0.zip"
    sim.add_fault(path, latency=0.3)  # keep the fetch in flight while clients pile up
    mirror = start_gomirror(sim.url)
    n = 50
    barrier = threading.Barrier(n)
    bodies: list[bytes | BaseException] = [b""] * n

    def client(i: int) -> None:
        try:
            barrier.wait()
            with urllib.request.urlopen(mirror.url + path, timeout=60) as resp:
                bodies[i] = resp.read()
        except BaseException as e:  # reported below
            bodies[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expected = e2e_corpus[(BIG, "v1.0.0")].zip
    assert all(b == expected for b in bodies), [type(b) for b in bodies if b != expected]
    assert sim.count(path) == 1


# --------------------------------------------------------------------------- invalid zips


def _bad_zips(corpus: Corpus) -> dict[str, tuple[str, str, bytes]]:
    mv = corpus[(QUOTE, V)]
    prefix = f"{QUOTE}@{V}/"
    big = corpus[(BIG, "v1.0.0")]
    data = dict(big.files)[f"{BIG}@v1.0.0/data/f0000.bin"]
    at = big.zip.find(data[5000:5032])
    assert at > 0
    flipped = bytearray(big.zip)
    flipped[at] ^= 0xFF
    huge_mod = b"module rsc.io/quote\n" + b"// padding padding padding\n" * ((16 << 20) // 27 + 1)
    return {
        "truncated": (QUOTE, V, mv.zip[: len(mv.zip) // 2]),
        "flipped": (BIG, "v1.0.0", bytes(flipped)),
        "oversized": (
            QUOTE,
            V,
            build_zip(
                [(n, d) for n, d in mv.files if n != prefix + "go.mod"]
                + [(prefix + "go.mod", huge_mod)]
            ),
        ),
        "zip-slip": (QUOTE, V, build_zip([*mv.files, (prefix + "../x", b"owned\n")])),
        "wrong-prefix": (
            QUOTE,
            V,
            build_zip([(n.replace(prefix, "rsc.io/other@v1.5.2/"), d) for n, d in mv.files]),
        ),
    }


@pytest.mark.parametrize("sep", [",", "|"])
@pytest.mark.parametrize("kind", ["truncated", "flipped", "oversized", "zip-slip", "wrong-prefix"])
def test_invalid_zip_is_never_served_or_cached(
    kind: str, sep: str, e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
):
    module, version, bad = _bad_zips(e2e_corpus)[kind]
    evil, honest = start_sim(), start_sim()
    zpath = f"/{module}/@v/{version}.zip"
    evil.add_fault(zpath, replace_body=bad)
    mirror = start_gomirror(f"{evil.url}{sep}{honest.url}")
    go = go_runner(mirror.url)
    download_ok(go, e2e_corpus, module, version)
    assert evil.count(zpath) == 1
    assert honest.count(zpath) == 1

    cache = mirror.cache_dir
    good = e2e_corpus[(module, version)].zip
    assert (cache / module / "@v" / f"{version}.zip").read_bytes() == good
    for p in all_files(cache):
        assert p.read_bytes() != bad, p
    # Only the running process's lock file (storage/tempfiles.py) may remain: no download.
    assert [p.name for p in all_files(cache / "_gomirror/tmp")] == [".owner"]
    evs = events(cache)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert (ev["kind"], ev["upstream"], ev["module"], ev["version"], ev["file"]) == (
        "invalid_content",
        evil.url,
        module,
        version,
        "zip",
    )
    assert ev["detail"]
    sidecar = json.loads((cache / module / "@v" / f"{version}.zip.json").read_bytes())
    assert sidecar["upstream"] == honest.url


def test_invalid_zip_from_the_only_mirror_is_an_error(
    e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
):
    _, _, bad = _bad_zips(e2e_corpus)["zip-slip"]
    evil = start_sim()
    evil.add_fault(f"/{QUOTE}/@v/{V}.zip", replace_body=bad)
    mirror = start_gomirror(evil.url)
    err = stderr_of_failure(go_runner(mirror.url), "mod", "download", f"{QUOTE}@{V}")
    assert "502 Bad Gateway" in err
    assert f"invalid content from every upstream for {QUOTE}@{V}.zip" in err
    assert not (mirror.cache_dir / QUOTE / "@v" / f"{V}.zip").exists()


# --------------------------------------------------------------------------- crash safety


def test_kill_9_mid_download_then_restart(
    tmp_path: Path, e2e_corpus: Corpus, start_sim, start_gomirror, go_runner
):
    sim = start_sim()
    path = f"/{BIG}/@v/v1.0.0.zip"
    sim.add_fault(path, bandwidth=64 << 10, times=1)  # 1 MiB at 64 KiB/s: in progress for ~16 s
    cache = tmp_path / "shared-cache"
    first = start_gomirror(sim.url, cache_dir=cache)
    final = cache / BIG / "@v" / "v1.0.0.zip"
    tmp_dir = cache / "_gomirror" / "tmp"

    def fetch() -> None:
        try:
            first.get(path, timeout=60)
        except OSError:  # the server is killed under this request
            pass

    client = threading.Thread(target=fetch, daemon=True)
    client.start()
    wait_for(lambda: any(p.stat().st_size > 0 for p in all_files(tmp_dir)), what="temp file")
    assert not final.exists()
    first.kill9()
    client.join(30)
    assert not final.exists()  # never a partial final file
    assert all_files(tmp_dir)  # the crash left its temp file behind

    second = start_gomirror(sim.url, cache_dir=cache)
    go = go_runner(second.url)
    download_ok(go, e2e_corpus, BIG, "v1.0.0")
    expected = e2e_corpus[(BIG, "v1.0.0")].zip
    assert hashlib.sha256(final.read_bytes()).digest() == hashlib.sha256(expected).digest()
    assert sim.count(path) == 2
    status, headers, body = second.get(path)
    assert (status, headers["X-Gomirror-Cache"], body) == (200, "hit", expected)
