"""service is gomirror's core: cache → fetch → check → verify → store → answer.

There is one method per protocol endpoint. Arguments are unescaped, already
validated module paths and versions. Immutable files (``.mod``, ``.zip``,
canonical ``.info``) are served from storage forever once stored; mutable
answers (``list``, ``@latest``, ``.info`` queries) are fresh for
``mutable_ttl`` seconds, refetched when stale, and served stale when every
upstream fails. Not-found answers are remembered for ``negative_ttl`` seconds.
Nothing reaches storage before it has been checked (format rules, module path,
zip rules, and the checksum database through the ``Verifier``); every write is
atomic. Concurrent misses for one key share one upstream fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from gomirror.errors import (
    GomirrorError,
    InvalidContent,
    NotFound,
    UpstreamError,
    VerificationError,
)
from gomirror.module import semver
from gomirror.module.dirhash import hash_gomod
from gomirror.module.gomod import check_gomod_module
from gomirror.module.info import parse_info, parse_list
from gomirror.module.modzip import check_zip
from gomirror.module.paths import canonical_version, check, escape_path, escape_version
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.storage.base import Storage
from gomirror.storage.coordination import SingleFlight
from gomirror.upstream.base import Upstream
from gomirror.upstream.chain import Chain

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SIZE = 10_000
T = TypeVar("T")
Kind = Literal["zip", "mod"]


class Verdict(Protocol):
    """What a verifier concluded (see ``gomirror.sumdb.verifier.Verdict``)."""

    @property
    def verified(self) -> bool: ...


class Verifier(Protocol):
    """Checks an ``h1:`` hash against the checksum database before anything is stored.

    ``check`` returns a verdict (verified, or skipped and why) or raises
    ``ChecksumMismatch``/``VerificationError``.
    """

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict: ...

    async def prefetch(self, module: str, version: str) -> None:
        """Warm the lookup for module@version; never raises (``check`` reports errors)."""
        ...


@dataclass(frozen=True, slots=True)
class Answer:
    """A small answer (list, info, mod, latest)."""

    body: bytes
    cache: str  # "hit", "miss" or "stale"
    stale_reason: str = ""


@dataclass(frozen=True, slots=True)
class ZipAnswer:
    """A zip held by storage: a local file to send, or bytes when storage has no files."""

    path: Path | None
    body: bytes | None
    size: int
    cache: str


@functools.lru_cache(maxsize=65536)
def is_canonical_for(module: str, version: str) -> bool:
    """True if version is a canonical version valid for module (the ``.info`` hard rule)."""
    if not semver.is_valid(version) or canonical_version(version) != version:
        return False
    try:
        check(module, version)
    except GomirrorError:
        return False
    return True


class NegativeCache:
    """Bounded memory of recent not-found answers: key → (expiry, message)."""

    def __init__(self, ttl: float, size: int = NEGATIVE_CACHE_SIZE) -> None:
        self.ttl = ttl
        self._size = size
        self._items: OrderedDict[str, tuple[float, NotFound]] = OrderedDict()

    def get(self, key: str) -> NotFound | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        return item[1]

    def put(self, key: str, err: NotFound) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, err)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Service:
    """The proxy's core (see the module docstring)."""

    def __init__(
        self,
        *,
        storage: Storage,
        router: Callable[[str], Chain],
        verifier: Verifier,
        events: EventRecorder,
        metrics: Metrics,
        mutable_ttl: float = 60.0,
        negative_ttl: float = 30.0,
    ) -> None:
        self.storage = storage
        self._router = router
        self._verifier = verifier
        self._events = events
        self._metrics = metrics
        self.mutable_ttl = mutable_ttl
        self._negative = NegativeCache(negative_ttl)
        self.flights = SingleFlight()
        self._background: set[asyncio.Task[None]] = set()

    # --- endpoints -------------------------------------------------------

    async def list(self, module: str) -> Answer:
        key = f"{escape_path(module)}/@v/list"

        async def validate(_: Upstream, body: bytes) -> None:
            _check_list(body)

        return await self._mutable(
            "list", key, f"{module}/@v/list", module, lambda up: up.list(module), validate
        )

    async def latest(self, module: str) -> Answer:
        key = f"{escape_path(module)}/@latest"

        async def validate(_: Upstream, body: bytes) -> None:
            _check_info(body, module, None)

        return await self._mutable(
            "latest", key, f"{module}@latest", module, lambda up: up.latest(module), validate
        )

    async def info(self, module: str, query: str) -> Answer:
        canonical = is_canonical_for(module, query)

        async def validate(_: Upstream, body: bytes) -> None:
            _check_info(body, module, query if canonical else None)

        if canonical:
            key = f"{escape_path(module)}/@v/{escape_version(query)}.info"
            return await self._immutable_small(
                "info", key, module, query, lambda up: up.info(module, query), validate
            )
        key = f"_gomirror/query/{escape_path(module)}/@v/{escape_version(query)}.info"
        return await self._mutable(
            "info", key, f"{module}@{query}", module, lambda up: up.info(module, query), validate
        )

    async def mod(self, module: str, version: str) -> Answer:
        key = f"{escape_path(module)}/@v/{escape_version(version)}.mod"

        async def validate(up: Upstream, body: bytes) -> None:
            check_gomod_module(body, module, version)
            h1 = hash_gomod(body)
            verdict = await self._verify(module, version, "mod", h1)
            meta = {"h1": h1, "verdict": _verdict_dict(verdict), "upstream": up.name}
            await self._put_json(key + ".json", dict(meta, fetched=time.time()))

        async def call(up: Upstream) -> bytes:
            if not started:
                started.append(True)
                self._prefetch_lookup(module, version)
            return await up.mod(module, version)

        started: list[bool] = []
        return await self._immutable_small("mod", key, module, version, call, validate)

    async def zip(self, module: str, version: str) -> ZipAnswer:
        key = f"{escape_path(module)}/@v/{escape_version(version)}.zip"
        hit = await self._zip_from_storage(key)
        if hit is not None:
            self._metrics.cache.labels("zip", "hit").inc()
            return hit
        self._check_negative(key, "zip")

        async def fetch() -> ZipAnswer:
            async with self.storage.lock(key):
                again = await self._zip_from_storage(key)
                if again is not None:
                    return again
                await self._fetch_zip(module, version, key)
            stored = await self._zip_from_storage(key)
            if stored is None:  # pragma: no cover - storage lost a just-written object
                raise UpstreamError(f"{module}@{version}.zip vanished from the cache after writing")
            return ZipAnswer(stored.path, stored.body, stored.size, "miss")

        answer = await self._remember_not_found(key, self.flights.do(key, fetch))
        self._metrics.cache.labels("zip", answer.cache).inc()
        return answer

    # --- zip -------------------------------------------------------------

    async def _zip_from_storage(self, key: str) -> ZipAnswer | None:
        st = await self.storage.stat(key)
        if st is None:
            return None
        path = await self.storage.local_path(key)
        if path is not None:
            return ZipAnswer(path, None, st.size, "hit")
        body = await self.storage.get(key)
        if body is None:
            return None
        return ZipAnswer(None, body, len(body), "hit")

    async def _fetch_zip(self, module: str, version: str, key: str) -> None:
        tmp_dir = self.storage.temp_dir()
        chain = self._router(module)
        holder: dict[str, Any] = {}
        self._prefetch_lookup(module, version)

        async def call(up: Upstream) -> Path:
            dst = tmp_dir / f"dl-{id(holder)}-{time.monotonic_ns()}.zip"
            holder.setdefault("tmps", []).append(dst)
            await up.zip(module, version, dst)
            return dst

        async def validate(up: Upstream, dst: Path) -> None:
            checked = await asyncio.to_thread(check_zip, dst, module, version)
            verdict = await self._verify(module, version, "zip", checked.h1)
            holder["meta"] = {
                "h1": checked.h1,
                "size": checked.size,
                "files": checked.files,
                "verdict": _verdict_dict(verdict),
            }

        try:
            fetched = await chain.fetch(
                f"{module}@{version}.zip",
                "zip",
                call,
                validate,
                self._bad_content_hook(module, version, "zip"),
            )
            meta = dict(holder["meta"], upstream=fetched.upstream, fetched=time.time())
            await self._put_json(key + ".json", meta)
            await self.storage.put_file(key, fetched.value)
        finally:
            for p in holder.get("tmps", []):
                with contextlib.suppress(OSError):
                    p.unlink()

    # --- shared flows ----------------------------------------------------

    async def _immutable_small(
        self,
        endpoint: str,
        key: str,
        module: str,
        version: str,
        call: Callable[[Upstream], Awaitable[bytes]],
        validate: Callable[[Upstream, bytes], Awaitable[None]],
    ) -> Answer:
        body = await self.storage.get(key)
        if body is not None:
            self._metrics.cache.labels(endpoint, "hit").inc()
            return Answer(body, "hit")
        self._check_negative(key, endpoint)

        async def fetch() -> Answer:
            async with self.storage.lock(key):
                return await fetch_locked()

        async def fetch_locked() -> Answer:
            again = await self.storage.get(key)
            if again is not None:
                return Answer(again, "hit")
            fetched = await self._router(module).fetch(
                f"{module}@{version}.{endpoint}",
                endpoint,
                call,
                validate,
                self._bad_content_hook(module, version, endpoint),
            )
            await self.storage.put_bytes(key, fetched.value)
            return Answer(fetched.value, "miss")

        answer = await self._remember_not_found(key, self.flights.do(key, fetch))
        self._metrics.cache.labels(endpoint, answer.cache).inc()
        return answer

    async def _mutable(
        self,
        endpoint: str,
        key: str,
        what: str,
        module: str,
        call: Callable[[Upstream], Awaitable[bytes]],
        validate: Callable[[Upstream, bytes], Awaitable[None]],
    ) -> Answer:
        st = await self.storage.stat(key)
        if st is not None and time.time() - st.mtime < self.mutable_ttl:
            body = await self.storage.get(key)
            if body is not None:
                self._metrics.cache.labels(endpoint, "hit").inc()
                return Answer(body, "hit")
        self._check_negative(key, endpoint)

        async def fetch() -> Answer:
            fetched = await self._router(module).fetch(
                what, endpoint, call, validate, self._bad_content_hook(module, "", endpoint)
            )
            await self.storage.put_bytes(key, fetched.value)
            return Answer(fetched.value, "miss")

        try:
            answer = await self._remember_not_found(key, self.flights.do(key, fetch))
        except (UpstreamError, VerificationError) as e:
            if st is None:
                raise
            body = await self.storage.get(key)
            if body is None:
                raise
            log.warning("serving stale", extra={"key": key, "reason": str(e).split("\n")[0]})
            answer = Answer(body, "stale", str(e).split("\n")[0][:200])
        self._metrics.cache.labels(endpoint, answer.cache).inc()
        return answer

    def _check_negative(self, key: str, endpoint: str) -> None:
        err = self._negative.get(key)
        if err is not None:
            self._metrics.cache.labels(endpoint, "negative").inc()
            raise type(err)(*err.args)

    async def _remember_not_found(self, key: str, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except NotFound as e:
            self._negative.put(key, e)
            raise

    async def _verify(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        try:
            verdict = await self._verifier.check(module, version, kind, h1)
        except VerificationError:
            self._metrics.verifications.labels("failed").inc()
            raise
        except (NotFound, UpstreamError) as e:
            # Reported as a verification failure so the chain does not blame the mirror.
            self._metrics.verifications.labels("failed").inc()
            first = str(e).split("\n", 1)[0]
            raise VerificationError(f"checksum database unavailable: {first}") from e
        self._metrics.verifications.labels("verified" if verdict.verified else "skipped").inc()
        return verdict

    def _prefetch_lookup(self, module: str, version: str) -> None:
        """Start the checksum-database lookup while the upstream fetch runs (saves a round trip)."""
        task = asyncio.get_running_loop().create_task(self._verifier.prefetch(module, version))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _bad_content_hook(
        self, module: str, version: str, file: str
    ) -> Callable[[str, GomirrorError], Awaitable[None]]:
        async def hook(upstream: str, err: GomirrorError) -> None:
            await self._events.bad_content(upstream, module, version, file, err)

        return hook

    async def _put_json(self, key: str, meta: dict[str, Any]) -> None:
        await self.storage.put_bytes(key, json.dumps(meta, sort_keys=True).encode())


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    obj: Any = verdict
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return {"verified": verdict.verified}


def _check_list(body: bytes) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidContent("version list is not UTF-8 text") from None
    if "\x00" in text:
        raise InvalidContent("version list contains NUL bytes")
    parse_list(body)


def _check_info(body: bytes, module: str, requested: str | None) -> None:
    info = parse_info(body)
    if not semver.is_valid(info.version) or not is_canonical_for(module, info.version):
        raise InvalidContent(f"info for {module} names invalid version {info.version!r}")
    if requested is not None and info.version != requested:
        raise InvalidContent(
            f"proxy returned info for version {info.version} instead of requested version {requested}"
        )
