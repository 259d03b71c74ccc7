"""predict fetches what the go command will ask next, in the background: ``PredictingService``.

The go command walks a module graph level by level: it reads a ``.mod``,
then the ``.mod`` files of its requirements (a few at a time), then asks
``.info`` and ``.zip`` of the versions it downloads. gomirror sees every
``.mod`` it serves, so it can fetch the next levels before they are asked.

``PredictingService(service, predictor)`` has the service's five endpoints
and delegates each call unchanged; after a call returns it tells the
``Predictor``, which may queue background fetches *through the same service*
(so every predicted file is verified, stored, and shares one fetch with a
client asking for it at the same time, by the coordinator):

- a ``.mod`` served: its requirements' ``.mod`` (mode ``mod``), and their
  ``.info`` (``mod+info``); the requirements of a predicted ``.mod`` count one
  level deeper, up to ``depth`` levels below the ``.mod`` a client asked for;
- an ``.info`` or ``@latest`` served: that version's ``.mod`` and, in mode
  ``mod+info+zip``, its ``.zip`` (``go mod download`` asks ``.info`` right
  before ``.zip``).

Contract. Prediction never delays an answer: the endpoint returns the
service's answer as is; parsing and queueing run after it (``call_soon``),
fetches in tasks the predictor owns (``close()`` cancels them). Every failure
of a predicted fetch is swallowed and counted. Modules matching the
``private`` patterns are never predicted (and the router behind the service
would send them only to ``direct`` anyway), so a public ``.mod`` naming a
private module never makes a request to a mirror. Bounded: at most
``concurrency`` fetches at once (zips at most half of them, so the graph walk
always has room), ``queue`` jobs waiting or running, ``per_minute`` jobs
started per minute (a token bucket), ``depth`` levels; a file already in
storage is not fetched (one ``stat``; a cached ``.mod`` is read to walk on),
and a file queued once is not queued again unless it comes at a shallower
depth. Outcomes go to ``on_outcome``: ``scheduled`` (queued), ``skipped``
(known, cached, private, over a bound), ``fetched`` (fetched from upstream by
prediction), ``failed``, and ``hit`` (a client then asked for a file
prediction fetched or had in flight); ``hit_ratio()`` is hits / fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gomirror.answers import Answer, CacheResult, FileAnswer
from gomirror.config import Config
from gomirror.errors import GomirrorError
from gomirror.module.gomod import go_version_at_least
from gomirror.module.info import is_canonical_for, parse_info
from gomirror.module.paths import escape_path, escape_version, match_prefix_patterns
from gomirror.service import Endpoints
from gomirror.storage.base import Storage
from gomirror.tools.project import parse_requirements

log = logging.getLogger(__name__)

Kind = Literal["mod", "info", "zip"]
Outcome = Literal["scheduled", "skipped", "fetched", "failed", "hit"]
_RANK: dict[Kind, int] = {"mod": 0, "info": 1, "zip": 2}  # the go command's own order


@dataclass(frozen=True, slots=True)
class PredictSettings:
    """What to predict and the bounds (see the module docstring)."""

    mode: str = "mod+info+zip"
    depth: int = 5
    concurrency: int = 16
    queue: int = 2000
    per_minute: int = 6000
    private: str = ""  # GOPRIVATE-syntax patterns never predicted
    remember: int = 100_000  # files remembered as queued or walked

    @property
    def mods(self) -> bool:
        return self.mode != "off"

    @property
    def infos(self) -> bool:
        return self.mode in ("mod+info", "mod+info+zip")

    @property
    def zips(self) -> bool:
        return self.mode == "mod+info+zip"


def predict_settings(config: Config) -> PredictSettings:
    """The predictor's settings from the configuration (``cache.predict*``, ``direct.private``)."""
    c = config.cache
    return PredictSettings(
        mode=c.predict,
        depth=c.predict_depth,
        concurrency=c.predict_concurrency,
        per_minute=c.predict_per_minute,
        private=config.direct.private,
    )


@dataclass(order=True, slots=True)
class _Job:
    rank: int
    depth: int
    seq: int
    kind: Kind = field(compare=False)
    module: str = field(compare=False)
    version: str = field(compare=False)
    key: str = field(compare=False)
    unpruned: bool = field(compare=False, default=False)  # the go command reads below it


class _Bucket:
    """A token bucket: ``rate`` tokens per minute, holding at most that many."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.rate = per_minute / 60.0
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Lru:
    """A bounded key → depth map, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[str, int] = OrderedDict()

    def get(self, key: str) -> int | None:
        return self.items.get(key)

    def put(self, key: str, depth: int) -> None:
        self.items[key] = depth
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def pop(self, key: str) -> bool:
        return self.items.pop(key, None) is not None


def file_key(kind: Kind, module: str, version: str) -> str:
    """The storage key of a module file, as the service names it."""
    return f"{escape_path(module)}/@v/{escape_version(version)}.{kind}"


class Predictor:
    """Queues and runs the background fetches (see the module docstring)."""

    def __init__(
        self,
        service: Endpoints,
        storage: Storage,
        settings: PredictSettings,
        *,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.service = service
        self.storage = storage
        self.settings = settings
        self._on_outcome = on_outcome
        self._queued = _Lru(settings.remember)  # file key → shallowest depth queued
        self._walked = _Lru(settings.remember)  # .mod key → shallowest depth expanded
        self._predicted = _Lru(settings.remember)  # keys fetched (or in flight) by prediction
        self._asked = _Lru(settings.remember)  # keys clients asked for: nothing to predict
        self._bucket = _Bucket(settings.per_minute)
        self._pending: list[_Job] = []
        self._running: set[asyncio.Task[None]] = set()
        self._running_others = 0  # .info and .zip jobs running
        self._seq = itertools.count()
        self._closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.counts: dict[str, int] = dict.fromkeys(
            ("scheduled", "skipped", "fetched", "failed", "hit"), 0
        )

    # --- what the endpoints report ----------------------------------------

    def requested(self, kind: Kind, module: str, version: str) -> None:
        """A client asked for this file: a hit if prediction fetched it."""
        key = file_key(kind, module, version)
        self._asked.put(key, 0)
        if self._predicted.pop(key):
            self._count("hit")

    def mod_served(self, module: str, version: str, body: bytes) -> None:
        """A client got this ``.mod``: walk its requirements (after the answer is on its way)."""
        if self._closed or not self.settings.mods:
            return
        if self.settings.infos:  # its .info comes when the go command downloads it
            self._offer("info", module, version, 0)
        if not self._should_walk(file_key("mod", module, version), 0):
            return
        asyncio.get_running_loop().call_soon(self._walk, module, version, body, 0, False)

    def version_served(self, module: str, version: str) -> None:
        """A client resolved this version (``.info``, ``@latest``): its ``.mod`` and zip come next."""
        if self._closed or not self.settings.mods or not is_canonical_for(module, version):
            return
        self._offer("mod", module, version, 0)
        if self.settings.zips:
            self._offer("zip", module, version, 0)

    # --- queueing ---------------------------------------------------------

    def _should_walk(self, key: str, depth: int) -> bool:
        done = self._walked.get(key)
        if done is not None and done <= depth:
            return False
        self._walked.put(key, depth)
        return True

    def _walk(self, module: str, version: str, body: bytes, depth: int, unpruned: bool) -> None:
        """Offer the requirements of module@version's go.mod, one level deeper.

        As the go command loads a graph: below a module that is not pruned
        (``go`` < 1.17), or one reached through such a module, every go.mod is
        read; below a pruned one, none. Whether a ``.mod`` a client asked for
        was reached that way is unknown here, so the requirements of a pruned
        one are fetched one level only (in a tidy go ≥ 1.17 main module they
        are listed too, so the go command asks for them next).
        """
        if self._closed or depth >= self.settings.depth:
            return
        try:
            gomod = parse_requirements(body)
        except Exception:  # a go.mod the lenient parser still cannot read: nothing to predict
            log.debug("prediction: unreadable go.mod", extra={"module": module, "version": version})
            return
        below = unpruned or not go_version_at_least(gomod.go, 1, 17)
        for r in gomod.require:
            if r.path == module or not is_canonical_for(r.path, r.version):
                continue
            self._offer("mod", r.path, r.version, depth + 1, unpruned=below)
            if self.settings.infos:
                self._offer("info", r.path, r.version, depth + 1)

    def _offer(
        self, kind: Kind, module: str, version: str, depth: int, *, unpruned: bool = False
    ) -> None:
        s = self.settings
        key = file_key(kind, module, version)
        seen = self._queued.get(key)
        if (
            (seen is not None and (kind != "mod" or seen <= depth))
            or key in self._asked.items
            or depth > s.depth
            or (s.private and match_prefix_patterns(s.private, module))
            or len(self._pending) + len(self._running) >= s.queue
            or not self._bucket.take()
        ):
            self._count("skipped")
            return
        self._queued.put(key, depth)
        heapq.heappush(
            self._pending,
            _Job(_RANK[kind], depth, next(self._seq), kind, module, version, key, unpruned),
        )
        self._count("scheduled")
        self._idle.clear()
        self._pump()

    def _pump(self) -> None:
        s = self.settings
        # A quarter of the slots stay free for .mod files: the go command waits on the walk.
        other_slots = s.concurrency - max(1, s.concurrency // 4) if s.concurrency > 1 else 1
        loop = asyncio.get_running_loop()
        while self._pending and len(self._running) < s.concurrency and not self._closed:
            if self._pending[0].kind != "mod" and self._running_others >= other_slots:
                break  # no .mod waits (they sort first): wait for a slot of the others
            job = heapq.heappop(self._pending)
            if job.kind != "mod":
                self._running_others += 1
            task = loop.create_task(self._run(job), name=f"predict {job.key}")
            self._running.add(task)
            task.add_done_callback(functools.partial(self._finished, job=job))
        if not self._pending and not self._running:
            self._idle.set()

    def _finished(self, task: asyncio.Task[None], *, job: _Job) -> None:
        self._running.discard(task)
        if job.kind != "mod":
            self._running_others -= 1
        if not self._closed:
            self._pump()
        elif not self._running:
            self._idle.set()

    # --- one job ----------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        try:
            if job.key in self._asked.items:  # a client asked meanwhile: its fetch, its walk
                self._count("skipped")
            elif job.kind == "mod":
                await self._run_mod(job)
            elif await self.storage.stat(job.key) is not None:
                self._count("skipped")
            else:
                self._predicted.put(job.key, job.depth)
                if job.kind == "info":
                    cache = (await self.service.info(job.module, job.version)).cache
                else:
                    cache = await self._zip(job)
                self._count("fetched" if cache in ("miss", "pass") else "skipped")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never an answer's business: counted, logged at debug
            self._predicted.pop(job.key)
            self._queued.pop(job.key)  # a later offer may try again (negative cache permitting)
            self._count("failed")
            log.debug(
                "prediction failed",
                extra={
                    "key": job.key,
                    "error": type(e).__name__,
                    "reason": str(e).split("\n")[0][:200] if isinstance(e, GomirrorError) else "",
                },
            )

    async def _run_mod(self, job: _Job) -> None:
        body = await self.storage.get(job.key)
        if body is not None:
            self._count("skipped")
        else:
            # The same .mod may be queued again from a shallower level while in flight.
            again = self._predicted.get(job.key) is not None
            self._predicted.put(job.key, job.depth)
            ans = await self.service.mod(job.module, job.version)
            body = ans.body
            self._count("fetched" if ans.cache in ("miss", "pass") and not again else "skipped")
        if job.unpruned and self._should_walk(job.key, job.depth):
            self._walk(job.module, job.version, body, job.depth, True)

    async def _zip(self, job: _Job) -> CacheResult:
        z = await self.service.zip(job.module, job.version)
        if z.chunks is not None:  # a stream nobody reads: release it now
            aclose = getattr(z.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        return z.cache

    # --- accounting and shutdown -------------------------------------------

    def _count(self, outcome: Outcome) -> None:
        self.counts[outcome] += 1
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def hit_ratio(self) -> float:
        """Files a client asked for after prediction fetched them, per file fetched (0 if none)."""
        fetched = self.counts["fetched"]
        return min(1.0, self.counts["hit"] / fetched) if fetched else 0.0

    def busy(self) -> int:
        """Jobs waiting or running."""
        return len(self._pending) + len(self._running)

    async def wait_idle(self) -> None:
        """Return once no job waits or runs (for tests and tools)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Drop waiting jobs, cancel running ones and wait for them to end."""
        self._closed = True
        self._pending.clear()
        tasks = list(self._running)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._idle.set()


class PredictingService:
    """The service's endpoints, telling a ``Predictor`` what was served (see the module docstring)."""

    def __init__(self, service: Endpoints, predictor: Predictor) -> None:
        self.service = service
        self.predictor = predictor

    async def list(self, module: str) -> Answer:
        return await self.service.list(module)

    async def latest(self, module: str) -> Answer:
        ans = await self.service.latest(module)
        self._tell(self._resolved, module, ans.body)
        return ans

    async def info(self, module: str, query: str) -> Answer:
        self._tell(self.predictor.requested, "info", module, query)
        ans = await self.service.info(module, query)
        if is_canonical_for(module, query):
            self._tell(self.predictor.version_served, module, query)
        else:
            self._tell(self._resolved, module, ans.body)
        return ans

    async def mod(self, module: str, version: str) -> Answer:
        self._tell(self.predictor.requested, "mod", module, version)
        ans = await self.service.mod(module, version)
        self._tell(self.predictor.mod_served, module, version, ans.body)
        return ans

    async def zip(self, module: str, version: str) -> FileAnswer:
        self._tell(self.predictor.requested, "zip", module, version)
        return await self.service.zip(module, version)

    def _resolved(self, module: str, body: bytes) -> None:
        try:
            version = parse_info(body).version
        except GomirrorError:
            return
        self.predictor.version_served(module, version)

    @staticmethod
    def _tell(fn: Callable[..., None], *args: Any) -> None:
        """Call a predictor hook; a bug in prediction must never turn an answer into an error."""
        try:
            fn(*args)
        except Exception:
            log.exception("prediction hook failed")
