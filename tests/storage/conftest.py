"""Fixtures of the storage tests: one real S3 API server (moto, its own process) per session.

``s3_server`` is started on first use only, so running the disk tests alone
never starts it, and stopped at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.s3server import S3Endpoint, S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    server = S3Server.start(tmp_path_factory.mktemp("s3server"))
    try:
        yield server.endpoint
    finally:
        server.stop()
