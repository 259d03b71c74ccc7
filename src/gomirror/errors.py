"""errors defines gomirror's domain exceptions; none of them knows about HTTP.

The server maps each class to a status code in exactly one place
(``gomirror.server.responses``). Messages are short, single-purpose sentences
because the go command shows at most 8 lines of an error body to the user.
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


class UpstreamError(GomirrorError):
    """An upstream failed in a way that is not "not found" (5xx, timeout, refused...)."""


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
    """The cache backend failed (disk full, permission, object store unreachable)."""
