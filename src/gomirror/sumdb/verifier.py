"""verifier checks upstream content against the checksum database before gomirror caches it.

``SumdbVerifier.check(module, version, kind, h1)`` returns a ``Verdict`` when the
database's ``h1:`` for the zip (``kind="zip"``) or the go.mod (``kind="mod"``)
equals ``h1``; it raises ``ChecksumMismatch`` when it differs and
``VerificationError`` when the database has no record (or no matching line).
Modules matching the no-sumdb patterns (GONOSUMDB syntax, Go's
MatchPrefixPatterns) are never sent to the database and get an unverified,
"skipped" verdict. ``NoVerifier`` is the GOSUMDB=off policy. ``parse_sumdb_spec``
reads a GOSUMDB-style setting (``sum.golang.org``, ``<key>``, ``<key> <url>``,
``off``) with Go's rules and error texts.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from gomirror.errors import (
    ChecksumMismatch,
    ConfigError,
    GomirrorError,
    NotFound,
    VerificationError,
)
from gomirror.module.paths import match_prefix_patterns
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.note import KeyFormatError, parse_verifier

Kind = Literal["zip", "mod"]

# The only name the go command expands to a key (cmd/go/internal/modfetch/key.go).
KNOWN_SUMDB_KEYS: Mapping[str, str] = MappingProxyType(
    {"sum.golang.org": "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"}
)
# Modules the go command verifies even when GONOSUMDB matches them.
ALWAYS_VERIFIED = "golang.org/toolchain"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a successful check: verified against a tree, or skipped and why."""

    verified: bool
    db: str | None
    tree_size: int | None
    note: str


@dataclass(frozen=True, slots=True)
class SumdbSpec:
    """A parsed GOSUMDB setting: database name, verifier key, optional explicit URL."""

    name: str
    verifier_key: str
    url: str | None


def parse_sumdb_spec(value: str) -> SumdbSpec | None:
    """Parse a GOSUMDB-style setting; None means ``off``. Raises ConfigError with Go's text."""
    if value == "sum.golang.google.cn":
        # As the go command does: the China endpoint is an explicit URL for the same log.
        value = "sum.golang.org https://sum.golang.google.cn"
    if value == "off":
        return None
    fields = value.split()
    if not fields:
        raise ConfigError("missing GOSUMDB")
    if len(fields) > 2:
        raise ConfigError("invalid GOSUMDB: too many fields")
    key = KNOWN_SUMDB_KEYS.get(fields[0], fields[0])
    try:
        name = parse_verifier(key).name
    except KeyFormatError as e:
        raise ConfigError(f"invalid GOSUMDB: {e}") from None
    direct = urllib.parse.urlsplit("https://" + name)
    if (
        name.endswith("/")
        or not direct.hostname
        or direct.username is not None
        or direct.query
        or direct.fragment
        or "%" in name
        or "?" in name
        or "#" in name
    ):
        raise ConfigError(f"invalid sumdb name (must be host[/path]): {name}")
    url = None
    if len(fields) == 2:
        parsed = urllib.parse.urlsplit(fields[1])
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"invalid GOSUMDB URL: {fields[1]}")
        url = fields[1]
    return SumdbSpec(name, key, url)


class NoVerifier:
    """The verifier used with GOSUMDB=off: nothing is checked."""

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        return Verdict(False, None, None, "skipped: checksum database disabled (GOSUMDB=off)")

    async def prefetch(self, module: str, version: str) -> None:
        """Nothing to warm: nothing is checked."""


class SumdbVerifier:
    """Checks h1 hashes against one checksum database (see the module docstring)."""

    def __init__(self, client: SumdbClient, *, nosumdb: str = "") -> None:
        self.client = client
        self.nosumdb = nosumdb

    def skips(self, module: str) -> bool:
        """Report whether module matches the no-sumdb patterns (and is never looked up)."""
        return module != ALWAYS_VERIFIED and match_prefix_patterns(self.nosumdb, module)

    async def prefetch(self, module: str, version: str) -> None:
        """Start the lookup early (while the upstream fetch runs); errors surface in check."""
        if self.skips(module):
            return  # never sent to the database
        try:
            await self.client.lookup(module, version)
        except (GomirrorError, OSError):
            pass  # check() repeats the lookup and reports the failure

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        """Verify h1 for the zip or go.mod of module@version; raise on any doubt."""
        name = self.client.name
        if self.skips(module):
            return Verdict(False, None, None, f"skipped: matches nosumdb {self.nosumdb}")
        suffix = "/go.mod" if kind == "mod" else ""
        try:
            lines = await self.client.lookup(module, version)
        except NotFound as e:
            raise VerificationError(
                f"{module}@{version}: not in checksum database {name}: {e}"
            ) from e
        prefix = f"{module} {version}{suffix} "
        expected = [
            line[len(prefix) :]
            for line in lines
            if line.startswith(prefix) and line[len(prefix) :].startswith("h1:")
        ]
        if not expected:
            raise VerificationError(
                f"{module}@{version}{suffix}: checksum missing from sumdb response:"
                f" not in checksum database {name}"
            )
        if h1 not in expected:
            raise ChecksumMismatch(module, version, "go.mod" if suffix else "zip", expected[0], h1)
        size = self.client.latest.n
        return Verdict(True, name, size, f"verified: {name} tree {size}")
