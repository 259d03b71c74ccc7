"""test_three_instances runs three real gomirror processes on one S3 bucket (moto) and one Redis.

The upstream is an ``UpstreamSimulator`` that counts every request. Covered:
60 concurrent go-command-like clients asking the three instances for the same
10 missing versions cause exactly one upstream fetch per file, and everyone
gets the right bytes; ``kill -9`` of the instance holding the lock while its
upstream hangs lets another instance finish the fetch, and the killed one's
client gets no answer rather than a partial one; Redis killed mid-test leaves
every instance serving (hits and new misses), ``/readyz`` ready but
"degraded", the degraded metric at 1 with the ``instance`` label, and
recovery once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
import redis as redis_sync

from scaleout.cluster import Cluster, Got, download, fetch, file_path, http_get, metric, wait_for
from support.corpus import Corpus, ModuleVersion
from support.simulator import UpstreamSimulator

N_MODULES = 10
N_CLIENTS = 60


@pytest.fixture
def corpus() -> Corpus:
    c = Corpus()
    for i in range(N_MODULES):
        c.synthetic_module(f"example.com/scale/m{i}", "v1.0.0", 48 << 10, n_files=2, seed=i)
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="counted") as s:
        yield s


def modules(corpus: Corpus) -> list[ModuleVersion]:
    return sorted(corpus, key=lambda mv: mv.path)


def assert_complete(got: list[Got], mv: ModuleVersion) -> None:
    info, mod, zipped = got
    assert (info.status, mod.status, zipped.status) == (200, 200, 200), (info, mod, zipped)
    assert json.loads(info.body)["Version"] == mv.version
    assert mod.body == mv.mod
    assert zipped.body == mv.zip


def test_sixty_clients_across_three_instances_fetch_each_file_once(
    cluster: Cluster, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    mvs = modules(corpus)
    # Slow zips keep every fetch in flight while all 60 clients arrive.
    sim.add_fault("*.zip", latency=0.5)
    instances = [cluster.instance(f"gm{i}", upstream=sim.url) for i in range(3)]

    async def main() -> list[list[Got]]:
        timeout = aiohttp.ClientTimeout(total=120)
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
            # Client i asks for module i % 10 at instance (i // 10) % 3: every
            # module is asked for six times, twice at each instance.
            return await asyncio.gather(
                *(
                    download(s, instances[(i // N_MODULES) % 3].url, mvs[i % N_MODULES])
                    for i in range(N_CLIENTS)
                )
            )

    results = asyncio.run(main())
    for i, got in enumerate(results):
        assert_complete(got, mvs[i % N_MODULES])
    assert sim.count("*.zip") == N_MODULES, sim.paths()
    for mv in mvs:
        for ext in ("info", "mod", "zip"):
            assert sim.count(file_path(mv, ext)) == 1, (mv.path, ext, sim.paths())
    # Every instance labels its series, and none had to coordinate locally.
    for i, inst in enumerate(instances):
        status, body = http_get(inst.url + "/metrics")
        text = body.decode()
        assert status == 200 and f'instance="gm{i}"' in text
        assert metric(text, "gomirror_coordination_degraded", instance=f"gm{i}") == 0.0
        assert metric(text, "gomirror_coordination_local_runs_total", instance=f"gm{i}") == 0.0


def test_kill_9_of_the_lock_holder_mid_fetch_lets_another_instance_finish(
    cluster: Cluster, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    mv = modules(corpus)[0]
    zip_path = file_path(mv, "zip")
    sim.add_fault(zip_path, hang=True, times=1)  # the first fetch never answers
    holder, b, c = (cluster.instance(name, upstream=sim.url) for name in ("holder", "b", "c"))
    waiting = redis_sync.Redis.from_url(cluster.redis.url)

    async def main() -> tuple[Got, Got, Got]:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            first = asyncio.create_task(fetch(s, holder.url + zip_path))
            await asyncio.to_thread(wait_for, lambda: sim.count(zip_path) == 1, "holder fetches")
            others = [asyncio.create_task(fetch(s, inst.url + zip_path)) for inst in (b, c)]

            def both_wait() -> bool:
                # Waiters subscribe to the lock-release channel; the holder never did.
                subs = dict(waiting.pubsub_numsub("gomirror:released"))
                return int(subs.get(b"gomirror:released", 0)) == 2

            await asyncio.to_thread(wait_for, both_wait, "b and c wait for the lock")
            assert not first.done()
            holder.kill9()
            got_b, got_c = await asyncio.gather(*others)
            return await first, got_b, got_c

    got_holder, got_b, got_c = asyncio.run(main())
    waiting.close()
    # The killed instance's client got nothing: no status, so no partial body either.
    assert got_holder.status is None and got_holder.body == b"", got_holder
    assert (got_b.status, got_c.status) == (200, 200), (got_b, got_c)
    assert got_b.body == mv.zip and got_c.body == mv.zip
    assert sim.count(zip_path) == 2  # the hung one, and the one that finished
    # What S3 now holds is whole: a fresh instance with an empty local cache serves it.
    fresh = cluster.instance("fresh", upstream=sim.url)
    assert http_get(fresh.url + zip_path) == (200, mv.zip)
    assert sim.count(zip_path) == 2


def test_redis_stopped_mid_test_serving_continues_degraded_then_recovers(
    cluster: Cluster, sim: UpstreamSimulator, corpus: Corpus
) -> None:
    mvs = modules(corpus)
    instances = [cluster.instance(f"gm{i}", upstream=sim.url) for i in range(3)]

    async def get_all(pairs: list[tuple[str, ModuleVersion]]) -> list[list[Got]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
            return await asyncio.gather(*(download(s, url, mv) for url, mv in pairs))

    before = mvs[:4]
    for got, mv in zip(
        asyncio.run(get_all([(inst.url, mv) for inst in instances for mv in before])),
        [mv for _ in instances for mv in before],
        strict=True,
    ):
        assert_complete(got, mv)

    cluster.redis.kill()
    # Each instance first misses a version of its own, so each one meets the dead Redis.
    own = mvs[4:7]
    for inst, mv in zip(instances, own, strict=True):
        got = asyncio.run(get_all([(inst.url, mv)]))[0]
        assert_complete(got, mv)
    # Then everything from everywhere: old hits, the others' files, new misses.
    rest = [(inst.url, mv) for inst in instances for mv in mvs]
    for got, (_, mv) in zip(asyncio.run(get_all(rest)), rest, strict=True):
        assert_complete(got, mv)
    for mv in mvs:
        # Without the shared lock each instance may fetch, and once more when
        # another's sidecar replaced its own mid-write; never more.
        assert 1 <= sim.count(file_path(mv, "zip")) <= 6, sim.paths()
    for i, inst in enumerate(instances):
        status, body = http_get(inst.url + "/readyz")
        assert status == 200, body
        assert b"coordination: degraded" in body, body
        text = http_get(inst.url + "/metrics")[1].decode()
        assert metric(text, "gomirror_coordination_degraded", instance=f"gm{i}") == 1.0
        local_runs = metric(text, "gomirror_coordination_local_runs_total", instance=f"gm{i}")
        assert local_runs is not None and local_runs >= 1

    cluster.redis.start()
    for inst in instances:
        wait_for(
            lambda inst=inst: b"degraded" not in http_get(inst.url + "/readyz")[1],  # type: ignore[misc]
            f"{inst.url} coordinates through Redis again",
        )
    # A new miss is coordinated through Redis again: one fetch for all three.
    extra = Corpus()
    late = extra.synthetic_module("example.com/scale/late", "v1.0.0", 4096)
    sim.corpus.add(late)
    late_got = asyncio.run(get_all([(inst.url, late) for inst in instances]))
    for g in late_got:
        assert_complete(g, late)
    assert sim.count(file_path(late, "zip")) == 1
