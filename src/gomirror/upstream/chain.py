"""upstream.chain walks an ordered list of upstreams with Go's fall-through rules.

``Chain.fetch`` tries each upstream in turn. After an entry written with ``,``
only not-found (404/410) falls through; after ``|`` every error does; the
``failover`` policy also falls through on transient failures (5xx, 429,
timeouts, refused connections) after a ``,``. Content that an upstream served
but the caller's ``validate`` rejects (a corrupt zip, a checksum mismatch) is
never returned: it is reported through ``on_bad_content`` and the next upstream
is tried whatever the separator. When everything fails, the error reported is
chosen as the go command chooses it (protocol.md §1.5): the error from
``direct``, else the last error that is not a not-found, else the last
not-found; its message lists every upstream asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    Gone,
    InvalidContent,
    NotFound,
    UpstreamError,
    VerificationError,
)
from gomirror.upstream.base import Upstream
from gomirror.upstream.proxy import UpstreamUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_DETAIL_LINES = 6  # the go command shows 8 lines; keep room for the headline


@dataclass(frozen=True, slots=True)
class Link:
    """One upstream in the chain and whether any error after it falls through."""

    upstream: Upstream
    fallback_on_error: bool
    is_direct: bool = False


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """A successful fetch: the value and the upstream that served it."""

    value: T
    upstream: str


class OffUpstreamError(NotFound):
    """GOPROXY=off: the list ends here."""


Observer = Callable[[str, str, str, float], None]  # upstream, op, outcome, seconds
BadContentHook = Callable[[str, GomirrorError], Awaitable[None]]  # upstream, error


def outcome_of(err: BaseException | None) -> str:
    """A short label for metrics."""
    if err is None:
        return "ok"
    if isinstance(err, Gone):
        return "gone"
    if isinstance(err, NotFound):
        return "not_found"
    if isinstance(err, ChecksumMismatch):
        return "checksum_mismatch"
    if isinstance(err, InvalidContent):
        return "invalid_content"
    if isinstance(err, VerificationError):
        return "verification_error"
    if isinstance(err, UpstreamUnavailable):
        return "unavailable"
    return "error"


class Chain:
    """An ordered list of upstreams under one policy (see the module docstring)."""

    def __init__(
        self,
        links: Sequence[Link],
        *,
        policy: str = "go",
        observer: Observer | None = None,
    ) -> None:
        self.links = list(links)
        self.policy = policy
        self._observe = observer

    @property
    def names(self) -> list[str]:
        return [link.upstream.name for link in self.links]

    async def fetch(
        self,
        what: str,
        op: str,
        call: Callable[[Upstream], Awaitable[T]],
        validate: Callable[[Upstream, T], Awaitable[None]] | None = None,
        on_bad_content: BadContentHook | None = None,
    ) -> Fetched[T]:
        """Return the first valid answer; ``what`` names the request in error messages."""
        attempts: list[tuple[Link, GomirrorError]] = []
        for link in self.links:
            up = link.upstream
            started = time.monotonic()
            err: GomirrorError | None = None
            try:
                value = await call(up)
                if validate is not None:
                    await validate(up, value)
            except (InvalidContent, ChecksumMismatch) as e:
                err = e
                if on_bad_content is not None:
                    await on_bad_content(up.name, e)
            except VerificationError as e:
                # The checksum database failed (unreachable, fork, unknown version):
                # not this mirror's fault, and asking the next mirror cannot help.
                err = e
            except (NotFound, UpstreamError) as e:
                err = e
            finally:
                if self._observe is not None:
                    self._observe(up.name, op, outcome_of(err), time.monotonic() - started)
            if err is None:
                return Fetched(value, up.name)
            attempts.append((link, err))
            log.debug("upstream attempt failed", extra={"upstream": up.name, "what": what})
            if isinstance(err, OffUpstreamError):
                break
            if isinstance(err, VerificationError) and not isinstance(err, ChecksumMismatch):
                break
            if not self._falls_through(link, err):
                break
        raise self._final_error(what, attempts)

    def _falls_through(self, link: Link, err: GomirrorError) -> bool:
        if isinstance(err, NotFound | InvalidContent | ChecksumMismatch):
            return True
        if link.fallback_on_error:
            return True
        return self.policy == "failover" and isinstance(err, UpstreamUnavailable)

    def _final_error(self, what: str, attempts: list[tuple[Link, GomirrorError]]) -> GomirrorError:
        if not attempts:
            return NotFound(f"not found: {what}: no upstream configured")
        chosen: GomirrorError | None = None
        for link, err in attempts:
            if link.is_direct:
                chosen = err
        if chosen is None:
            hard = [e for _, e in attempts if not isinstance(e, NotFound)]
            chosen = hard[-1] if hard else attempts[-1][1]
        lines = [f"{link.upstream.name}: {_short(err)}" for link, err in attempts]
        if len(lines) > MAX_DETAIL_LINES:
            lines = [
                *lines[: MAX_DETAIL_LINES - 1],
                f"... and {len(lines) - MAX_DETAIL_LINES + 1} more",
            ]
        headline = _headline(what, chosen)
        message = headline + "\n" + "\n".join(f"  {line}" for line in lines)
        if isinstance(chosen, ChecksumMismatch):
            new: GomirrorError = ChecksumMismatch(
                chosen.module, chosen.version, chosen.kind, chosen.expected, chosen.got
            )
            new.args = (message,)
            return new
        return type(chosen)(message)


def _short(err: GomirrorError) -> str:
    text = str(err).split("\n", 1)[0]
    if isinstance(err, ChecksumMismatch):
        return f"checksum mismatch (served {err.got})"
    # Messages from HttpUpstream start with the URL; drop it, the line already names it.
    head, sep, rest = text.partition(": ")
    if sep and ("://" in head or head.startswith("direct")):
        text = rest
    return text[:160]


def _headline(what: str, err: GomirrorError) -> str:
    if isinstance(err, ChecksumMismatch):
        return str(err)
    if isinstance(err, NotFound):
        return f"not found: {what}"
    if isinstance(err, InvalidContent):
        return f"invalid content from every upstream for {what}"
    if isinstance(err, VerificationError):
        return f"verification failed: {what}: {str(err).splitlines()[0]}"
    return f"upstream error: {what}"
