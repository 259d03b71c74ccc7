"""upstream.verified wraps an upstream so that only checked content comes out of it.

``VerifiedUpstream(inner, verifier)`` is an Upstream that returns what
``inner`` served only after the protocol's rules and the checksum database
agree with it, and raises otherwise:

- ``@v/list``: UTF-8 text without NULs; ``.info``/``@latest``: JSON naming a
  canonical version valid for the module (the version asked for, when one was);
- ``.mod``: parses and names the module; its ``h1:`` must equal the database's;
- ``.zip``: every zip rule (prefix, sizes, paths, duplicates, case collisions)
  checked while its ``h1:`` is computed in one streaming pass in a worker
  thread; the ``h1:`` must equal the database's.

Broken content raises ``InvalidContent`` and a database disagreement
``ChecksumMismatch``: both are that mirror's fault, so a chain tries the next
one. A database that cannot be asked raises ``VerificationError``, which stops
a chain. The database lookup starts while the file downloads, so a cold
verification costs about one round trip less than asking afterwards.
The verdict travels back in ``Fetched.checked``; nothing is shared between
calls, so two attempts may run side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from gomirror.errors import NotFound, UpstreamError, VerificationError
from gomirror.module.dirhash import hash_gomod
from gomirror.module.gomod import check_gomod_module
from gomirror.module.info import check_info_body, check_list_body, is_canonical_for
from gomirror.module.modzip import check_zip
from gomirror.upstream.base import Checked, Fetched, FirstByte, Upstream

Kind = Literal["zip", "mod"]
T = TypeVar("T")


class Verdict(Protocol):
    """What a verifier concluded (``gomirror.sumdb.verifier.Verdict`` is one)."""

    @property
    def verified(self) -> bool: ...


class Verifier(Protocol):
    """Checks an ``h1:`` against the checksum database.

    ``check`` returns a verdict (verified, or skipped and why) or raises
    ``ChecksumMismatch``/``VerificationError``; ``prefetch`` warms the lookup
    and never raises.
    """

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict: ...

    async def prefetch(self, module: str, version: str) -> None: ...


def verdict_dict(verdict: Verdict) -> dict[str, Any]:
    """A verdict as plain data for the sidecar."""
    obj: Any = verdict
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return {"verified": verdict.verified}


INLINE_CHECK_BYTES = 64 << 10  # bigger bodies are checked in a worker thread


async def _off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """Run a check inline when the body is small, else in a thread, so the loop never stalls."""
    if size <= INLINE_CHECK_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


class VerifiedUpstream:
    """Checks everything ``inner`` serves (see the module docstring)."""

    def __init__(self, inner: Upstream, verifier: Verifier) -> None:
        self.inner = inner
        self._verifier = verifier
        self._lookups: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.inner.name

    async def list(self, module: str) -> Fetched:
        fetched = await self.inner.list(module)
        await _off_loop(len(fetched.body), check_list_body, fetched.body)
        return fetched

    async def latest(self, module: str) -> Fetched:
        fetched = await self.inner.latest(module)
        await _off_loop(len(fetched.body), check_info_body, fetched.body, module, None)
        return fetched

    async def info(self, module: str, query: str) -> Fetched:
        fetched = await self.inner.info(module, query)
        want = query if is_canonical_for(module, query) else None
        await _off_loop(len(fetched.body), check_info_body, fetched.body, module, want)
        return fetched

    async def mod(self, module: str, version: str) -> Fetched:
        self._start_lookup(module, version)
        fetched = await self.inner.mod(module, version)
        await _off_loop(len(fetched.body), check_gomod_module, fetched.body, module, version)
        h1 = await _off_loop(len(fetched.body), hash_gomod, fetched.body)
        verdict = await self._check(module, version, "mod", h1)
        return replace(fetched, checked=Checked(h1, verdict_dict(verdict)))

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        self._start_lookup(module, version)
        fetched = await self.inner.zip(module, version, dst, first_byte)
        if fetched.built is not None:
            # Written here by create_zip, which applied the zip rules and hashed what it wrote.
            h1, size, files = fetched.built.h1, fetched.built.size, fetched.built.files
        else:
            checked = await asyncio.to_thread(check_zip, dst, module, version)
            h1, size, files = checked.h1, checked.size, checked.files
        verdict = await self._check(module, version, "zip", h1)
        return replace(fetched, built=None, checked=Checked(h1, verdict_dict(verdict), size, files))

    async def close(self) -> None:
        for task in list(self._lookups):
            task.cancel()
        await self.inner.close()

    def _start_lookup(self, module: str, version: str) -> None:
        task = asyncio.get_running_loop().create_task(self._verifier.prefetch(module, version))
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        try:
            return await self._verifier.check(module, version, kind, h1)
        except VerificationError:
            raise
        except (NotFound, UpstreamError) as e:
            # The database, not the mirror, failed: say so, so the chain stops here.
            first = str(e).split("\n", 1)[0]
            raise VerificationError(f"checksum database unavailable: {first}") from e
