"""gomod parses just enough of a go.mod for a proxy: module, go version, deprecation, retractions.

:func:`parse_gomod` follows golang.org/x/mod/modfile's lexer and its lax
(dependency) mode: blocks, ``//`` comments, quoted strings and every other
directive (require, replace, exclude, toolchain, godebug, tool, ignore,
unknown verbs) are tolerated and skipped, malformed retractions are dropped as
``ParseLax`` drops them, while real syntax errors raise :class:`InvalidContent`.
:func:`check_gomod_module` applies the go command's rule for whether a go.mod
may serve a module (coderepo.go ``findDir``), and :func:`synthesize_gomod`
builds the go.mod of a module that has none.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from gomirror.errors import InvalidContent
from gomirror.module import semver
from gomirror.module.paths import canonical_version, go_quote, split_path_version

__all__ = [
    "GoMod",
    "Retraction",
    "check_gomod_module",
    "go_version_at_least",
    "module_path",
    "parse_gomod",
    "synthesize_gomod",
]

_GO_VERSION_RE = re.compile(
    r"([1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?([a-z]+[0-9]+)?", re.ASCII
)
_LAX_GO_VERSION_RE = re.compile(r"v?(([1-9][0-9]*)\.(0|[1-9][0-9]*))([^0-9].*)", re.ASCII | re.S)
_DEPRECATED_RE = re.compile(r"(?:\A|\n\n)Deprecated: *(.*?)(?:\Z|\n\n)", re.S)
_PUNCT = "()[]{},"
# Where modfile.ModulePath can find a path: "module", blanks, then something not a comment.
_MODULE_WORD_RE = re.compile(r"(?<!\S)module[^\S\n]+(?!//)\S")


@dataclass(frozen=True)
class Retraction:
    """One retracted version interval (``low == high`` for a single version)."""

    low: str
    high: str
    rationale: str = ""


@dataclass(frozen=True)
class GoMod:
    """The parts of a go.mod a proxy needs."""

    module: str | None = None
    go: str | None = None
    deprecated: str | None = None
    retract: list[Retraction] = field(default_factory=list)


@dataclass
class _Line:
    tokens: list[str]
    comments: list[str]  # "before" comment lines then the suffix comment, "//" stripped
    lineno: int


class _Error(Exception):
    pass


def _is_print(c: str) -> bool:
    return c == " " or unicodedata.category(c)[0] in "LMNPS"


def _is_ident(c: str) -> bool:
    return c not in " ()[]{}," and not c.isspace() and _is_print(c)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split go.mod text into (kind, text, line) tokens, as modfile's lexer does."""
    toks: list[tuple[str, str, int]] = []
    i, n, line = 0, len(text), 1
    at_line_start = True  # only whitespace so far on this line
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            toks.append(("comment" if at_line_start else "eolcomment", text[i:j], line))
            # The comment token swallows its newline, as modfile's lexer does.
            i = j + 1
            line += 1
            at_line_start = True
            continue
        if text.startswith("/*", i):
            raise _Error(f"{line}: mod files must use // comments (not /* */ comments)")
        at_line_start = False
        if c == "\n":
            toks.append(("nl", c, line))
            i += 1
            line += 1
            at_line_start = True
        elif c in _PUNCT:
            toks.append(("punct", c, line))
            i += 1
        elif c in '"`':
            j = i + 1
            while True:
                if j >= n:
                    raise _Error(f"{line}: unexpected EOF in string")
                if text[j] == "\n":
                    raise _Error(f"{line}: unexpected newline in string")
                if text[j] == c:
                    break
                if text[j] == "\\" and c == '"':
                    j += 1
                    if j >= n:
                        raise _Error(f"{line}: unexpected EOF in string")
                j += 1
            toks.append(("string", text[i : j + 1], line))
            i = j + 1
        elif _is_ident(c):
            j = i
            while j < n and _is_ident(text[j]):
                if text.startswith("//", j):
                    break
                if text.startswith("/*", j):
                    raise _Error(f"{line}: mod files must use // comments (not /* */ comments)")
                j += 1
            toks.append(("ident", text[i:j], line))
            i = j
        else:
            raise _Error(f"{line}: unexpected input character {go_quote(c)}")
    return toks


def _comment_text(tok: str) -> str:
    return tok[2:].strip()


def _parse_lines(text: str) -> list[tuple[str | None, _Line]]:
    """Group tokens into (block verb or None, line) pairs, attaching comments as modfile does."""
    toks = _tokenize(text)
    out: list[tuple[str | None, _Line]] = []
    pos = 0
    pending: list[str] = []  # comment lines directly above the next statement

    def read_line(first: int) -> tuple[_Line, int]:
        words: list[str] = []
        k = first
        while k < len(toks) and toks[k][0] not in ("nl", "eolcomment", "comment"):
            words.append(toks[k][1])
            k += 1
        suffix: list[str] = []
        if k < len(toks) and toks[k][0] == "eolcomment":
            suffix.append(_comment_text(toks[k][1]))
        elif k < len(toks) and toks[k][0] == "comment":
            # Cannot happen: a comment after tokens is an end-of-line comment.
            suffix.append(_comment_text(toks[k][1]))
        return _Line(words, suffix, toks[first][2]), k + 1

    while pos < len(toks):
        kind, tok, _ = toks[pos]
        if kind == "nl":
            pending = []
            pos += 1
            continue
        if kind in ("comment", "eolcomment"):
            pending.append(_comment_text(tok))
            pos += 1
            continue
        line, nxt = read_line(pos)
        line.comments = pending + line.comments
        pending = []
        if len(line.tokens) >= 2 and line.tokens[-1] == "(":
            pos = _parse_block(toks, nxt, line, out)
            continue
        if line.tokens[-2:] == ["(", ")"] and len(line.tokens) >= 3:
            pos = nxt  # an empty block such as "require ()"
            continue
        out.append((None, line))
        pos = nxt
    return out


def _parse_block(
    toks: list[tuple[str, str, int]],
    pos: int,
    head: _Line,
    out: list[tuple[str | None, _Line]],
) -> int:
    verb = head.tokens[0]
    comments: list[str] = []
    while True:
        if pos >= len(toks):
            raise _Error(f"{head.lineno}: syntax error (unterminated block)")
        kind, tok, lineno = toks[pos]
        if kind == "nl":
            pos += 1
        elif kind == "eolcomment" or kind == "comment":
            comments.append(_comment_text(tok))
            pos += 1
        elif kind == "punct" and tok == ")":
            pos += 1
            if pos < len(toks) and toks[pos][0] not in ("nl", "eolcomment"):
                raise _Error(f"{lineno}: syntax error (expected newline after closing paren)")
            return pos + 1
        else:
            words: list[str] = []
            while pos < len(toks) and toks[pos][0] not in ("nl", "eolcomment", "comment"):
                words.append(toks[pos][1])
                pos += 1
            suffix: list[str] = []
            if pos < len(toks) and toks[pos][0] == "eolcomment":
                suffix.append(_comment_text(toks[pos][1]))
            pos += 1
            line_comments = comments + suffix
            if not line_comments:
                line_comments = list(head.comments)  # the block's own comments apply
            out.append((verb, _Line(words, line_comments, lineno)))
            comments = []


_SIMPLE_ESCAPES = {
    "a": b"\a",
    "b": b"\b",
    "f": b"\f",
    "n": b"\n",
    "r": b"\r",
    "t": b"\t",
    "v": b"\v",
    "\\": b"\\",
    '"': b'"',
}
_HEX = frozenset("0123456789abcdefABCDEF")


def _go_unquote(tok: str) -> str:
    """Decode a double-quoted Go string literal (strconv.Unquote); raises _Error if malformed."""
    if len(tok) < 2 or tok[0] != '"' or tok[-1] != '"':
        raise _Error(f"invalid quoted string {tok}")
    body, out, i = tok[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise _Error(f"invalid quoted string {tok}")
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[e]
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(e, 0)
        if width:
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or any(d not in _HEX for d in digits):
                raise _Error(f"invalid quoted string {tok}")
            n = int(digits, 16)
            if e == "x":
                out.append(n)
            elif n > 0x10FFFF or 0xD800 <= n <= 0xDFFF:
                raise _Error(f"invalid quoted string {tok}")
            else:
                out += chr(n).encode("utf-8")
            i += 2 + width
            continue
        digits = body[i + 1 : i + 4]
        if len(digits) == 3 and all("0" <= d <= "7" for d in digits) and int(digits, 8) < 256:
            out.append(int(digits, 8))
            i += 4
            continue
        raise _Error(f"invalid quoted string {tok}")
    return out.decode("utf-8", "surrogateescape")


def _unquote(tok: str) -> str:
    """Decode a go.mod string token: "..." as Go does; bare words as-is; other quotes are errors."""
    if tok.startswith('"'):
        return _go_unquote(tok)
    if any(q in tok for q in "\"'`"):
        raise _Error(f"unquoted string cannot contain quote: {tok}")
    return tok


def _interval(args: list[str]) -> tuple[str, str] | None:
    """Parse ``v`` or ``[low, high]``; None when malformed (lax mode drops the line)."""

    def version(tok: str) -> str | None:
        try:
            v = _unquote(tok)
        except _Error:
            return None
        return v if canonical_version(v) == v and v else None

    if not args or args[0] == "(":
        return None
    if args[0] != "[":
        v = version(args[0])
        return None if v is None else (v, v)
    if len(args) < 5 or args[2] != "," or args[4] != "]":
        return None
    low, high = version(args[1]), version(args[3])
    if low is None or high is None:
        return None
    return low, high


def parse_gomod(data: bytes) -> GoMod:
    """Parse a go.mod; raises :class:`InvalidContent` on syntax errors or a bad module/go line."""
    text = data.decode("utf-8", "surrogateescape")
    module: str | None = None
    go: str | None = None
    deprecated: str | None = None
    retract: list[Retraction] = []
    try:
        lines = _parse_lines(text)
        for block, line in lines:
            verb, args = (block, line.tokens) if block else (line.tokens[0], line.tokens[1:])
            directive = "\n".join(line.comments)
            if verb == "module":
                if module is not None:
                    raise _Error(f"{line.lineno}: repeated module statement")
                if len(args) != 1:
                    raise _Error(f"{line.lineno}: usage: module module/path")
                module = _unquote(args[0])
                m = _DEPRECATED_RE.search(directive)
                deprecated = m.group(1) if m and m.group(1) else None
            elif verb == "go":
                if go is not None:
                    raise _Error(f"{line.lineno}: repeated go statement")
                if len(args) != 1:
                    raise _Error(f"{line.lineno}: go directive expects exactly one argument")
                go = _go_version(args[0], line.lineno)
            elif verb == "retract":
                got = _interval(args)
                if got is not None:
                    retract.append(Retraction(got[0], got[1], directive))
    except _Error as e:
        raise InvalidContent(f"go.mod:{e}") from None
    return GoMod(module=module, go=go, deprecated=deprecated, retract=retract)


def _go_version(arg: str, lineno: int) -> str:
    if _GO_VERSION_RE.fullmatch(arg):
        return arg
    m = _LAX_GO_VERSION_RE.fullmatch(arg)
    if m:
        return m.group(1)  # dependency go.mod files get the lax fix-up
    raise _Error(f"{lineno}: invalid go version '{arg}': must match format 1.23.0")


def go_version_at_least(go: str | None, major: int, minor: int) -> bool:
    """Report whether go directive ``go`` (e.g. ``1.24.1``) is at least language ``major.minor``."""
    if not go:
        return False
    m = _GO_VERSION_RE.fullmatch(go)
    if m is None:
        return False
    return (int(m.group(1)), int(m.group(2))) >= (major, minor)


def module_path(data: bytes) -> str:
    """Return a go.mod's module path by Go's quick line scan (``modfile.ModulePath``), or ``""``.

    Only lines the scan could take are looked at: a regular expression finds
    ``module`` followed by a blank and a non-comment, and a line is read only
    if nothing but blanks precede that word on it; so millions of blank or
    comment lines cost a scan in C, not a Python loop.
    """
    text = data.decode("utf-8", "surrogateescape")
    pos = 0
    while (found := _MODULE_WORD_RE.search(text, pos)) is not None:
        at = found.start()
        start = text.rfind("\n", pos, at) + 1 or pos
        end = text.find("\n", at)
        pos = len(text) if end < 0 else end + 1
        if start != at and not text[start:at].isspace():
            continue  # something else starts this line: skip the rest of it
        line = text[start : end if end >= 0 else len(text)].split("//", 1)[0].strip()
        if not line.startswith("module"):
            continue
        rest = line[len("module") :]
        stripped = rest.strip()
        if len(stripped) == len(rest) or not stripped:
            continue
        if stripped[0] in '"`':
            if stripped[0] == "`":
                ok = len(stripped) >= 2 and stripped.endswith("`") and "`" not in stripped[1:-1]
                return stripped[1:-1] if ok else ""
            try:
                return _go_unquote(stripped)
            except _Error:
                return ""
        return stripped
    return ""


def _path_major_prefix(path_major: str) -> str:
    if path_major.startswith(".v") and path_major.endswith("-unstable"):
        path_major = path_major[: -len("-unstable")]
    return path_major[1:] if path_major else ""


def check_gomod_module(data: bytes, module: str, version: str) -> None:
    """Raise :class:`InvalidContent` unless a go.mod may serve ``module`` at ``version``.

    Mirrors the go command (coderepo.go ``findDir``): the declared path must be
    present, well-formed and of the same major version as ``module`` (the path
    itself may differ, e.g. in case, as the sumdb already records), or, for an
    unversioned module, a ``gopkg.in/`` path (a historical acceptance).
    """
    mpath = module_path(data)
    if mpath == "":
        raise InvalidContent(f"{module}@{version}: go.mod is missing module path")
    _, path_major, _ = split_path_version(module)
    _, m_major, ok = split_path_version(mpath)
    if ok:
        if path_major == "":
            if _path_major_prefix(m_major) in ("", "v0", "v1"):
                return
        elif m_major and path_major[1:] == m_major[1:]:
            return
    if path_major == "" and mpath.startswith("gopkg.in/"):
        return
    if path_major:
        raise InvalidContent(
            f"{module}@{version}: go.mod has non-...{path_major} module path {go_quote(mpath)}"
        )
    if not ok:
        raise InvalidContent(
            f"{module}@{version}: go.mod has malformed module path {go_quote(mpath)}"
        )
    raise InvalidContent(
        f"{module}@{version}: go.mod has post-{semver.major(version)} module path {go_quote(mpath)}"
    )


def synthesize_gomod(path: str) -> bytes:
    """Return the go.mod the go command makes up for a module without one: ``module <path>\\n``."""
    needs_quote = (
        path == ""
        or "//" in path
        or "/*" in path
        or any(c in " \"'`" or not _is_print(c) for c in path)
        or (len(path) > 1 and any(c in _PUNCT for c in path))
    )
    shown = go_quote(path) if needs_quote else path
    return f"module {shown}\n".encode("utf-8", "surrogateescape")
