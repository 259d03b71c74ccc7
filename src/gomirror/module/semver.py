"""semver implements Go's dialect of semantic versions exactly as golang.org/x/mod/semver does.

Versions carry a leading ``v``; ``vMAJOR`` and ``vMAJOR.MINOR`` are accepted as
shorthands (without pre-release or build suffix) and canonicalise by filling in
``.0``. Every function accepts any string: invalid input yields ``""`` (or
``False``), and invalid versions compare equal to each other and below every
valid version, which is what lets callers sort untrusted lists without checks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = [
    "build",
    "canonical",
    "compare",
    "is_valid",
    "major",
    "major_minor",
    "max_version",
    "prerelease",
    "sort_key",
    "sort_versions",
]

_DIGITS = frozenset("0123456789")
_IDENT = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


@dataclass(frozen=True, slots=True)
class _Parsed:
    major: str
    minor: str
    patch: str
    short: str  # the ".0" or ".0.0" a shorthand needs to become canonical
    prerelease: str  # including the leading "-", or ""
    build: str  # including the leading "+", or ""


def _take_int(s: str) -> tuple[str, str] | None:
    """Split a leading decimal number (no leading zeros) off ``s``."""
    i = 0
    while i < len(s) and s[i] in _DIGITS:
        i += 1
    if i == 0 or (s[0] == "0" and i != 1):
        return None
    return s[:i], s[i:]


def _bad_num(ident: str) -> bool:
    """Numeric identifiers may not have leading zeros."""
    return len(ident) > 1 and ident[0] == "0" and all(c in _DIGITS for c in ident)


def _take_suffix(s: str, lead: str, numeric_rules: bool) -> tuple[str, str] | None:
    """Split a ``-pre`` (stopping at ``+``) or ``+build`` suffix off ``s``."""
    end = s.find("+", 1) if lead == "-" else len(s)
    if end < 0:
        end = len(s)
    body = s[1:end]
    for ident in body.split("."):
        if not ident or any(c not in _IDENT for c in ident):
            return None
        if numeric_rules and _bad_num(ident):
            return None
    return s[:end], s[end:]


@functools.lru_cache(maxsize=4096)
def _parse(v: str) -> _Parsed | None:
    if not v or v[0] != "v":
        return None
    got = _take_int(v[1:])
    if got is None:
        return None
    major_s, rest = got
    if rest == "":
        return _Parsed(major_s, "0", "0", ".0.0", "", "")
    if rest[0] != ".":
        return None
    got = _take_int(rest[1:])
    if got is None:
        return None
    minor_s, rest = got
    if rest == "":
        return _Parsed(major_s, minor_s, "0", ".0", "", "")
    if rest[0] != ".":
        return None
    got = _take_int(rest[1:])
    if got is None:
        return None
    patch_s, rest = got
    pre = ""
    if rest.startswith("-"):
        split = _take_suffix(rest, "-", numeric_rules=True)
        if split is None:
            return None
        pre, rest = split
    bld = ""
    if rest.startswith("+"):
        split = _take_suffix(rest, "+", numeric_rules=False)
        if split is None:
            return None
        bld, rest = split
    if rest:
        return None
    return _Parsed(major_s, minor_s, patch_s, "", pre, bld)


def is_valid(v: str) -> bool:
    """Report whether ``v`` is a valid semantic version in Go's dialect."""
    return _parse(v) is not None


def canonical(v: str) -> str:
    """Return ``vX.Y.Z[-pre]`` for ``v`` (build metadata dropped), or ``""`` if invalid."""
    p = _parse(v)
    if p is None:
        return ""
    if p.build:
        return v[: len(v) - len(p.build)]
    return v + p.short


def major(v: str) -> str:
    """Return the ``vX`` prefix of ``v``, or ``""`` if invalid."""
    p = _parse(v)
    return "" if p is None else v[: 1 + len(p.major)]


def major_minor(v: str) -> str:
    """Return the ``vX.Y`` prefix of ``v`` (``vX.0`` for a ``vX`` shorthand), or ``""``."""
    p = _parse(v)
    if p is None:
        return ""
    return "v" + p.major + "." + p.minor


def prerelease(v: str) -> str:
    """Return the ``-pre`` suffix of ``v`` (with its dash), or ``""``."""
    p = _parse(v)
    return "" if p is None else p.prerelease


def build(v: str) -> str:
    """Return the ``+build`` suffix of ``v`` (with its plus), or ``""``."""
    p = _parse(v)
    return "" if p is None else p.build


def _cmp_int(x: str, y: str) -> int:
    # Numbers have no leading zeros, so length decides first, then bytes.
    if x == y:
        return 0
    if len(x) != len(y):
        return -1 if len(x) < len(y) else 1
    return -1 if x < y else 1


def _cmp_prerelease(x: str, y: str) -> int:
    if x == y:
        return 0
    if not x:
        return 1
    if not y:
        return -1
    xs = x[1:].split(".")
    ys = y[1:].split(".")
    for dx, dy in zip(xs, ys, strict=False):
        if dx == dy:
            continue
        nx = dx.isascii() and dx.isdigit()
        ny = dy.isascii() and dy.isdigit()
        if nx != ny:
            return -1 if nx else 1
        if nx:
            return _cmp_int(dx, dy)
        return -1 if dx < dy else 1
    if len(xs) == len(ys):
        return 0
    return -1 if len(xs) < len(ys) else 1


def compare(v: str, w: str) -> int:
    """Return -1, 0 or +1 as ``v`` sorts before, equal to or after ``w``.

    Build metadata is ignored; invalid versions are equal to each other and
    below all valid ones.
    """
    pv = _parse(v)
    pw = _parse(w)
    if pv is None and pw is None:
        return 0
    if pv is None:
        return -1
    if pw is None:
        return 1
    return (
        _cmp_int(pv.major, pw.major)
        or _cmp_int(pv.minor, pw.minor)
        or _cmp_int(pv.patch, pw.patch)
        or _cmp_prerelease(pv.prerelease, pw.prerelease)
    )


def max_version(v: str, w: str) -> str:
    """Return the canonical form of the larger of ``v`` and ``w`` (``w`` on ties)."""
    cv = canonical(v)
    cw = canonical(w)
    return cv if compare(cv, cw) > 0 else cw


def _compare_for_sort(a: str, b: str) -> int:
    c = compare(a, b)
    if c:
        return c
    return (a > b) - (a < b)


def sort_key(v: str) -> tuple[object, ...]:
    """A key that orders versions as ``compare`` does, ties by plain string (``semver.Sort``).

    Computed once per version, so sorting a long untrusted list costs one parse
    per entry instead of one per comparison.
    """
    p = _parse(v)
    if p is None:
        return (0, v)
    if p.prerelease:
        idents = tuple(
            (0, len(i), i) if i.isascii() and i.isdigit() else (1, 0, i)
            for i in p.prerelease[1:].split(".")
        )
        pre: tuple[object, ...] = (0, idents)
    else:
        pre = (1,)
    # Numbers have no leading zeros: length first, then bytes, as _cmp_int.
    ma, mi, pa = p.major, p.minor, p.patch
    return (1, len(ma), ma, len(mi), mi, len(pa), pa, pre, v)


def sort_versions(versions: list[str]) -> list[str]:
    """Return ``versions`` sorted as Go's ``semver.Sort``: by compare, ties by plain string."""
    return sorted(versions, key=sort_key)
