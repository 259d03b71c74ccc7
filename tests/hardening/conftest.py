"""conftest (hardening) provides the session's ``figures``: counts for docs/reliability.md."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hardening.kit import Figures


@pytest.fixture(scope="session")
def figures() -> Iterator[Figures]:
    f = Figures()
    yield f
    f.flush()
