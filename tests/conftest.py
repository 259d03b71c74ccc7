"""Root pytest configuration: puts tests/ on sys.path and guards the network for every test.

The guard (support.netguard) is installed for the whole session: any connect
from test-process code to an address outside 127.0.0.0/8 or ::1 raises
``NetworkGuardError`` before a packet is sent, and a test during which such an
attempt happened fails even if the code under test swallowed the exception.
A test that expects refusals takes them with the ``netguard`` fixture.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.netguard import NetGuard  # resolvable thanks to the sys.path entry above

_GUARD_KEY = pytest.StashKey[NetGuard]()


def pytest_configure(config: pytest.Config) -> None:
    guard = NetGuard()
    guard.install()
    config.stash[_GUARD_KEY] = guard


def pytest_unconfigure(config: pytest.Config) -> None:
    guard = config.stash.get(_GUARD_KEY, None)
    if guard is not None:
        guard.uninstall()


@pytest.fixture
def netguard(request: pytest.FixtureRequest) -> NetGuard:
    """The session's network guard, for tests that expect and ``take()`` refusals."""
    return request.config.stash[_GUARD_KEY]


@pytest.fixture(autouse=True)
def _no_network_escape(request: pytest.FixtureRequest) -> Iterator[None]:
    guard = request.config.stash[_GUARD_KEY]
    guard.take()  # refusals before this test (e.g. in collection) are not its fault
    yield
    leaked = guard.take()
    if leaked:
        pytest.fail(
            "test network guard refused connections to non-loopback addresses: "
            + ", ".join(leaked),
            pytrace=False,
        )
