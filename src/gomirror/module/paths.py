"""paths checks and case-encodes module paths, import paths, file paths and versions as Go does.

Every rule follows golang.org/x/mod/module (protocol.md §1.3, §1.7, §2.4), and
errors carry Go's exact message text: checks raise :class:`InvalidPath` or
:class:`InvalidVersion` with strings such as
``malformed module path "x.y/z/v1": invalid version``. Strings are Python
``str``; bytes that were not valid UTF-8 are expected to arrive
``surrogateescape``-decoded, and are reported as ``invalid UTF-8`` and quoted
as ``\\xff`` exactly like Go's ``%q``.
"""

from __future__ import annotations

import re
import unicodedata

from gomirror.errors import InvalidPath, InvalidVersion
from gomirror.module import semver

__all__ = [
    "canonical_version",
    "check",
    "check_file_path",
    "check_import_path",
    "check_path",
    "check_path_major",
    "escape_path",
    "escape_version",
    "go_quote",
    "go_quote_rune",
    "match_path_major",
    "match_prefix_patterns",
    "split_path_version",
    "unescape_path",
    "unescape_version",
]

_MODULE, _IMPORT, _FILE = "module", "import", "file"
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MOD_CHARS = _ASCII_ALNUM | frozenset("-._~")
_IMPORT_CHARS = _MOD_CHARS | frozenset("+")
_FILE_PUNCT = frozenset("!#$%&()+,-.=@[]^_{}~ ")
_FIRST_ELEM_CHARS = frozenset("-.0123456789abcdefghijklmnopqrstuvwxyz")
# Elements made only of these characters need no per-character check (the
# loop still runs for anything else: it names the first bad character).
_ALL_OK = {
    kind: re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]*")
    for kind, chars in (
        (_MODULE, _MOD_CHARS),
        (_IMPORT, _IMPORT_CHARS),
        (_FILE, _ASCII_ALNUM | _FILE_PUNCT),
    )
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_BAD_WINDOWS_NAMES = frozenset(
    ["con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)


# --- Go's %q ----------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def _is_surrogate(c: str) -> bool:
    return 0xD800 <= ord(c) <= 0xDFFF


def _is_print(c: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols, and ASCII space.
    if c == " ":
        return True
    return unicodedata.category(c)[0] in "LMNPS"


def _quote_char(c: str, quote: str) -> str:
    if c == quote:
        return "\\" + c
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c]
    o = ord(c)
    if _is_surrogate(c):
        # surrogateescape smuggles an undecodable byte 0x80-0xFF as U+DC80-U+DCFF.
        return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else "\\ufffd"
    if _is_print(c):
        return c
    if o < 0x80:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def go_quote(s: str) -> str:
    """Return ``s`` as Go's ``%q`` (``strconv.Quote``) would print it."""
    return '"' + "".join(_quote_char(c, '"') for c in s) + '"'


def go_quote_rune(c: str) -> str:
    """Return the single character ``c`` as Go's ``%q`` of a rune would print it."""
    return "'" + _quote_char(c, "'") + "'"


# --- path checks ------------------------------------------------------------


def _has_bad_utf8(s: str) -> bool:
    return _SURROGATE.search(s) is not None


def _char_ok(c: str, kind: str) -> bool:
    if kind == _MODULE:
        return c in _MOD_CHARS
    if kind == _IMPORT:
        return c in _IMPORT_CHARS
    if c.isascii():
        return c in _ASCII_ALNUM or c in _FILE_PUNCT
    return unicodedata.category(c).startswith("L")


def _elem_error(elem: str, kind: str) -> str | None:
    """Return the reason ``elem`` is not a valid element of a ``kind`` path, or None."""
    if elem == "":
        return "empty path element"
    if elem.count(".") == len(elem):
        return f"invalid path element {go_quote(elem)}"
    if elem[0] == "." and kind == _MODULE:
        return "leading dot in path element"
    if elem[-1] == ".":
        return "trailing dot in path element"
    if _ALL_OK[kind].fullmatch(elem) is None:
        for c in elem:
            if not _char_ok(c, kind):
                return f"invalid char {go_quote_rune(c)}"
    short = elem.split(".", 1)[0]
    if short.lower() in _BAD_WINDOWS_NAMES:
        return f"{go_quote(short)} disallowed as path element component on Windows"
    if kind == _FILE:
        return None
    tilde = short.rfind("~")
    if 0 <= tilde < len(short) - 1:
        suffix = short[tilde + 1 :]
        if all("0" <= c <= "9" for c in suffix):
            return "trailing tilde and digits in path element"
    return None


def _path_error(path: str, kind: str) -> str | None:
    if _has_bad_utf8(path):
        return "invalid UTF-8"
    if path == "":
        return "empty string"
    if path[0] == "-" and kind != _FILE:
        return "leading dash"
    if "//" in path:
        return "double slash"
    if path[-1] == "/":
        return "trailing slash"
    for elem in path.split("/"):
        reason = _elem_error(elem, kind)
        if reason is not None:
            return reason
    return None


def _module_path_error(path: str) -> str | None:
    reason = _path_error(path, _MODULE)
    if reason is not None:
        return reason
    first = path.split("/", 1)[0]
    if first == "":
        return "leading slash"
    if "." not in first:
        return "missing dot in first path element"
    if path[0] == "-":
        return "leading dash in first path element"
    for c in first:
        if c not in _FIRST_ELEM_CHARS:
            return f"invalid char {go_quote_rune(c)} in first path element"
    if not split_path_version(path)[2]:
        return "invalid version"
    return None


def _malformed(kind: str, path: str, reason: str) -> InvalidPath:
    return InvalidPath(f"malformed {kind} path {go_quote(path)}: {reason}")


def check_path(path: str) -> None:
    """Raise :class:`InvalidPath` unless ``path`` is a valid module path (``module.CheckPath``)."""
    reason = _module_path_error(path)
    if reason is not None:
        raise _malformed(_MODULE, path, reason)


def check_import_path(path: str) -> None:
    """Raise :class:`InvalidPath` unless ``path`` is a valid import path."""
    reason = _path_error(path, _IMPORT)
    if reason is not None:
        raise _malformed(_IMPORT, path, reason)


def check_file_path(path: str) -> None:
    """Raise :class:`InvalidPath` unless ``path`` is a valid file path inside a module."""
    reason = _path_error(path, _FILE)
    if reason is not None:
        raise _malformed(_FILE, path, reason)


def file_element_ok(elem: str) -> bool:
    """Report whether ``elem`` is a valid single file-path element (used for versions)."""
    return _elem_error(elem, _FILE) is None


# --- major versions ---------------------------------------------------------


def _split_gopkg_in(path: str) -> tuple[str, str, bool]:
    i = len(path)
    if path.endswith("-unstable"):
        i -= len("-unstable")
    while i > 0 and "0" <= path[i - 1] <= "9":
        i -= 1
    if i <= 1 or path[i - 1] != "v" or path[i - 2] != ".":
        return path, "", False
    prefix, path_major = path[: i - 2], path[i - 2 :]
    if len(path_major) <= 2 or (path_major[2] == "0" and path_major != ".v0"):
        return path, "", False
    return prefix, path_major, True


def split_path_version(path: str) -> tuple[str, str, bool]:
    """Split ``path`` into ``(prefix, path_major, ok)``, e.g. ``x.y/z/v2`` -> ``x.y/z``, ``/v2``.

    ``ok`` is False when the path ends in a malformed major suffix such as
    ``/v1``, ``/v0``, ``/v02`` or ``/v2.0``, or is a gopkg.in path without ``.vN``.
    """
    if path.startswith("gopkg.in/"):
        return _split_gopkg_in(path)
    i = len(path)
    dot = False
    while i > 0 and ("0" <= path[i - 1] <= "9" or path[i - 1] == "."):
        if path[i - 1] == ".":
            dot = True
        i -= 1
    if i <= 1 or i == len(path) or path[i - 1] != "v" or path[i - 2] != "/":
        return path, "", True
    prefix, path_major = path[: i - 2], path[i - 2 :]
    if dot or len(path_major) <= 2 or path_major[2] == "0" or path_major == "/v1":
        return path, "", False
    return prefix, path_major, True


def _path_major_error(version: str, path_major: str) -> str | None:
    if path_major.startswith(".v") and path_major.endswith("-unstable"):
        path_major = path_major[: -len("-unstable")]
    if version.startswith("v0.0.0-") and path_major == ".v1":
        # gopkg.in/x.v1 accepts v0 pseudo-versions: they predate tagging.
        return None
    m = semver.major(version)
    if path_major == "":
        if m in ("v0", "v1") or semver.build(version) == "+incompatible":
            return None
        want = "v0 or v1"
    elif path_major[0] in "/.":
        if m == path_major[1:]:
            return None
        want = path_major[1:]
    else:
        want = path_major
    return f"should be {want}, not {m}"


def match_path_major(version: str, path_major: str) -> bool:
    """Report whether ``version`` is allowed for a path whose major suffix is ``path_major``."""
    return _path_major_error(version, path_major) is None


def check_path_major(version: str, path_major: str) -> None:
    """Raise :class:`InvalidVersion` unless ``version`` matches ``path_major``."""
    reason = _path_major_error(version, path_major)
    if reason is not None:
        raise InvalidVersion(f"version {go_quote(version)} invalid: {reason}")


def check(path: str, version: str) -> None:
    """Check a module path and version together, as ``module.Check``.

    Raises :class:`InvalidPath` for a bad path and :class:`InvalidVersion` for a
    non-semver version or one whose major does not fit the path.
    """
    check_path(path)
    if not semver.is_valid(version):
        raise InvalidVersion(f"{path}@{version}: invalid version: not a semantic version")
    _, path_major, _ = split_path_version(path)
    reason = _path_major_error(version, path_major)
    if reason is not None:
        raise InvalidVersion(f"{path}@{version}: invalid version: {reason}")


def canonical_version(v: str) -> str:
    """Return ``semver.canonical(v)``, keeping a ``+incompatible`` build suffix."""
    cv = semver.canonical(v)
    if semver.build(v) == "+incompatible":
        cv += "+incompatible"
    return cv


# --- case encoding ----------------------------------------------------------


def _escape(s: str) -> str:
    return "".join("!" + c.lower() if "A" <= c <= "Z" else c for c in s)


def _unescape(escaped: str) -> str | None:
    out: list[str] = []
    bang = False
    for c in escaped:
        if not c.isascii():
            return None
        if bang:
            bang = False
            if not "a" <= c <= "z":
                return None
            out.append(c.upper())
        elif c == "!":
            bang = True
        elif "A" <= c <= "Z":
            return None
        else:
            out.append(c)
    if bang:
        return None
    return "".join(out)


def escape_path(path: str) -> str:
    """Return the case-encoded form of module ``path`` (``A`` -> ``!a``); checks it first."""
    check_path(path)
    return _escape(path)


def escape_version(v: str) -> str:
    """Return the case-encoded form of version or query ``v``; raises :class:`InvalidVersion`."""
    # Go rejects non-ASCII here too (as an internal error); we call it disallowed.
    if _elem_error(v, _FILE) is not None or "!" in v or not v.isascii():
        raise InvalidVersion(f"version {go_quote(v)} invalid: disallowed version string")
    return _escape(v)


def unescape_path(escaped: str) -> str:
    """Decode a case-encoded module path and check it; raises :class:`InvalidPath`."""
    path = _unescape(escaped)
    if path is None:
        raise InvalidPath(f"invalid escaped module path {go_quote(escaped)}")
    try:
        check_path(path)
    except InvalidPath as e:
        raise InvalidPath(f"invalid escaped module path {go_quote(escaped)}: {e}") from None
    return path


def unescape_version(escaped: str) -> str:
    """Decode a case-encoded version and check it; raises :class:`InvalidVersion`."""
    v = _unescape(escaped)
    if v is None:
        raise InvalidVersion(f"invalid escaped version {go_quote(escaped)}")
    reason = _elem_error(v, _FILE)
    if reason is not None:
        raise InvalidVersion(f"invalid escaped version {go_quote(v)}: {reason}")
    return v


# --- GOPRIVATE-style patterns -------------------------------------------------


def _class_match(pattern: str, i: int, c: str) -> tuple[bool, int] | None:
    """Match ``c`` against the ``[...]`` class starting after ``[`` at ``pattern[i]``.

    Returns (matched, index after ``]``) or None when the class is malformed.
    """
    negated = i < len(pattern) and pattern[i] == "^"
    if negated:
        i += 1
    matched = False
    first = True
    while True:
        if i < len(pattern) and pattern[i] == "]" and not first:
            i += 1
            break
        first = False
        lo_hi = _class_char(pattern, i)
        if lo_hi is None:
            return None
        lo, i = lo_hi
        hi = lo
        if i < len(pattern) and pattern[i] == "-":
            got = _class_char(pattern, i + 1)
            if got is None:
                return None
            hi, i = got
        if lo <= c <= hi:
            matched = True
    return matched != negated, i


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    if i >= len(pattern) or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None
    return pattern[i], i + 1


def _glob_match(pattern: str, name: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` never match ``/``; a malformed pattern never matches.

    Go reports ErrBadPattern for a malformed pattern only when matching gets that
    far; either way MatchPrefixPatterns treats it as "no match", which is what
    returning False gives us.
    """
    if not _pattern_well_formed(pattern):
        return False
    return _match_from(pattern, 0, name, 0)


def _pattern_well_formed(pattern: str) -> bool:
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                return False
            i += 2
        elif c == "[":
            got = _class_match(pattern, i + 1, "\0")
            if got is None:
                return False
            i = got[1]
        else:
            i += 1
    return True


def _match_from(p: str, pi: int, s: str, si: int) -> bool:
    while pi < len(p):
        c = p[pi]
        if c == "*":
            while pi < len(p) and p[pi] == "*":
                pi += 1
            k = si
            while True:
                if _match_from(p, pi, s, k):
                    return True
                if k >= len(s) or s[k] == "/":
                    return False
                k += 1
        if si >= len(s):
            return False
        if c == "?":
            if s[si] == "/":
                return False
            pi += 1
        elif c == "[":
            if s[si] == "/":
                return False
            got = _class_match(p, pi + 1, s[si])
            if got is None or not got[0]:
                return False
            pi = got[1]
        elif c == "\\":
            if s[si] != p[pi + 1]:
                return False
            pi += 2
        else:
            if s[si] != c:
                return False
            pi += 1
        si += 1
    return si == len(s)


def match_prefix_patterns(globs: str, target: str) -> bool:
    """Report whether any comma-separated glob in ``globs`` matches a path prefix of ``target``.

    This is ``module.MatchPrefixPatterns`` (GOPRIVATE, GONOPROXY, GONOSUMDB): a
    glob with N slashes is matched against the first N+1 elements of ``target``.
    """
    for raw in globs.split(","):
        glob = raw.removesuffix("/")
        if glob == "":
            continue
        n = glob.count("/")
        parts = target.split("/")
        if len(parts) < n + 1:
            continue
        prefix = "/".join(parts[: n + 1])
        if _glob_match(glob, prefix):
            return True
    return False
