"""monitor.aggregate answers ``/metrics`` for all the worker processes of one server at once.

With ``--workers N`` every worker keeps its own ``Metrics``, and the kernel
hands each scrape's connection to any one of them. So that every scrape sees
the whole server, each worker also serves its own exposition on a private
unix socket, ``<group>/metrics-<pid>.sock``, where ``<group>`` is the run
directory the serving parent made for this server (see ``WorkerGroup``), and
the worker that takes a scrape asks every peer socket in the group (at most
``timeout`` seconds, all at once), sums, and renders one exposition.

The contract: two scrapes in a row never see a counter decrease, whichever
worker answers them. A worker's counters only grow, so a fresh answer from
every worker is enough; for a worker that cannot answer (it exited, crashed,
or its loop is stuck past the timeout) its last snapshot is used instead.
A worker writes ``metrics-<pid>.last`` (atomically, by rename) each time it
renders its exposition and *before* handing it to anyone, and once more when
it stops, so that file is never older than anything a scrape has already
seen from it. Files of workers that are gone stay in the group until the
server exits (their counts stay in the sums, as they should); a socket
nobody listens on is removed when found.

Merging (``merge``): samples with the same name and label set are summed for
counters, histograms (buckets, ``_sum``, ``_count``) and summaries; for
gauges (and any other type) the largest value is kept, since a per-process
gauge such as "last success" has no meaningful sum. ``_created`` samples are
dropped. No prometheus_client multiprocess mode: it picks its value class
from an environment variable when the library is first imported, that is
process-wide state this project does not keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gomirror.monitor.metrics import Metrics
from gomirror.storage.tempfiles import TempArea

log = logging.getLogger(__name__)

RUN_SUBDIR = "_gomirror/run"
SOCKET_PREFIX = "metrics-"
SOCKET_SUFFIX = ".sock"
SNAPSHOT_SUFFIX = ".last"
PEER_TIMEOUT = 2.0
# Ends every exposition a worker hands over, so a cut-off answer is never taken for a whole one.
END_MARK = b"# end of gomirror worker exposition\n"
MAX_SUN_PATH = 100  # sockaddr_un holds 108 bytes on Linux; keep a margin
SUMMED_TYPES = frozenset({"counter", "histogram", "summary"})


class MetricsSource(Protocol):
    """What ``/metrics`` serves: one exposition for the whole server."""

    @property
    def content_type(self) -> str: ...

    async def render(self) -> bytes: ...


class LocalMetrics:
    """A one-process server: its own exposition is the whole server's."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def render(self) -> bytes:
        return self.metrics.render()


class WorkerGroup:
    """The run directory of one multi-worker server, made by the parent before it forks.

    It is a ``TempArea`` under ``<cache_dir>/_gomirror/run``: named after host and
    pid, locked for as long as the parent or any worker (which inherit the
    lock) lives, and swept by the next server start on the cache if the whole
    group died without removing it.
    """

    def __init__(self, cache_dir: Path) -> None:
        self._area = TempArea(cache_dir / RUN_SUBDIR)
        self.dir = self._area.dir

    def close(self) -> None:
        """Remove the directory; only the parent calls this, after its workers exited."""
        self._area.close()


@contextlib.asynccontextmanager
async def metrics_source(
    metrics: Metrics, group_dir: Path | None, *, peer_timeout: float = PEER_TIMEOUT
) -> AsyncIterator[MetricsSource]:
    """The ``/metrics`` source for this process: local alone, or the group's sum when in one."""
    if group_dir is None:
        yield LocalMetrics(metrics)
        return
    async with WorkerMetrics(metrics, group_dir, timeout=peer_timeout) as source:
        yield source


class WorkerMetrics:
    """One worker's part in its group (see the module docstring); use as an async context."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        metrics: Metrics,
        group_dir: Path,
        *,
        timeout: float = PEER_TIMEOUT,
        worker_id: int | None = None,
    ) -> None:
        self.metrics = metrics
        self.dir = group_dir
        self.timeout = timeout
        # The id is the pid in production; tests run several "workers" in one process.
        self.worker_id = os.getpid() if worker_id is None else worker_id
        self._dir_fd: int | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> WorkerMetrics:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on this worker's socket; it appears under its final name only once listening."""
        self._dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        final = self._name(self.worker_id, SOCKET_SUFFIX)
        staging = f".{final}.new"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging, dir_fd=self._dir_fd)
            sock.bind(self._address(staging))
            sock.listen(64)
            sock.setblocking(False)
            # Renamed only when listening: a peer never finds it refusing and removes it.
            os.rename(staging, final, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self._server = await asyncio.start_unix_server(self._answer_peer, sock=sock)
        except BaseException:
            sock.close()
            await self.stop()
            raise
        self._snapshot()

    async def stop(self) -> None:
        """Stop answering peers; leave a last snapshot that counts everything served."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._dir_fd is None:
            return
        with contextlib.suppress(OSError):
            self._snapshot()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(self.worker_id, SOCKET_SUFFIX), dir_fd=self._dir_fd)
        os.close(self._dir_fd)
        self._dir_fd = None

    async def render(self) -> bytes:
        """The group's exposition: this worker's own, plus every peer's, summed."""
        own = self._snapshot()
        peers = sorted(self._peer_ids())
        answers = await asyncio.gather(*(self._fetch(p) for p in peers))
        texts = [_body(own)]
        for peer, answer in zip(peers, answers, strict=True):
            if answer is None:
                log.warning("worker metrics unavailable", extra={"worker": peer})
            else:
                texts.append(answer)
        return merge(texts)

    def _snapshot(self) -> bytes:
        """Render this worker's exposition and record it as the last one, before anyone sees it."""
        data = self.metrics.render() + END_MARK
        if self._dir_fd is not None:
            final = self._name(self.worker_id, SNAPSHOT_SUFFIX)
            staging = f".{final}.new"
            # Synchronous on purpose: render and record must not interleave with another
            # render, or an older snapshot could replace a newer one already handed out.
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self._dir_fd)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.rename(staging, final, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        return data

    async def _answer_peer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            writer.write(self._snapshot())
            await writer.drain()
        except OSError:
            pass  # the asking peer gave up; it falls back to the snapshot file
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _peer_ids(self) -> set[int]:
        ids: set[int] = set()
        for entry in self.dir.iterdir():
            name = entry.name
            if not name.startswith(SOCKET_PREFIX):
                continue
            stem = name[len(SOCKET_PREFIX) :]
            for suffix in (SOCKET_SUFFIX, SNAPSHOT_SUFFIX):
                if stem.endswith(suffix) and stem[: -len(suffix)].isdigit():
                    ids.add(int(stem[: -len(suffix)]))
        ids.discard(self.worker_id)
        return ids

    async def _fetch(self, peer: int) -> str | None:
        """A peer's exposition: fresh from its socket, else its last snapshot, else None."""
        name = self._name(peer, SOCKET_SUFFIX)
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self._address(name))
                try:
                    data = await reader.read()
                finally:
                    writer.close()
            if data.endswith(END_MARK):
                return _body(data)
        except FileNotFoundError:
            pass  # exited cleanly: its final snapshot is there
        except ConnectionRefusedError:
            # Nobody listens (the worker was killed): the socket is stale.
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._dir_fd)
        except (TimeoutError, OSError) as e:
            log.info("worker metrics socket failed", extra={"worker": peer, "error": repr(e)})
        return self._read_snapshot(peer)

    def _read_snapshot(self, peer: int) -> str | None:
        try:
            fd = os.open(self._name(peer, SNAPSHOT_SUFFIX), os.O_RDONLY, dir_fd=self._dir_fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        return _body(data) if data.endswith(END_MARK) else None

    def _address(self, name: str) -> str:
        """A connectable path for a socket in the group dir, short enough for sockaddr_un."""
        path = str(self.dir / name)
        if len(os.fsencode(path)) <= MAX_SUN_PATH:
            return path
        # Linux resolves the directory through this process's open descriptor for it.
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    @staticmethod
    def _name(worker: int, suffix: str) -> str:
        return f"{SOCKET_PREFIX}{worker}{suffix}"


def _body(data: bytes) -> str:
    return data.removesuffix(END_MARK).decode()


def merge(texts: Iterable[str]) -> bytes:
    """One exposition from several: same name and labels summed (counters, histograms) or maxed."""
    families: dict[str, Any] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue  # the text format carries a counter's _created as a gauge of its own
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
                values[family.name] = {}
            acc = values[family.name]
            summed = merged.type in SUMMED_TYPES
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = acc.get(key)
                if old is None:
                    acc[key] = sample.value
                else:
                    acc[key] = old + sample.value if summed else max(old, sample.value)
    for name, merged in families.items():
        for (sample_name, labels), value in values[name].items():
            merged.add_sample(sample_name, dict(labels), value)
    return bytes(generate_latest(_Families(list(families.values()))))


class _Families(Collector):
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        return iter(self.families)
