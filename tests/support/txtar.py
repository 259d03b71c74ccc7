"""txtar parses and formats txtar archives (the format of Go's cmd/go/testdata/mod corpus).

Contract: an archive is an optional free-form comment followed by files, each introduced by a
marker line ``-- NAME --`` at the start of a line (NAME is the text between ``-- `` and `` --``,
stripped of surrounding spaces, and must be non-empty). A file's data is everything after its
marker line up to the next marker line (or the end). The comment and every file's data end
with a newline: if the archive's last piece lacks one it is added, as Go's parser does.
``parse`` returns ``(comment, [(name, data), ...])`` with bytes values; ``format`` is its inverse
for well-formed input. ``Archive`` wraps the same data with look-ups, and converts to and from
a directory tree (``write_dir`` / ``from_dir``) so tests can author modules as txtar text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Archive", "format", "parse", "parse_file"]

_MARK_START = b"-- "
_MARK_END = b" --"


def _marker_name(line: bytes) -> str | None:
    """Return the file name if ``line`` (without its newline) is a file marker, else None."""
    line = line.removesuffix(b"\r")
    if not line.startswith(_MARK_START) or not line.endswith(_MARK_END):
        return None
    if len(line) < len(_MARK_START) + len(_MARK_END) + 1:
        return None
    name = line[len(_MARK_START) : -len(_MARK_END)].strip()
    if not name:
        return None
    return name.decode("utf-8")


def _with_newline(data: bytes) -> bytes:
    """Add a final newline to non-empty data that lacks one."""
    if data and not data.endswith(b"\n"):
        return data + b"\n"
    return data


def parse(data: bytes | str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Parse a txtar archive into its comment and its ordered list of (name, data) files."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # the piece after the last newline has none
    comment: list[bytes] = []
    files: list[tuple[str, list[bytes]]] = []
    current = comment
    for line in lines:
        if not line:
            continue
        name = _marker_name(line.removesuffix(b"\n"))
        if name is not None:
            body: list[bytes] = []
            files.append((name, body))
            current = body
            continue
        current.append(line)
    return _with_newline(b"".join(comment)), [
        (name, _with_newline(b"".join(body))) for name, body in files
    ]


def parse_file(path: Path | str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Read and parse the txtar archive at ``path``."""
    return parse(Path(path).read_bytes())


def format(comment: bytes | str, files: Sequence[tuple[str, bytes | str]]) -> bytes:
    """Serialise a comment and files back into txtar bytes (adding missing final newlines)."""
    if isinstance(comment, str):
        comment = comment.encode("utf-8")
    out = [_with_newline(comment)]
    for name, body in files:
        if isinstance(body, str):
            body = body.encode("utf-8")
        out.append(b"-- " + name.encode("utf-8") + b" --\n")
        out.append(_with_newline(body))
    return b"".join(out)


@dataclass
class Archive:
    """A parsed archive: the comment and the ordered files (names may repeat; first wins)."""

    comment: bytes = b""
    files: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes | str) -> Archive:
        """Parse txtar bytes or text."""
        comment, files = parse(data)
        return cls(comment, files)

    @classmethod
    def from_dir(cls, root: Path | str, comment: bytes | str = b"") -> Archive:
        """Collect every regular file under ``root`` (sorted, ``/``-separated relative names)."""
        base = Path(root)
        files = [
            (p.relative_to(base).as_posix(), p.read_bytes())
            for p in sorted(base.rglob("*"))
            if p.is_file()
        ]
        return cls(comment.encode() if isinstance(comment, str) else comment, files)

    def get(self, name: str) -> bytes | None:
        """The data of the first file called ``name``, or None."""
        for n, data in self.files:
            if n == name:
                return data
        return None

    def names(self) -> list[str]:
        """File names in archive order."""
        return [n for n, _ in self.files]

    def as_dict(self) -> dict[str, bytes]:
        """Name -> data (the first occurrence of a repeated name wins)."""
        out: dict[str, bytes] = {}
        for n, data in self.files:
            out.setdefault(n, data)
        return out

    def write_dir(self, root: Path | str) -> Path:
        """Write the files under ``root`` (creating directories); names must stay inside it."""
        base = Path(root).resolve()
        for name, data in self.files:
            target = (base / name).resolve()
            if not target.is_relative_to(base):
                raise ValueError(f"txtar file name escapes the directory: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return base

    def to_bytes(self) -> bytes:
        """Serialise back to txtar format."""
        return format(self.comment, self.files)
