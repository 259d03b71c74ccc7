"""vectors loads tests/data/vectors.json, the known-answer cases computed by Go's own code.

The file lives inside the repository so that a fresh clone tests itself;
tests/data/README.md says where it came from and how to refresh it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "vectors.json"


@functools.cache
def load_vectors() -> dict[str, Any]:
    """Return the parsed vectors file (cached: it is read-only)."""
    with VECTORS_PATH.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def group(name: str) -> Any:
    """Return one top-level group of the vectors, e.g. ``group("semver")``."""
    return load_vectors()[name]
