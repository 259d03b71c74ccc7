"""info reads and writes GOPROXY ``.info`` JSON and reads ``@v/list`` bodies as the go command does.

:func:`parse_info` accepts what Go's ``json.Unmarshal`` into ``RevInfo``
accepts (case-insensitive keys, unknown keys ignored, ``Time`` optional or
null) and raises :class:`InvalidContent` for anything else.
:func:`format_info` writes the compact JSON of Go's ``json.Marshal``: keys
``Version``, ``Time`` (RFC 3339 in UTC, fractional seconds only when non-zero)
and ``Origin`` (omitted when empty; its fields in Go's struct order, empty
ones left out), with Go's HTML-safe string escaping. Times are kept to the
microsecond: Python's datetime cannot hold Go's nanoseconds.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from gomirror.errors import GomirrorError, InvalidContent
from gomirror.module import paths, semver
from gomirror.module.pseudo import is_pseudo_version

__all__ = [
    "MAX_INFO_BYTES",
    "ORIGIN_FIELDS",
    "Info",
    "format_info",
    "format_time",
    "parse_info",
    "parse_list",
]

ORIGIN_FIELDS = ("VCS", "URL", "Subdir", "Hash", "TagPrefix", "TagSum", "Ref", "RepoSum")
"""The fields of Go's ``codehost.Origin`` in struct (and so JSON) order."""

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_ZERO_TIME = "0001-01-01T00:00:00Z"
_PLAIN_VERSION = re.compile(r"v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)
MAX_INFO_BYTES = 1 << 20
"""The largest ``.info``/``@latest`` body accepted: real ones are well under 1 KiB."""


@dataclass(frozen=True)
class Info:
    """The content of a ``.info`` file: canonical version, commit time, optional origin."""

    version: str
    time: datetime | None = None
    origin: dict[str, Any] | None = None


def _field(obj: dict[str, Any], name: str) -> Any:
    """Look ``name`` up as Go's decoder does: exact key, else case-insensitively (last wins)."""
    if name in obj:
        return obj[name]
    found: Any = None
    for key, value in obj.items():
        if key.lower() == name.lower():
            found = value
    return found


def _parse_time(text: str) -> datetime:
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(text)
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity; Go does not


def _int(text: str) -> int | float:
    # Go skips numbers in fields it does not know, however long; Python's int() refuses
    # more than 4300 digits, so a long one is kept as a float (it is never used).
    return int(text) if len(text) <= 100 else float(text)


def parse_info(data: bytes) -> Info:
    """Parse a ``.info`` body; raises :class:`InvalidContent` if it is not one.

    The body comes from a mirror, so nothing in it may raise anything else: a
    body over ``MAX_INFO_BYTES``, nesting too deep for the decoder
    (``RecursionError``), ``NaN`` and invalid UTF-8 are all
    ``InvalidContent``; numbers of any length are accepted, as Go does.
    """
    if len(data) > MAX_INFO_BYTES:
        raise InvalidContent(f"invalid .info JSON: {len(data)} bytes (at most {MAX_INFO_BYTES})")
    try:
        obj = json.loads(data.decode("utf-8"), parse_int=_int, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InvalidContent("invalid .info JSON: not UTF-8") from None
    except ValueError as e:
        raise InvalidContent(f"invalid .info JSON: {str(e)[:200]}") from None
    except (RecursionError, MemoryError):
        raise InvalidContent("invalid .info JSON: nested too deeply or too large") from None
    if not isinstance(obj, dict):
        raise InvalidContent("invalid .info JSON: not an object")
    version = _field(obj, "Version")
    if not isinstance(version, str) or version == "":
        raise InvalidContent("invalid .info JSON: missing or non-string Version")
    raw_time = _field(obj, "Time")
    when: datetime | None = None
    if raw_time is not None:
        if not isinstance(raw_time, str):
            raise InvalidContent("invalid .info JSON: Time is not a string")
        try:
            when = _parse_time(raw_time)
        except (ValueError, OverflowError):
            raise InvalidContent(f"invalid .info JSON: bad Time {raw_time!r}") from None
        if when == datetime(1, 1, 1, tzinfo=UTC):
            when = None
    raw_origin = _field(obj, "Origin")
    origin: dict[str, Any] | None = None
    if raw_origin is not None:
        if not isinstance(raw_origin, dict):
            raise InvalidContent("invalid .info JSON: Origin is not an object")
        origin = raw_origin or None
    return Info(version=version, time=when, origin=origin)


def format_time(t: datetime | None) -> str:
    """Format ``t`` as Go's RFC3339Nano in UTC (trailing fractional zeros dropped)."""
    if t is None:
        return _ZERO_TIME
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    frac = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}{frac}Z"
    )


def _go_json_string(s: str) -> str:
    # Go's encoder escapes HTML-significant characters and the JS line separators.
    text = json.dumps(s, ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def format_info(info: Info) -> bytes:
    """Return ``info`` as the compact JSON Go's ``json.Marshal`` writes for a ``RevInfo``."""
    parts = [
        f'"Version":{_go_json_string(info.version)}',
        f'"Time":{_go_json_string(format_time(info.time))}',
    ]
    if info.origin:
        fields = [
            f"{_go_json_string(name)}:{_go_json_string(str(info.origin[name]))}"
            for name in ORIGIN_FIELDS
            if info.origin.get(name)
        ]
        if fields:
            parts.append('"Origin":{' + ",".join(fields) + "}")
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def parse_list(data: bytes) -> list[str]:
    """Return the versions of an ``@v/list`` body as the go command reads them.

    Each line's first field counts if it is valid semver and not a
    pseudo-version; the result is sorted as ``semver.Sort``.
    """
    text = data.decode("utf-8", "replace")
    # A hostile list repeats lines: judge each word once and compute its sort key once.
    keys: dict[str, tuple[object, ...] | None] = {}
    found: list[str] = []
    for line in text.split("\n"):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        word = fields[0]
        if word not in keys:
            m = _PLAIN_VERSION.fullmatch(word)
            if m is not None:  # the common vX.Y.Z: valid, not a pseudo-version
                ma, mi, pa = m.groups()
                keys[word] = (1, len(ma), ma, len(mi), mi, len(pa), pa, (1,), word)
            elif semver.is_valid(word) and not is_pseudo_version(word):
                keys[word] = semver.sort_key(word)
            else:
                keys[word] = None
        if keys[word] is not None:
            found.append(word)
    found.sort(key=keys.__getitem__)  # type: ignore[arg-type]
    return found


@functools.lru_cache(maxsize=65536)
def is_canonical_for(module: str, version: str) -> bool:
    """Report whether version is a canonical version valid for module (the ``.info`` hard rule)."""
    if not semver.is_valid(version) or paths.canonical_version(version) != version:
        return False
    try:
        paths.check(module, version)
    except GomirrorError:
        return False
    return True


def check_list_body(body: bytes) -> None:
    """Raise InvalidContent unless body is a well-formed ``@v/list`` answer."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidContent("version list is not UTF-8 text") from None
    if "\x00" in text:
        raise InvalidContent("version list contains NUL bytes")


def check_info_body(body: bytes, module: str, requested: str | None) -> Info:
    """Parse an ``.info``/``@latest`` answer for module; ``requested`` is a canonical version asked for."""
    info = parse_info(body)
    if not semver.is_valid(info.version) or not is_canonical_for(module, info.version):
        raise InvalidContent(f"info for {module} names invalid version {info.version!r}")
    if requested is not None and info.version != requested:
        raise InvalidContent(
            f"proxy returned info for version {info.version} instead of requested version {requested}"
        )
    return info
