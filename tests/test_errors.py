"""errors' docstring draws the whole exception tree: it must match the classes exactly."""

from __future__ import annotations

import inspect
import re

from gomirror import errors


def drawn_tree() -> dict[str, str]:
    """Class name -> parent name, read from the box drawing in the module docstring."""
    doc = errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        m = re.match(r"^[\s│├└─]*([A-Z][A-Za-z]+)\b", line)
        if not m or m.group(1) not in vars(errors):
            continue
        name = m.group(1)
        depth = m.start(1) // 4  # each level of the drawing is four columns wide
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


def test_docstring_tree_matches_the_classes() -> None:
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.GomirrorError)
    }
    drawn = drawn_tree()
    assert set(drawn) | {"GomirrorError"} == set(classes)
    for name, parent in drawn.items():
        assert classes[name].__bases__ == (classes[parent],), name


def test_checksum_mismatch_message_names_both_hashes() -> None:
    e = errors.ChecksumMismatch("m", "v1.0.0", "go.mod", "h1:a=", "h1:b=")
    assert str(e) == "checksum mismatch for m@v1.0.0/go.mod: sumdb has h1:a=, upstream served h1:b="
    assert errors.RateLimited("429", retry_after=3.0).retry_after == 3.0
