"""server.responses is the one place where domain errors and lifetimes become HTTP.

Every error body is ``text/plain; charset=utf-8`` with the useful sentence
first and at most 8 lines / 648 bytes, because that is all the go command shows
(protocol.md §1.5). Every ``Cache-Control`` value is made here, from the
``Lifetime`` a domain answer carries (``cache_control``) or from the error
class (``error_answer``). Unexpected exceptions become a bare 500 with no
stack trace in the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from gomirror.answers import Lifetime
from gomirror.errors import (
    ChecksumMismatch,
    Forbidden,
    GomirrorError,
    Gone,
    InvalidRequest,
    NotFound,
    Refused,
    StorageError,
    StorageFull,
    Unauthorized,
    UpstreamError,
    UpstreamTimeout,
    VerificationError,
)

IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
NOT_FOUND_CACHE = "public, max-age=60"
ERROR_CACHE = "no-store"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
ZIP = "application/zip"
MAX_BODY_LINES = 8
MAX_BODY_BYTES = 648


STALE_CACHE = "no-cache"


def cache_control(lifetime: Lifetime) -> str:
    """The Cache-Control header for an answer with this lifetime."""
    if lifetime.stale:
        return STALE_CACHE
    if lifetime.seconds is None:
        return IMMUTABLE_CACHE
    if lifetime.seconds <= 0:
        return ERROR_CACHE
    return f"public, max-age={int(lifetime.seconds)}"


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    body: bytes
    cache_control: str


def error_body(message: str) -> bytes:
    """Trim a message to what the go command will display, ending in a newline."""
    lines = [ln.rstrip() for ln in message.replace("\r", "").split("\n")]
    lines = [ln for ln in lines if ln.strip()][:MAX_BODY_LINES]
    out: list[str] = []
    size = 0
    for ln in lines:
        ln = "".join(c if c.isprintable() else "?" for c in ln)
        if size + len(ln.encode()) + 1 > MAX_BODY_BYTES:
            # Cut the line that does not fit rather than drop it: a long first
            # line is usually the one sentence the user needs.
            room = MAX_BODY_BYTES - size - 1
            cut = ln.encode()[:room].decode("utf-8", "ignore")
            if cut:
                out.append(cut)
            break
        out.append(ln)
        size += len(ln.encode()) + 1
    return ("\n".join(out) + "\n").encode()


def error_answer(err: BaseException) -> ErrorAnswer:
    """Map an exception to status, body and cache lifetime."""
    if isinstance(err, Gone):
        return ErrorAnswer(410, error_body(str(err)), NOT_FOUND_CACHE)
    if isinstance(err, NotFound):
        return ErrorAnswer(404, error_body(str(err)), NOT_FOUND_CACHE)
    if isinstance(err, InvalidRequest):
        return ErrorAnswer(400, error_body(f"bad request: {err}"), NOT_FOUND_CACHE)
    if isinstance(err, ChecksumMismatch):
        return ErrorAnswer(502, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, VerificationError):
        return ErrorAnswer(502, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, UpstreamTimeout):
        return ErrorAnswer(504, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, UpstreamError):
        return ErrorAnswer(502, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, StorageFull):
        return ErrorAnswer(507, error_body(f"cache full: {err}"), ERROR_CACHE)
    if isinstance(err, StorageError):
        return ErrorAnswer(500, error_body(f"cache error: {err}"), ERROR_CACHE)
    if isinstance(err, Forbidden):
        return ErrorAnswer(403, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, Unauthorized):
        return ErrorAnswer(401, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, Refused):
        return ErrorAnswer(409, error_body(str(err)), ERROR_CACHE)
    if isinstance(err, GomirrorError):
        return ErrorAnswer(500, error_body(str(err)), ERROR_CACHE)
    return ErrorAnswer(500, b"internal error\n", ERROR_CACHE)
