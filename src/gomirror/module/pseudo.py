"""pseudo builds, recognises and takes apart Go pseudo-versions exactly as golang.org/x/mod/module.

A pseudo-version names an untagged commit: ``vX.0.0-yyyymmddhhmmss-rev``,
``vX.Y.(Z+1)-0.yyyymmddhhmmss-rev`` or ``vX.Y.Z-pre.0.yyyymmddhhmmss-rev``,
optionally followed by the base's build suffix (``+incompatible``).
Parsing functions raise :class:`InvalidVersion` with Go's messages, e.g.
``pseudo-version "v1.2.3" invalid: syntax error``. Times are timezone-aware
UTC datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from gomirror.errors import InvalidVersion
from gomirror.module import semver
from gomirror.module.paths import go_quote

__all__ = [
    "TIMESTAMP_FORMAT",
    "is_pseudo_version",
    "is_zero_pseudo_version",
    "pseudo_version",
    "pseudo_version_base",
    "pseudo_version_rev",
    "pseudo_version_time",
    "zero_pseudo_version",
]

TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"

_PSEUDO_RE = re.compile(
    r"v[0-9]+\.(0\.0-|[0-9]+\.[0-9]+-([^+]*\.)?0\.)[0-9]{14}-[A-Za-z0-9]+"
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?",
    re.ASCII,
)

_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _invalid(v: str, reason: str) -> InvalidVersion:
    return InvalidVersion(f"pseudo-version {go_quote(v)} invalid: {reason}")


def _format_time(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    # Written out by hand: strftime does not zero-pad years below 1000 everywhere.
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


# Done on digit strings, not int(): versions are untrusted and may be very long.
def _inc_decimal(decimal: str) -> str:
    stripped = decimal.rstrip("9")
    nines = len(decimal) - len(stripped)
    if stripped == "":
        return "1" + "0" * nines
    return stripped[:-1] + chr(ord(stripped[-1]) + 1) + "0" * nines


def _dec_decimal(decimal: str) -> str:
    """Return ``decimal - 1`` as a string, or ``""`` when it would go negative."""
    stripped = decimal.rstrip("0")
    zeros = len(decimal) - len(stripped)
    if stripped == "":
        return ""
    if stripped == "1" and zeros:
        return "9" * zeros
    return stripped[:-1] + chr(ord(stripped[-1]) - 1) + "9" * zeros


def pseudo_version(major: str, older: str, t: datetime, rev: str) -> str:
    """Return the pseudo-version for commit ``rev`` at time ``t``.

    ``older`` is the highest tagged ancestor (``""`` for none); ``major`` (e.g.
    ``v2``, default ``v0``) is used only when there is no ``older``. A naive
    ``t`` is taken to be UTC.
    """
    if major == "":
        major = "v0"
    segment = f"{_format_time(t)}-{rev}"
    bld = semver.build(older)
    base = semver.canonical(older)
    if base == "":
        return f"{major}.0.0-{segment}"
    if semver.prerelease(base):
        return f"{base}.0.{segment}{bld}"
    i = base.rfind(".") + 1
    return f"{base[:i]}{_inc_decimal(base[i:])}-0.{segment}{bld}"


def zero_pseudo_version(major: str) -> str:
    """Return the zero pseudo-version of ``major``, e.g. ``v0.0.0-00010101000000-000000000000``."""
    return pseudo_version(major, "", _ZERO_TIME, "000000000000")


def is_pseudo_version(v: str) -> bool:
    """Report whether ``v`` is a pseudo-version."""
    return v.count("-") >= 2 and semver.is_valid(v) and _PSEUDO_RE.fullmatch(v) is not None


def is_zero_pseudo_version(v: str) -> bool:
    """Report whether ``v`` is the zero pseudo-version of its major version."""
    return v == zero_pseudo_version(semver.major(v))


def _parse(v: str) -> tuple[str, str, str, str]:
    """Split a pseudo-version into (base, timestamp, rev, build)."""
    if not is_pseudo_version(v):
        raise _invalid(v, "syntax error")
    bld = semver.build(v)
    rest = v[: len(v) - len(bld)]
    j = rest.rfind("-")
    rest, rev = rest[:j], rest[j + 1 :]
    i = rest.rfind("-")
    k = rest.rfind(".")
    if k > i:
        return rest[:k], rest[k + 1 :], rev, bld
    return rest[:i], rest[i + 1 :], rev, bld


def pseudo_version_time(v: str) -> datetime:
    """Return the commit time recorded in pseudo-version ``v`` (UTC)."""
    _, stamp, _, _ = _parse(v)
    try:
        return datetime(
            int(stamp[0:4]),
            int(stamp[4:6]),
            int(stamp[6:8]),
            int(stamp[8:10]),
            int(stamp[10:12]),
            int(stamp[12:14]),
            tzinfo=UTC,
        )
    except ValueError:
        raise _invalid(v, f"malformed time {go_quote(stamp)}") from None


def pseudo_version_rev(v: str) -> str:
    """Return the revision identifier (short commit hash) in pseudo-version ``v``."""
    return _parse(v)[2]


def pseudo_version_base(v: str) -> str:
    """Return the tagged version ``v`` was built on, or ``""`` if it has none."""
    base, _, _, bld = _parse(v)
    pre = semver.prerelease(base)
    if pre == "":
        if bld:
            raise _invalid(v, f"lacks base version, but has build metadata {go_quote(bld)}")
        return ""
    if pre == "-0":
        base = base[: -len(pre)]
        i = base.rfind(".")
        patch = _dec_decimal(base[i + 1 :])
        if patch == "":
            raise _invalid(v, f"version before {base} would have negative patch number")
        return base[: i + 1] + patch + bld
    return base.removesuffix(".0") + bld
