"""Fixtures of the scale-out tests: one moto S3 server per session, a Redis and a bucket prefix per test.

``s3_endpoint`` starts the S3 API server (its own process) on first use and
stops it at the end of the session; ``redis`` is a fresh ``redis-server``
per test; ``cluster`` combines them with a prefix unique to the test and
stops every gomirror instance it started.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordination.redisserver import RedisServer
from scaleout.cluster import Cluster
from storage.s3server import S3Endpoint, S3Server

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    server = S3Server.start(tmp_path_factory.mktemp("scaleout-s3"))
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def cluster(tmp_path: Path, s3_endpoint: S3Endpoint, redis: RedisServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path, s3_endpoint, redis, prefix=f"scaleout{next(_prefixes)}/")
    try:
        yield c
    finally:
        c.stop()
