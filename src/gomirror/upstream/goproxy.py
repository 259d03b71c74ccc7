"""upstream.goproxy parses an upstream list written in GOPROXY syntax.

The rules are the go command's (protocol.md §1.6): entries are separated by
``,`` or ``|``; the separator *after* an entry decides whether any error falls
through (``|``) or only not-found (``,``); ``off`` and ``direct`` end the list;
an entry with a dot, colon or slash but no scheme gets ``https://``; only
``https``, ``http`` and ``file`` schemes exist for the go command, and gomirror
accepts only ``https`` and ``http``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gomirror.errors import ConfigError

KEYWORDS = ("off", "direct")


@dataclass(frozen=True, slots=True)
class Entry:
    """One element of the list: a URL, ``off`` or ``direct``, and its fall-through rule."""

    target: str
    fallback_on_error: bool

    @property
    def is_keyword(self) -> bool:
        return self.target in KEYWORDS


def parse_goproxy(value: str) -> list[Entry]:
    """Parse a GOPROXY-style list; raises ConfigError with Go's wording where Go has one."""
    entries: list[Entry] = []
    parts = re.split(r"([,|])", value)
    # parts alternates item, separator, item, ...; the separator after an item rules it.
    for i in range(0, len(parts), 2):
        item = parts[i].strip()
        sep = parts[i + 1] if i + 1 < len(parts) else ","
        if not item:
            continue
        if item in KEYWORDS:
            entries.append(Entry(item, sep == "|"))
            break  # off and direct end the list, as in Go
        entries.append(Entry(_normalize_url(item), sep == "|"))
    if not entries:
        raise ConfigError(
            "invalid setting upstream: GOPROXY list is not the empty string, but contains no entries"
        )
    return entries


def _normalize_url(item: str) -> str:
    if "://" not in item and not item.startswith("/") and any(c in item for c in ".:/"):
        item = "https://" + item
    u = urlsplit(item)
    if u.scheme == "file":
        raise ConfigError(f"invalid setting upstream: file:// upstreams are not supported: {item}")
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ConfigError(
            f"invalid setting upstream: invalid proxy URL scheme (must be https or http): {item}"
        )
    return item.rstrip("/")


def redact_url(url: str) -> str:
    """The URL without userinfo, safe for logs, metrics and error bodies."""
    u = urlsplit(url)
    if u.username is None and u.password is None:
        return url
    host = u.hostname or ""
    if u.port:
        host += f":{u.port}"
    return u._replace(netloc=host).geturl()
