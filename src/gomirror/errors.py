"""errors defines every domain exception gomirror raises on purpose; none of them knows about HTTP.

``gomirror.server.responses`` maps each class to a status, a body and a cache
lifetime, in one place. Messages are short sentences with the useful part
first, because the go command shows at most 8 lines of an error body.

The tree::

    GomirrorError
    ├── ConfigError                a setting is invalid; the message names the key
    ├── InvalidRequest             the client's request is malformed (400)
    │   ├── InvalidPath            a module or file path breaks Go's path rules
    │   └── InvalidVersion         a version breaks Go's version rules
    ├── NotFound                   nothing has this module file (404)
    │   ├── Gone                   an upstream answered 410: withdrawn (410)
    │   └── UpstreamOff            the list reached ``off`` (404)
    ├── UpstreamError              an upstream failed in a way that is not "not found" (502)
    │   ├── UpstreamUnavailable    refused, reset, 5xx, 429: not answering well; failover may skip it
    │   │   ├── UpstreamTimeout    no connection, no byte, or too slow a transfer in time (504)
    │   │   └── RateLimited        a 429 whose Retry-After says when to come back
    │   ├── UpstreamRejected       a 4xx other than 404/410/429: it refuses this request
    │   └── InvalidContent         a 200 whose content breaks the protocol's rules
    ├── VerificationError          content could not be proven to match the checksum database (502)
    │   ├── ChecksumMismatch       content differs from the database's record
    │   └── SumdbError             the database misbehaved: signature, fork, rollback, proof
    ├── StorageError               the cache backend failed (500)
    │   └── StorageFull            no space left: serve without caching, say "cache full"
    ├── Unauthorized               an admin request without credentials (401)
    │   └── Forbidden              an admin request with wrong credentials (403)
    └── Refused                    an operator action that needs ``force`` was asked without it (409)

Two families matter to the upstream chain: ``NotFound`` is the only error Go's
``,`` separator falls through on, and ``InvalidContent``/``ChecksumMismatch``
always fall through (that mirror's content is bad; another may be good), while
any other ``VerificationError`` stops the chain (the database, not the mirror,
failed, and asking another mirror cannot help).
"""

from __future__ import annotations


class GomirrorError(Exception):
    """Base of every error gomirror raises on purpose."""


class ConfigError(GomirrorError):
    """A setting is invalid; the message names the key."""


class InvalidRequest(GomirrorError):
    """The client's request is malformed (bad path, bad version syntax)."""


class InvalidPath(InvalidRequest):
    """A module path, import path or file path breaks Go's path rules."""


class InvalidVersion(InvalidRequest):
    """A version string breaks Go's version rules for the given module."""


class NotFound(GomirrorError):
    """The module or version does not exist anywhere gomirror looked (404)."""


class Gone(NotFound):
    """An upstream answered 410 Gone: the content existed but is withdrawn."""


class UpstreamOff(NotFound):
    """The upstream list reached ``off``: module lookups are disabled there."""


class UpstreamError(GomirrorError):
    """An upstream failed in a way that is not "not found" (5xx, timeout, refused...)."""


class UpstreamUnavailable(UpstreamError):
    """Connection refused/reset, DNS failure, 5xx or 429: the mirror is not answering well."""


class UpstreamTimeout(UpstreamUnavailable):
    """The mirror did not connect, send, or keep sending fast enough within the limits."""


class RateLimited(UpstreamUnavailable):
    """A 429 answer; ``retry_after`` is how many seconds the mirror asked us to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamRejected(UpstreamError):
    """A 4xx other than 404/410/429: the mirror refuses this request."""


class InvalidContent(UpstreamError):
    """An upstream answered 200 but the content breaks the protocol's rules."""


class VerificationError(GomirrorError):
    """Content could not be proven to match the checksum database."""


class ChecksumMismatch(VerificationError):
    """Content differs from what the checksum database records."""

    def __init__(self, module: str, version: str, kind: str, expected: str, got: str) -> None:
        self.module = module
        self.version = version
        self.kind = kind  # "zip" or "go.mod"
        self.expected = expected
        self.got = got
        what = f"{module}@{version}" + ("/go.mod" if kind == "go.mod" else "")
        super().__init__(
            f"checksum mismatch for {what}: sumdb has {expected}, upstream served {got}"
        )


class SumdbError(VerificationError):
    """The checksum database misbehaved: bad signature, fork, rollback, bad proof."""


class StorageError(GomirrorError):
    """The cache backend failed (permission, object store unreachable, corrupt object)."""


class StorageFull(StorageError):
    """The cache has no space left; content can still be streamed through uncached."""


class Unauthorized(GomirrorError):
    """An admin request carried no credentials (or not a bearer token)."""


class Forbidden(Unauthorized):
    """An admin request carried credentials that are not the configured token."""


class Refused(GomirrorError):
    """An operator action would drop verified immutable files and ``force`` was not given."""
