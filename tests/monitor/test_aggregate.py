"""Tests for monitor.aggregate: one ``/metrics`` for all workers, never going backwards (issue 8).

In-process tests run several ``WorkerMetrics`` ("workers" with made-up ids) in
one loop on one group directory; the crash test runs a real worker in a child
process (``support.child``) and kills it with SIGKILL; the last test starts
``gomirror serve --workers 2`` and scrapes it over fresh connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gomirror.monitor.aggregate import (
    END_MARK,
    LocalMetrics,
    WorkerGroup,
    WorkerMetrics,
    merge,
    metrics_source,
)
from gomirror.monitor.metrics import Metrics
from support.child import Child
from support.server import GomirrorProcess

Key = tuple[str, tuple[tuple[str, str], ...]]


def values(text: bytes | str) -> dict[Key, float]:
    raw = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(raw)
        for s in family.samples
    }


def requests_total(text: bytes | str) -> float:
    return sum(v for (name, _), v in values(text).items() if name == "gomirror_requests_total")


def req(endpoint: str, status: str) -> Key:
    return ("gomirror_requests_total", (("endpoint", endpoint), ("status", status)))


# --- merge -------------------------------------------------------------------------------------

A = """# HELP jobs_total Jobs.
# TYPE jobs_total counter
jobs_total{kind="x"} 2.0
jobs_total{kind="y"} 1.0
# HELP jobs_created Jobs.
# TYPE jobs_created gauge
jobs_created{kind="x"} 1.7e9
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.1"} 1.0
lat_bucket{le="+Inf"} 2.0
lat_count 2.0
lat_sum 0.5
lat_created 1.7e9
# HELP last_ok Last success.
# TYPE last_ok gauge
last_ok 100.0
"""
B = """# HELP jobs_total Jobs.
# TYPE jobs_total counter
jobs_total{kind="x"} 5.0
jobs_total{kind="z"} 7.0
# HELP lat Latency.
# TYPE lat histogram
lat_bucket{le="0.1"} 0.0
lat_bucket{le="+Inf"} 3.0
lat_count 3.0
lat_sum 4.0
# HELP last_ok Last success.
# TYPE last_ok gauge
last_ok 90.0
"""


def test_merge_sums_counters_and_histograms_and_keeps_the_largest_gauge() -> None:
    out = merge([A, B])
    assert values(out) == {
        ("jobs_total", (("kind", "x"),)): 7.0,
        ("jobs_total", (("kind", "y"),)): 1.0,
        ("jobs_total", (("kind", "z"),)): 7.0,
        ("lat_bucket", (("le", "0.1"),)): 1.0,
        ("lat_bucket", (("le", "+Inf"),)): 5.0,
        ("lat_count", ()): 5.0,
        ("lat_sum", ()): 4.5,
        ("last_ok", ()): 100.0,
    }
    assert b"_created" not in out
    assert b"# TYPE jobs_total counter" in out and b"# TYPE lat histogram" in out


def test_merge_of_one_exposition_is_that_exposition() -> None:
    m = Metrics(instance="i1")
    m.requests.labels("zip", "200").inc(4)
    m.request_seconds.labels("zip").observe(0.2)
    assert values(merge([m.render().decode()])) == values(m.render())


# --- workers in one process --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def workers(
    group: Path, n: int, **kw: float
) -> AsyncIterator[list[tuple[Metrics, WorkerMetrics]]]:
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for i in range(n):
            m = Metrics()
            w = await stack.enter_async_context(WorkerMetrics(m, group, worker_id=1000 + i, **kw))
            out.append((m, w))
        yield out


def test_every_worker_answers_the_sum_and_it_never_decreases(tmp_path: Path) -> None:
    async def main() -> None:
        async with workers(tmp_path, 3) as ws:
            seen = 0.0
            for step in range(6):
                for i, (m, _) in enumerate(ws):
                    m.requests.labels("info", "200").inc(i + 1)
                    m.request_seconds.labels("info").observe(0.01 * (i + 1))
                answers = [await w.render() for _, w in ws]
                expected = 6.0 * (step + 1)
                for text in answers:
                    v = values(text)
                    assert v[req("info", "200")] == expected
                    assert v[
                        ("gomirror_request_duration_seconds_count", (("endpoint", "info"),))
                    ] == 3 * (step + 1)
                    assert b"_created" not in text
                assert requests_total(answers[0]) >= seen
                seen = requests_total(answers[0])

    asyncio.run(main())


def test_a_stopped_worker_still_counts_with_everything_it_served(tmp_path: Path) -> None:
    async def main() -> None:
        a_metrics = Metrics()
        async with WorkerMetrics(a_metrics, tmp_path, worker_id=1) as a:
            b_metrics = Metrics()
            async with WorkerMetrics(b_metrics, tmp_path, worker_id=2):
                b_metrics.requests.labels("mod", "200").inc(3)
                assert values(await a.render())[req("mod", "200")] == 3
                b_metrics.requests.labels("mod", "200").inc(2)  # after the last scrape
            assert not (tmp_path / "metrics-2.sock").exists()
            assert values(await a.render())[req("mod", "200")] == 5

    asyncio.run(main())


def test_a_stuck_worker_is_waited_for_a_bounded_time_then_its_snapshot_counts(
    tmp_path: Path,
) -> None:
    stuck = Metrics()
    stuck.requests.labels("list", "200").inc(9)
    (tmp_path / "metrics-7.last").write_bytes(stuck.render() + END_MARK)
    accepted = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # never answers; the asking side gives up
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(hold, path=str(tmp_path / "metrics-7.sock"))
        async with server, WorkerMetrics(Metrics(), tmp_path, worker_id=1, timeout=0.3) as a:
            started = time.monotonic()
            text = await a.render()
            assert accepted.is_set()
            assert time.monotonic() - started < 5
            assert values(text)[req("list", "200")] == 9

    asyncio.run(main())


def test_a_socket_without_listener_is_removed_and_a_cut_off_snapshot_is_ignored(
    tmp_path: Path,
) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "metrics-8.sock"))  # bound, never listening: connect is refused
    stale.close()
    (tmp_path / "metrics-9.last").write_text(
        '# TYPE gomirror_requests_total counter\ngomirror_requests_total{endpoint="info",status="200"} 5'
    )

    async def main() -> None:
        m = Metrics()
        m.requests.labels("info", "200").inc()
        async with WorkerMetrics(m, tmp_path, worker_id=1) as a:
            assert values(await a.render())[req("info", "200")] == 1
        assert not (tmp_path / "metrics-8.sock").exists()

    asyncio.run(main())


def test_socket_paths_longer_than_sockaddr_un_work(tmp_path: Path) -> None:
    group = tmp_path / ("d" * 60) / ("e" * 60)
    group.mkdir(parents=True)

    async def main() -> None:
        async with workers(group, 2) as ws:
            ws[1][0].requests.labels("zip", "200").inc(2)
            assert values(await ws[0][1].render())[req("zip", "200")] == 2
        assert not list(group.glob("*.sock"))

    asyncio.run(main())


WORKER_SCRIPT = r"""
import asyncio, sys
from pathlib import Path
from gomirror.monitor.aggregate import WorkerMetrics
from gomirror.monitor.metrics import Metrics

async def main():
    m = Metrics()
    m.requests.labels("info", "200").inc(int(sys.argv[2]))
    async with WorkerMetrics(m, Path(sys.argv[1])):
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)

asyncio.run(main())
"""


def test_a_killed_worker_keeps_counting_with_what_it_last_handed_out(tmp_path: Path) -> None:
    async def main(a: WorkerMetrics) -> None:
        with Child.start(WORKER_SCRIPT, str(tmp_path), "11") as child:
            assert child.expect() == "ready"
            assert values(await a.render())[req("info", "200")] == 12
            child.kill()
            assert (tmp_path / f"metrics-{child.pid}.sock").exists()
            assert values(await a.render())[req("info", "200")] == 12
            assert not (tmp_path / f"metrics-{child.pid}.sock").exists()

    async def run() -> None:
        m = Metrics()
        m.requests.labels("info", "200").inc()
        async with WorkerMetrics(m, tmp_path) as a:
            await main(a)

    asyncio.run(run())


def test_metrics_source_is_local_without_a_group(tmp_path: Path) -> None:
    async def main() -> None:
        m = Metrics()
        m.requests.labels("info", "200").inc()
        async with metrics_source(m, None) as local:
            assert isinstance(local, LocalMetrics)
            assert values(await local.render())[req("info", "200")] == 1
        async with metrics_source(m, tmp_path) as grouped:
            assert isinstance(grouped, WorkerMetrics)
            assert (tmp_path / f"metrics-{os.getpid()}.sock").exists()

    asyncio.run(main())


def test_worker_group_lives_under_the_cache_and_is_removed(tmp_path: Path) -> None:
    group = WorkerGroup(tmp_path / "cache")
    assert group.dir.parent == tmp_path / "cache" / "_gomirror" / "run"
    assert group.dir.is_dir()
    group.close()
    assert not group.dir.exists()


# --- the real server ---------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a fresh connection each time
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_two_workers_answer_one_monotonic_sum(tmp_path: Path) -> None:
    with GomirrorProcess(tmp_path, upstream="off", extra_args=["--workers", "2"]) as gm:
        deadline = time.monotonic() + 30
        while gm.log().count(" gomirror.app listening ") < 2:
            assert time.monotonic() < deadline, gm.log()
            time.sleep(0.02)  # readiness polling: waiting for both workers to log "listening"
        for _ in range(40):
            assert _get(gm.port, "/healthz")[0] == 200
        seen = 0.0
        for _ in range(10):
            status, body = _get(gm.port, "/metrics")
            assert status == 200
            assert b"_created" not in body
            total = requests_total(body)
            assert total >= 40, body.decode()
            assert total >= seen
            seen = total
    run_dir = tmp_path / "cache" / "_gomirror" / "run"
    assert not any(p.name.startswith("metrics-") for p in run_dir.rglob("*"))
