"""guard keeps private module paths away from every checksum database.

``PrivateGuard(inner, private)`` wraps the ``/sumdb/`` pass-through with the
same ``handle_path(rest)`` method. A lookup whose module path matches the
``private`` patterns (GOPRIVATE syntax, Go's MatchPrefixPatterns) raises
NotFound and is never forwarded, so a misconfigured client cannot leak the
name. Host names are case-insensitive, so the path is matched both as given
and in lower case. Everything else goes to ``inner`` unchanged.
"""

from __future__ import annotations

from typing import Protocol

from gomirror.answers import Answer
from gomirror.errors import GomirrorError, NotFound
from gomirror.module.paths import match_prefix_patterns, unescape_path

PRIVATE_MESSAGE = "not found: private module paths are never sent to a checksum database"


class PassThrough(Protocol):
    """What the guard wraps: ``SumdbPassThrough``."""

    def split(self, path: str) -> tuple[str, str] | None: ...

    async def handle_path(self, path: str) -> Answer: ...


class PrivateGuard:
    """Refuses lookups of private modules, forwards the rest (see the module docstring)."""

    def __init__(self, inner: PassThrough, private: str) -> None:
        self._inner = inner
        self._private = private
        self._private_lower = private.lower()

    def split(self, path: str) -> tuple[str, str] | None:
        return self._inner.split(path)

    def is_private(self, module: str) -> bool:
        """Report whether module (or its lower-case form) matches the private patterns."""
        if not self._private:
            return False
        return match_prefix_patterns(self._private, module) or match_prefix_patterns(
            self._private_lower, module.lower()
        )

    async def handle_path(self, path: str) -> Answer:
        parts = self._inner.split(path)
        if parts is not None and parts[1].startswith("lookup/") and self._private:
            escaped = parts[1].removeprefix("lookup/").rpartition("@")[0]
            try:
                module = unescape_path(escaped)
            except GomirrorError:
                # Malformed: the pass-through rejects it anyway, but a path that
                # names a private module is refused as private, whatever its case.
                module = escaped.replace("!", "")
            if module and self.is_private(module):
                raise NotFound(PRIVATE_MESSAGE)
        return await self._inner.handle_path(path)
