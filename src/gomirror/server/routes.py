"""server.routes turns a raw request path into a typed protocol request, before any I/O.

The go command percent-escapes paths (``!`` arrives as ``%21``) and case-encodes
module paths and versions (protocol.md §1.3-1.4). ``parse_path`` undoes both,
splits at the last ``/@v/`` (or the ``/@latest`` suffix), and validates module
path and version with Go's rules. Syntax errors raise ``InvalidRequest``
(answered 400); a well-formed path that cannot name a module file raises
``NotFound`` (404), so a client walking a GOPROXY list falls through. A path
element longer than 255 bytes cannot be a cached file on any file system, so
it is "not found" too. The query string is ignored: the protocol uses none.
``RouteCache`` memoises parsed paths for one server, bounded by bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from gomirror.errors import GomirrorError, InvalidRequest, NotFound
from gomirror.module.paths import canonical_version, check, unescape_path, unescape_version

Endpoint = Literal["list", "info", "mod", "zip", "latest"]
FILE_EXTS: dict[str, Endpoint] = {".info": "info", ".mod": "mod", ".zip": "zip"}


@dataclass(frozen=True, slots=True)
class ModuleRequest:
    """A GOPROXY request: endpoint, unescaped module path and version (or query)."""

    endpoint: Endpoint
    module: str
    version: str = ""


@dataclass(frozen=True, slots=True)
class SumdbRequest:
    """A ``/sumdb/...`` request; ``rest`` is everything after ``/sumdb/``."""

    rest: str


def decode_path(raw_path: str) -> str:
    """Percent-decode a raw URL path strictly (invalid UTF-8 or escapes are a 400)."""
    if "?" in raw_path:
        raw_path = raw_path.split("?", 1)[0]
    if "%" in raw_path:
        for i, c in enumerate(raw_path):
            if c == "%":
                h = raw_path[i + 1 : i + 3]
                if len(h) != 2 or any(x not in "0123456789abcdefABCDEF" for x in h):
                    raise InvalidRequest("malformed percent-encoding in request path")
    try:
        return unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("request path is not valid UTF-8") from None


MAX_ELEMENT_BYTES = 255
ROUTE_CACHE_BYTES = 4 << 20


def parse_path(raw_path: str) -> ModuleRequest | SumdbRequest:
    """Parse a raw request path (see the module docstring)."""
    path = decode_path(raw_path).lstrip("/")
    for element in path.split("/"):
        if len(element.encode()) > MAX_ELEMENT_BYTES:
            raise NotFound(
                f"not found: path element longer than {MAX_ELEMENT_BYTES} bytes: {element[:40]}..."
            )
    if path.startswith("sumdb/"):
        return SumdbRequest(path[len("sumdb/") :])
    if path.endswith("/@latest"):
        return ModuleRequest("latest", _module(path[: -len("/@latest")]))
    i = path.rfind("/@v/")
    if i < 0:
        raise NotFound(f"not found: {path or '/'}: not a module proxy path")
    module = _module(path[:i])
    rest = path[i + len("/@v/") :]
    if rest == "list":
        return ModuleRequest("list", module)
    for ext, endpoint in FILE_EXTS.items():
        if rest.endswith(ext) and len(rest) > len(ext):
            version = _version(rest[: -len(ext)])
            if endpoint != "info":
                _check_canonical(module, version)
            return ModuleRequest(endpoint, module, version)
    raise NotFound(f"not found: {path}: unknown file in @v/")


def _module(escaped: str) -> str:
    try:
        return unescape_path(escaped)
    except GomirrorError as e:
        raise InvalidRequest(f"invalid module path: {e}") from None


def _version(escaped: str) -> str:
    if "/" in escaped:
        raise InvalidRequest(f"invalid version {escaped!r}: contains a slash")
    try:
        return unescape_version(escaped)
    except GomirrorError as e:
        raise InvalidRequest(f"invalid version: {e}") from None


def _check_canonical(module: str, version: str) -> None:
    canon = canonical_version(version)
    if canon != version:
        raise InvalidRequest(
            f"version {version!r} is not canonical" + (f" (should be {canon!r})" if canon else "")
        )
    try:
        check(module, version)
    except GomirrorError as e:
        raise NotFound(f"not found: {module}@{version}: {e}") from None


class RouteCache:
    """Parsed request paths, most recent first, bounded by the bytes of the paths kept.

    Only successful parses are kept (errors are cheap to recompute and would let
    junk paths push out real ones); the query string is dropped before lookup.
    """

    def __init__(self, max_bytes: int = ROUTE_CACHE_BYTES) -> None:
        self._max = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, ModuleRequest | SumdbRequest] = OrderedDict()

    def parse(self, raw_path: str) -> ModuleRequest | SumdbRequest:
        path = raw_path.split("?", 1)[0]
        hit = self._items.get(path)
        if hit is not None:
            self._items.move_to_end(path)
            return hit
        req = parse_path(path)
        self._items[path] = req
        self._bytes += len(path)
        while self._bytes > self._max and self._items:
            old, _ = self._items.popitem(last=False)
            self._bytes -= len(old)
        return req

    def __len__(self) -> int:
        return len(self._items)
