"""service is gomirror's core: cache → fetch → store → answer, one method per protocol endpoint.

Arguments are unescaped, already validated module paths and versions. The
service asks storage first; on a miss it asks its one ``Upstream`` (in
production a router over chains of observed, verified mirrors: whatever it
returns has passed every check) inside ``Coordinator.once``, so concurrent
misses for one key cause one fetch, then stores the result atomically and
answers. Every answer says how long it may be cached:

- ``.mod``, ``.zip`` and canonical ``.info`` files never change: stored and
  served forever (``IMMUTABLE``);
- ``@v/list``, ``@latest`` and ``.info`` queries are fresh for
  ``mutable_ttl`` seconds, refetched when stale, and served stale (saying
  why) when every upstream fails or the list is ``off``; a list or
  ``@latest`` is then also built from the versions the cache holds
  (``gomirror.offline``), even if it was never fetched;
- not-found answers are remembered for ``negative_ttl`` seconds (and, with
  ``shared_negatives``, published so every instance on one Redis sees them), and answers
  no upstream could serve correctly (invalid content, checksum mismatch) for
  ``bad_answer_ttl`` seconds: repeating the same error (a stale copy is still
  served) instead of asking the mirrors again for every request.

A zip comes out of storage in the best form the backend offers: a redirect to
a presigned URL (from ``redirect_min_size`` bytes up, when the backend signs
URLs), a local file (sendfile), a byte stream (bounded memory), or bytes.
Next to each ``.mod`` and ``.zip`` a sidecar ``<file>.json`` records its ``h1:``, the verdict, the
upstream and when; the sidecar is written first, so a file never exists
without the facts it was stored with.

When the cache has no space left (``StorageFull``), a small file that was
fetched and checked is still answered, uncached (``pass``); so is a zip that
was downloaded and verified but could not be stored: it is streamed from its
temp file, held open (``gomirror.heldfile``) and removed once answered. A zip
whose download itself cannot be written (the temp files live on the cache's
disk) raises ``StorageFull`` ("cache full", 507). Each refused write is
handed to ``on_cache_full``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gomirror.answers import IMMUTABLE, STALE, Answer, FileAnswer, Lifetime
from gomirror.coordination.base import Coordinator
from gomirror.coordination.negative import SharedNegatives
from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    InvalidContent,
    NotFound,
    StorageFull,
    UpstreamError,
    UpstreamOff,
    VerificationError,
)
from gomirror.heldfile import HeldFile
from gomirror.module.info import is_canonical_for
from gomirror.module.paths import escape_path, escape_version
from gomirror.offline import cached_latest, cached_list
from gomirror.storage.base import Storage
from gomirror.upstream.base import Fetched, Upstream

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SIZE = 10_000
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
ZIP = "application/zip"
OFF_REASON = "upstream is off: answered from the cache"
T = TypeVar("T")


class NegativeCache:
    """Bounded memory of recent failed answers (not found, bad content): key → (expiry, error)."""

    def __init__(self, ttl: float, size: int = NEGATIVE_CACHE_SIZE) -> None:
        self.ttl = ttl
        self._size = size
        self._items: OrderedDict[str, tuple[float, GomirrorError]] = OrderedDict()

    def get(self, key: str) -> GomirrorError | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._items[key]
            return None
        return item[1]

    def put(self, key: str, err: GomirrorError) -> None:
        if self.ttl <= 0:
            return
        self._items[key] = (time.monotonic() + self.ttl, err)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def _fresh(err: GomirrorError) -> GomirrorError:
    """A new exception equal to err (same class, message and fields), to raise once more."""
    new = type(err).__new__(type(err))
    new.args = err.args
    new.__dict__.update(err.__dict__)
    return new


class Endpoints(Protocol):
    """The five protocol endpoints: what the HTTP layer serves (a ``Service``, or a wrapper of one)."""

    async def list(self, module: str) -> Answer: ...

    async def latest(self, module: str) -> Answer: ...

    async def info(self, module: str, query: str) -> Answer: ...

    async def mod(self, module: str, version: str) -> Answer: ...

    async def zip(self, module: str, version: str) -> FileAnswer: ...


class Service:
    """The proxy's core (see the module docstring)."""

    def __init__(
        self,
        *,
        storage: Storage,
        coordinator: Coordinator,
        upstream: Upstream,
        tmp_dir: Callable[[], Path],
        mutable_ttl: float = 60.0,
        negative_ttl: float = 30.0,
        bad_answer_ttl: float = 10.0,
        on_cache_full: Callable[[str, StorageFull], None] | None = None,
        redirect_min_size: int = 0,
        redirect_expiry: float = 900.0,
        shared_negatives: SharedNegatives | None = None,
    ) -> None:
        self.storage = storage
        self.redirect_min_size = redirect_min_size  # 0: never redirect
        self.redirect_expiry = redirect_expiry
        self.coordinator = coordinator
        self.upstream = upstream
        self._new_tmp = tmp_dir
        self.mutable_ttl = mutable_ttl
        self._negative = NegativeCache(negative_ttl)
        self._bad = NegativeCache(bad_answer_ttl)
        self._shared_negatives = shared_negatives
        self._on_cache_full = on_cache_full

    # --- endpoints -------------------------------------------------------

    async def list(self, module: str) -> Answer:
        key = f"{escape_path(module)}/@v/list"
        return await self._mutable(
            key,
            TEXT,
            lambda: self.upstream.list(module),
            offline=lambda stale: cached_list(self.storage, module, stale),
        )

    async def latest(self, module: str) -> Answer:
        key = f"{escape_path(module)}/@latest"
        return await self._mutable(
            key,
            JSON,
            lambda: self.upstream.latest(module),
            offline=lambda stale: cached_latest(self.storage, module, stale),
        )

    async def info(self, module: str, query: str) -> Answer:
        if is_canonical_for(module, query):
            key = f"{escape_path(module)}/@v/{escape_version(query)}.info"
            return await self._immutable(key, JSON, lambda: self.upstream.info(module, query))
        key = f"_gomirror/query/{escape_path(module)}/@v/{escape_version(query)}.info"
        return await self._mutable(key, JSON, lambda: self.upstream.info(module, query))

    async def mod(self, module: str, version: str) -> Answer:
        key = f"{escape_path(module)}/@v/{escape_version(version)}.mod"
        return await self._immutable(key, TEXT, lambda: self.upstream.mod(module, version))

    async def zip(self, module: str, version: str) -> FileAnswer:
        key = f"{escape_path(module)}/@v/{escape_version(version)}.zip"
        hit = await self._zip_from_storage(key, "hit")
        if hit is not None:
            return hit
        await self._check_negative(key)

        async def fetch() -> str | HeldFile:
            if await self.storage.stat(key) is not None:
                return "hit"
            held = await self._fetch_zip(module, version, key)
            return "miss" if held is None else held  # held: verified, not cached (cache full)

        # The flight yields only "hit"/"miss": a stream from storage can be read
        # once, so every caller opens its own after the shared fetch.
        for _ in range(2):
            # A second round when another writer replaced the sidecar between our two
            # writes (instances without a shared lock, e.g. Redis down): it has settled.
            cache = await self._remember_not_found(key, self.coordinator.once(key, fetch))
            if isinstance(cache, HeldFile):  # each caller reads the held file on its own
                return FileAnswer(cache.size, ZIP, IMMUTABLE, "pass", chunks=cache.chunks())
            stored = await self._zip_from_storage(key, cache)
            if stored is not None:
                return stored
        raise UpstreamError(f"{module}@{version}.zip vanished from the cache after writing")

    # --- zip -------------------------------------------------------------

    async def _zip_from_storage(self, key: str, cache: str) -> FileAnswer | None:
        st = await self.storage.stat(key)
        if st is None:
            return None
        kind: Any = cache
        if 0 < self.redirect_min_size <= st.size:
            url = await self.storage.presign(key, self.redirect_expiry)
            if url is not None:
                return FileAnswer(st.size, ZIP, IMMUTABLE, kind, redirect=url)
        path = await self.storage.local_path(key)
        if path is not None:
            return FileAnswer(st.size, ZIP, IMMUTABLE, kind, path=path)
        chunks = await self.storage.stream(key)
        if chunks is not None:
            return FileAnswer(st.size, ZIP, IMMUTABLE, kind, chunks=chunks)
        body = await self.storage.get(key)
        if body is None:
            return None
        return FileAnswer(len(body), ZIP, IMMUTABLE, kind, body=body)

    async def _fetch_zip(self, module: str, version: str, key: str) -> HeldFile | None:
        """Download, verify and store the zip; when only storing fails, the held download."""
        dst = self._new_tmp()
        held: HeldFile | None = None
        try:
            fetched = await self.upstream.zip(module, version, dst)
            # Opened before storing: a failed store may remove the name, not the bytes.
            held = HeldFile.open(dst)
            await self._put_sidecar(key, fetched)
            await self.storage.put_file(key, dst)
        except StorageFull as e:
            self._cache_full(key, e)
            if held is not None:
                log.warning("zip served uncached", extra={"key": key, "reason": "cache full"})
                return held
            raise StorageFull(
                f"no space left in the cache to download {module}@{version}.zip; "
                "it is served again once space is freed"
            ) from None
        except BaseException:
            if held is not None:
                held.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                dst.unlink()
        if held is not None:
            held.close()
        return None

    # --- shared flows ----------------------------------------------------

    async def _immutable(
        self, key: str, content_type: str, fetch_upstream: Callable[[], Awaitable[Fetched]]
    ) -> Answer:
        body = await self.storage.get(key)
        if body is not None:
            return Answer(body, content_type, IMMUTABLE, "hit")
        await self._check_negative(key)

        async def fetch() -> Answer:
            again = await self.storage.get(key)
            if again is not None:
                return Answer(again, content_type, IMMUTABLE, "hit")
            fetched = await fetch_upstream()
            try:
                if fetched.checked is not None:
                    await self._put_sidecar(key, fetched)
                await self.storage.put_bytes(key, fetched.body)
            except StorageFull as e:
                self._cache_full(key, e)
                return Answer(fetched.body, content_type, IMMUTABLE, "pass")  # checked, not kept
            return Answer(fetched.body, content_type, IMMUTABLE, "miss")

        return await self._remember_not_found(key, self.coordinator.once(key, fetch))

    async def _mutable(
        self,
        key: str,
        content_type: str,
        fetch_upstream: Callable[[], Awaitable[Fetched]],
        *,
        offline: Callable[[bytes | None], Awaitable[bytes | None]] | None = None,
    ) -> Answer:
        st = await self.storage.stat(key)
        if st is not None:
            age = time.time() - st.mtime
            if age < self.mutable_ttl:
                body = await self.storage.get(key)
                if body is not None:
                    return Answer(body, content_type, Lifetime.fresh(self.mutable_ttl - age), "hit")

        async def fetch() -> Answer:
            fetched = await fetch_upstream()
            if fetched.stale_reason is not None:
                # The upstream (another gomirror) answered from its own stale copy: pass it
                # on as stale and keep nothing, so the next request asks again.
                reason = f"{fetched.source}: {fetched.stale_reason}"
                return Answer(fetched.body, content_type, STALE, "stale", reason)
            fresh = Lifetime.fresh(self.mutable_ttl)
            try:
                await self.storage.put_bytes(key, fetched.body)
            except StorageFull as e:
                self._cache_full(key, e)
                return Answer(fetched.body, content_type, fresh, "pass")  # checked, not kept
            return Answer(fetched.body, content_type, fresh, "miss")

        try:
            await self._check_negative(key)  # inside: a remembered bad answer gets the stale copy
            return await self._remember_not_found(key, self.coordinator.once(key, fetch))
        except (UpstreamError, VerificationError, UpstreamOff) as e:
            # Offline (``off``, or every upstream failed): the stale copy, merged with what
            # the cache holds of the module (gomirror.offline), else the error.
            body = await self.storage.get(key) if st is not None else None
            if offline is not None:
                body = await offline(body)
            if body is None:
                raise
            reason = OFF_REASON if isinstance(e, UpstreamOff) else str(e).split("\n")[0][:200]
            log.warning("serving stale", extra={"key": key, "reason": reason})
            return Answer(body, content_type, STALE, "stale", reason)

    def _cache_full(self, key: str, err: StorageFull) -> None:
        if self._on_cache_full is not None:
            self._on_cache_full(key, err)

    async def _check_negative(self, key: str) -> None:
        err = self._negative.get(key) or self._bad.get(key)
        if err is None and self._shared_negatives is not None:
            err = await self._shared_negatives.get(key)  # another instance's not-found
            if err is not None:
                self._negative.put(key, err)
        if err is not None:
            raise _fresh(err)

    async def _remember_not_found(self, key: str, aw: Awaitable[T]) -> T:
        """Await aw; remember a not-found answer, and a bad answer no upstream got right."""
        try:
            return await aw
        except NotFound as e:
            self._negative.put(key, e)
            if self._shared_negatives is not None:
                await self._shared_negatives.put(key, e)
            raise
        except (InvalidContent, ChecksumMismatch) as e:
            self._bad.put(key, e)
            raise

    async def _put_sidecar(self, key: str, fetched: Fetched) -> None:
        checked = fetched.checked
        meta: dict[str, Any] = {"upstream": fetched.source, "fetched": time.time()}
        if checked is not None:
            meta.update(h1=checked.h1, verdict=checked.verdict)
            if key.endswith(".zip"):
                meta.update(size=checked.size, files=checked.files)
        await self.storage.put_bytes(key + ".json", json.dumps(meta, sort_keys=True).encode())
