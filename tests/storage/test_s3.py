"""Tests for what only S3Storage does, against the real S3 API server of ``s3server`` (moto, over HTTP).

The compliance suite already runs every ``Storage`` test against S3; here:
the sidecar link (a file whose sidecar was replaced or lost is missing, also
after a ``kill -9`` between the two writes), multipart uploads (in parts, with
quota errors and aborts), stream resumption after a cut connection, the read
cache, presigned URLs, error mapping, the settings, and the real go command
following a presigned redirect through gomirror with ``storage = "s3"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import re
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from gomirror.config import load_config
from gomirror.errors import ConfigError, StorageError, StorageFull
from gomirror.storage.base import STREAM_CHUNK
from gomirror.storage.readcache import ReadCache, is_immutable
from gomirror.storage.s3 import S3Settings, S3Storage, storage_error
from storage.backends import ScratchS3Storage, prefix_for, s3_settings
from storage.s3server import S3Endpoint
from support.child import Child
from support.corpus import Corpus
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator

T = TypeVar("T")
ZIP = "example.com/m/@v/v1.0.0.zip"
MOD = "example.com/m/@v/v1.0.0.mod"
MIB = 1 << 20


def make(server: S3Endpoint, root: Path, **overrides: Any) -> ScratchS3Storage:
    return ScratchS3Storage(root, server, **overrides)


@contextlib.asynccontextmanager
async def raw_client(endpoint: S3Endpoint) -> AsyncIterator[Any]:
    """A plain aiobotocore client, to look at the bucket the way an operator would."""
    async with AioSession().create_client(
        "s3",
        endpoint_url=endpoint.url,
        region_name=endpoint.region,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
    ) as c:
        yield c


async def uploads_in_progress(endpoint: S3Endpoint, bucket: str, prefix: str) -> list[str]:
    async with raw_client(endpoint) as c:
        resp = await c.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        return [u["Key"] for u in resp.get("Uploads", [])]


async def read_all(st: S3Storage, key: str) -> bytes | None:
    s = await st.stream(key)
    if s is None:
        return None
    return b"".join([c async for c in s])


def run(coro: Awaitable[T]) -> T:
    async def wrap() -> T:
        return await coro

    return asyncio.run(wrap())


# --- the read cache and the error mapping (no server) ------------------------


def test_only_immutable_keys_are_cached() -> None:
    for key in (MOD, "example.com/m/@v/v1.0.0.info", "sumdb/sum.golang.org/tile/8/0/001"):
        assert is_immutable(key), key
    for key in (
        "example.com/m/@v/list",
        "example.com/m/@latest",
        ZIP + ".json",
        MOD + ".json",
        "_gomirror/query/example.com/m/@v/master.info",
        "_gomirror/sumdb/sum.golang.org/latest",
        "sumdb/sum.golang.org/tile/8/0/001.p/5",
        "sumdb/sum.golang.org/lookup/example.com/m@v1.0.0",
    ):
        assert not is_immutable(key), key


def test_the_read_cache_is_bounded_by_bytes_in_lru_order() -> None:
    cache = ReadCache(max_bytes=1000, max_object=400)
    keys = [f"example.com/m{i}/@v/v1.0.0.mod" for i in range(4)]
    for k in keys[:3]:
        cache.put(k, b"x" * 300)
    assert cache.size == 900 and len(cache) == 3
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], b"y" * 300)  # over 1000: the least recently used (keys[1]) goes
    assert cache.get(keys[1]) is None
    assert cache.get(keys[0]) == b"x" * 300 and cache.get(keys[3]) == b"y" * 300
    assert cache.size <= 1000
    cache.put("example.com/big/@v/v1.0.0.mod", b"z" * 401)  # bigger than one object may be
    assert cache.get("example.com/big/@v/v1.0.0.mod") is None
    cache.put("example.com/m/@v/list", b"v1.0.0\n")  # mutable: never kept
    assert cache.get("example.com/m/@v/list") is None
    cache.discard(keys[0])
    assert cache.get(keys[0]) is None and cache.size == 600
    off = ReadCache(max_bytes=0)
    off.put(MOD, b"")
    assert off.get(MOD) is None


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


def test_quota_and_full_answers_are_storage_full() -> None:
    for code, status in (
        ("QuotaExceeded", 403),  # Ceph RGW
        ("XMinioStorageFull", 507),  # MinIO
        ("XMinioAdminBucketQuotaExceeded", 400),
        ("", 507),
    ):
        assert isinstance(storage_error("writing", ZIP, client_error(code, status)), StorageFull)
    for code, status in (("AccessDenied", 403), ("InternalError", 500), ("NoSuchBucket", 404)):
        err = storage_error("writing", ZIP, client_error(code, status))
        assert type(err) is StorageError and code in str(err) and ZIP in str(err)


# --- settings -----------------------------------------------------------------


def test_storage_settings_load_from_the_environment_and_hide_the_secret() -> None:
    cfg = load_config(
        env={
            "GOMIRROR_STORAGE": "s3",
            "GOMIRROR_S3_ENDPOINT": "http://127.0.0.1:9000/",
            "GOMIRROR_S3_BUCKET": "go-cache",
            "GOMIRROR_S3_PREFIX": "/team/a",
            "GOMIRROR_S3_REGION": "cn-hangzhou",
            "GOMIRROR_S3_ACCESS_KEY": "AKIDEXAMPLE",
            "GOMIRROR_S3_SECRET_KEY": "s3cr3t-value",
            "GOMIRROR_S3_ADDRESSING": "path",
            "GOMIRROR_REDIRECT_MIN_SIZE": "16MiB",
            "GOMIRROR_REDIRECT_EXPIRY": "300",
            "GOMIRROR_S3_READ_CACHE_BYTES": "0",
        }
    )
    st = cfg.storage
    assert (st.storage, st.s3_endpoint, st.s3_bucket, st.s3_prefix) == (
        "s3",
        "http://127.0.0.1:9000",
        "go-cache",
        "team/a/",
    )
    assert (st.s3_region, st.s3_addressing, st.redirect_min_size, st.redirect_expiry) == (
        "cn-hangzhou",
        "path",
        16 * MIB,
        300.0,
    )
    assert st.s3_read_cache_bytes == 0 and st.s3_secret_key == "s3cr3t-value"
    assert "s3cr3t" not in repr(cfg) and "AKIDEXAMPLE" not in repr(cfg)
    defaults = load_config(env={}).storage
    assert defaults.storage == "disk" and defaults.redirect_min_size == 0  # redirects off


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOMIRROR_STORAGE": "s3"}, "s3_bucket: required"),
        ({"GOMIRROR_STORAGE": "nfs"}, "invalid setting storage"),
        ({"GOMIRROR_S3_SECRET_KEY": "only-the-secret"}, "go together"),
        ({"GOMIRROR_S3_ENDPOINT": "http://ak:hunter2@minio:9000"}, "must not contain credentials"),
        ({"GOMIRROR_S3_ENDPOINT": "minio:9000"}, "http(s)://HOST[:PORT]"),
        ({"GOMIRROR_S3_PREFIX": "a/../b"}, "s3_prefix"),
        ({"GOMIRROR_S3_ADDRESSING": "dns"}, "s3_addressing"),
        ({"GOMIRROR_REDIRECT_MIN_SIZE": "-1"}, "redirect_min_size"),
        ({"GOMIRROR_REDIRECT_EXPIRY": "999999999"}, "redirect_expiry"),
        ({"GOMIRROR_S3_PART_SIZE": "1MiB"}, "s3_part_size"),
    ],
)
def test_bad_storage_settings_stop_start_up_without_echoing_secrets(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        load_config(env=env)
    assert "hunter2" not in str(e.value) and "only-the-secret" not in str(e.value)


def test_the_secret_key_is_not_in_the_settings_repr() -> None:
    s = S3Settings(bucket="b", access_key="AKID", secret_key="SECRET")
    assert "SECRET" not in repr(s) and "AKID" not in repr(s)


# --- sidecars and content ------------------------------------------------------


def test_a_sidecar_without_its_file_is_a_miss_until_both_are_written(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    """The service writes the sidecar first: dying before the file leaves a miss, never a bare file."""

    async def main() -> None:
        st = make(s3_server, tmp_path / "a")
        try:
            await st.put_bytes(ZIP + ".json", b'{"h1":"h1:first"}')
            assert await st.stat(ZIP) is None and await st.get(ZIP) is None
            assert await st.stream(ZIP) is None
            await st.put_bytes(ZIP + ".json", b'{"h1":"h1:second"}')  # the re-fetch
            await st.put_bytes(ZIP, b"PK zip")
            assert await st.get(ZIP) == b"PK zip"
            assert await read_all(st, ZIP) == b"PK zip"
            assert (await st.stat(ZIP)) is not None
        finally:
            await st.close()

    run(main())


def test_a_file_whose_sidecar_another_writer_replaced_is_missing(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    """Two instances race (A: sidecar, B: sidecar, B: file, A: file): A's file has B's facts."""
    root = tmp_path / "shared"

    async def main() -> None:
        a, b, reader = make(s3_server, root), make(s3_server, root), make(s3_server, root)
        try:
            await a.put_bytes(ZIP + ".json", b'{"upstream":"A"}')
            await b.put_bytes(ZIP + ".json", b'{"upstream":"B"}')
            await b.put_bytes(ZIP, b"zip from B")
            assert await reader.get(ZIP) == b"zip from B"  # B's pair agrees
            await a.put_bytes(ZIP, b"zip from A")  # A's file, but B's sidecar
            assert await reader.stat(ZIP) is None
            assert await reader.get(ZIP) is None
            assert await reader.stream(ZIP) is None
            # The same goes for a .mod (kept in the read cache once it agrees).
            await a.put_bytes(MOD + ".json", b'{"upstream":"A"}')
            await b.put_bytes(MOD + ".json", b'{"upstream":"B"}')
            await a.put_bytes(MOD, b"module example.com/m\n")
            assert await reader.get(MOD) is None
            # Whoever fetches again writes both in order, and they agree again.
            await a.put_bytes(ZIP + ".json", b'{"upstream":"A2"}')
            await a.put_bytes(ZIP, b"zip from A")
            assert await reader.get(ZIP) == b"zip from A"
            # A lost sidecar (deleted) makes the file lose its facts too.
            await b.delete(ZIP + ".json")
            assert await reader.stat(ZIP) is None
        finally:
            for st in (a, b, reader):
                await st.close()

    run(main())


def test_two_writers_of_the_same_verified_file_agree_whichever_lands_last(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    """Without Redis two instances may store one file at once: same h1, so no 'vanished' file."""
    root = tmp_path / "shared"
    side_a = b'{"h1":"h1:same=","size":6,"upstream":"A","fetched":1.0}'
    side_b = b'{"h1":"h1:same=","size":6,"upstream":"B","fetched":2.0}'

    async def main() -> None:
        a, b, reader = make(s3_server, root), make(s3_server, root), make(s3_server, root)
        try:
            await a.put_bytes(ZIP + ".json", side_a)
            await b.put_bytes(ZIP + ".json", side_b)
            await b.put_bytes(ZIP, b"PK zip")
            await a.put_bytes(ZIP, b"PK zip")  # A's file under B's sidecar: same content facts
            assert await reader.get(ZIP) == b"PK zip"
            assert await reader.stat(ZIP) is not None
            # A sidecar naming other content still disowns the file.
            await b.put_bytes(ZIP + ".json", b'{"h1":"h1:other=","size":6,"upstream":"B"}')
            assert await reader.stat(ZIP) is None
        finally:
            for st in (a, b, reader):
                await st.close()

    run(main())


def test_a_file_stored_without_a_sidecar_is_served_as_is(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    async def main() -> None:
        st = make(s3_server, tmp_path / "a")
        try:
            await st.put_bytes("example.com/m/@v/v1.0.0.info", b'{"Version":"v1.0.0"}')
            await st.put_bytes(ZIP, b"bare")
            assert await st.get(ZIP) == b"bare"
            assert await st.get("example.com/m/@v/v1.0.0.info") == b'{"Version":"v1.0.0"}'
        finally:
            await st.close()

    run(main())


KILLED_UPLOAD_SCRIPT = r"""
import asyncio, sys
from pathlib import Path
from storage.backends import make_backend
from storage.s3server import S3Endpoint

endpoint, root, src = S3Endpoint.from_json(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
KEY = sys.argv[4]


async def main():
    st = make_backend("s3", root, endpoint, part_size=5 << 20, upload_concurrency=1)
    real_part = st._part

    async def part(*args):
        done = await real_part(*args)
        print("part uploaded", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # parked here until the parent kills us
        return done

    st._part = part
    await st.put_bytes(KEY + ".json", b'{"upstream":"child"}')
    await st.put_file(KEY, src)


asyncio.run(main())
"""


def test_kill_9_during_a_multipart_upload_leaves_only_the_sidecar(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    """The object appears whole or not at all; the dead upload's parts are aborted later."""
    root = tmp_path / "cache"
    src = tmp_path / "big.zip"
    data = os.urandom(12 * MIB)
    src.write_bytes(data)
    with Child.start(KILLED_UPLOAD_SCRIPT, s3_server.to_json(), str(root), str(src), ZIP) as child:
        assert child.expect(timeout=60) == "part uploaded"
        child.kill()

    async def main() -> None:
        st = make(s3_server, root)
        try:
            assert await st.stat(ZIP) is None and await st.get(ZIP) is None
            assert [k async for k in st.keys("")] == [ZIP + ".json"]
            pending = await uploads_in_progress(s3_server, s3_server.bucket, st.prefix)
            assert pending == [st.prefix + ZIP]
            # (moto reports every upload as started in 2010, so the age cut is not testable here)
            assert await st.abort_stale_uploads(older_than=0) == 1
            assert await uploads_in_progress(s3_server, s3_server.bucket, st.prefix) == []
            # The next fetch stores both, and the file is served.
            await st.put_bytes(ZIP + ".json", b'{"upstream":"parent"}')
            await st.put_file(ZIP, src)
            assert await read_all(st, ZIP) == data
        finally:
            await st.close()

    run(main())


# --- multipart uploads -----------------------------------------------------------


def test_big_files_are_uploaded_in_parts(s3_server: S3Endpoint, tmp_path: Path) -> None:
    src = tmp_path / "big.zip"
    data = os.urandom(17 * MIB)
    src.write_bytes(data)

    async def main() -> None:
        st = make(s3_server, tmp_path / "a", part_size=5 * MIB)
        try:
            await st.put_file(ZIP, src)
            async with raw_client(s3_server) as c:
                head = await c.head_object(Bucket=st.bucket, Key=st.prefix + ZIP)
            assert head["ETag"].strip('"').endswith("-4")  # 5+5+5+2 MiB: four parts
            assert head["ContentType"] == "application/zip"
            info = await st.stat(ZIP)
            assert info is not None and info.size == len(data)
            assert await read_all(st, ZIP) == data
            assert await st.get(ZIP) == data
            small = tmp_path / "small.zip"
            small.write_bytes(b"PK small")
            await st.put_file(ZIP, small)  # one PUT replaces the multipart object
            assert await st.get(ZIP) == b"PK small"
        finally:
            await st.close()

    run(main())


def test_a_quota_error_mid_upload_aborts_it_and_keeps_the_old_object(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    src = tmp_path / "big.zip"
    src.write_bytes(os.urandom(12 * MIB))
    bucket = s3_server.quota_bucket

    async def main() -> None:
        st = make(s3_server, tmp_path / "a", bucket=bucket, part_size=5 * MIB)
        try:
            await st.put_bytes(ZIP, b"old")
            s3_server.set_quota(bucket, 1 * MIB)
            with pytest.raises(StorageFull, match="QuotaExceeded"):
                await st.put_file(ZIP, src)
            assert await uploads_in_progress(s3_server, bucket, st.prefix) == []
            assert await st.get(ZIP) == b"old"
        finally:
            s3_server.set_quota(bucket, None)
            await st.close()

    run(main())


# --- reads -------------------------------------------------------------------------


def test_keys_page_through_listings_and_stay_inside_the_prefix(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    async def main() -> None:
        one, two = make(s3_server, tmp_path / "one"), make(s3_server, tmp_path / "two")
        try:
            names = {f"example.com/m{i:02d}/@v/list" for i in range(11)}  # 4 pages of 3
            await asyncio.gather(*(one.put_bytes(k, b"v1.0.0\n") for k in names))
            await two.put_bytes("example.com/other/@v/list", b"")
            assert {k async for k in one.keys("")} == names
            assert [k async for k in one.keys("example.com/m03/")] == ["example.com/m03/@v/list"]
            assert [k async for k in two.keys("")] == ["example.com/other/@v/list"]
        finally:
            await one.close()
            await two.close()

    run(main())


def test_small_immutable_objects_are_served_from_memory(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    root = tmp_path / "shared"

    async def main() -> None:
        st, other = make(s3_server, root), make(s3_server, root)
        uncached = make(s3_server, root, read_cache_bytes=0)
        try:
            await other.put_bytes(MOD, b"module example.com/m\n")
            await other.put_bytes("example.com/m/@v/list", b"v1.0.0\n")
            assert await st.get(MOD) == b"module example.com/m\n"
            assert await st.get("example.com/m/@v/list") == b"v1.0.0\n"
            # Gone from the bucket (another instance's gc): the immutable copy still
            # answers, as the same verified bytes; the mutable list is read again.
            await other.delete(MOD)
            await other.put_bytes("example.com/m/@v/list", b"v1.0.0\nv1.1.0\n")
            assert await st.get(MOD) == b"module example.com/m\n"
            assert st.cache.hits == 1
            assert await st.get("example.com/m/@v/list") == b"v1.0.0\nv1.1.0\n"
            assert await uncached.get(MOD) is None
            # Its own writes and deletes are never hidden by the copy.
            await st.put_bytes(MOD, b"module example.com/m // new\n")
            assert await st.get(MOD) == b"module example.com/m // new\n"
            await st.delete(MOD)
            assert await st.get(MOD) is None
        finally:
            for s in (st, other, uncached):
                await s.close()

    run(main())


class CuttingProxy:
    """A TCP relay to the S3 server that cuts the first response longer than ``cut_after`` bytes."""

    def __init__(self, target: str, cut_after: int) -> None:
        parts = urlsplit(target)
        self.target_host, self.target_port = parts.hostname or "", parts.port or 80
        self.cut_after = cut_after
        self.cuts_left = 1
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bool) -> None:
            sent = 0
            try:
                while data := await src.read(1 << 16):
                    if cut and self.cuts_left and sent + len(data) > self.cut_after:
                        self.cuts_left -= 1
                        dst.write(data[: self.cut_after - sent])
                        await dst.drain()
                        break
                    dst.write(data)
                    await dst.drain()
                    sent += len(data)
            except ConnectionError:
                pass
            finally:
                for w in (client_w, up_w):
                    w.close()

        await asyncio.gather(pipe(client_r, up_w, False), pipe(up_r, client_w, True))


def test_a_stream_cut_mid_object_resumes_where_it_broke(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    data = os.urandom(4 * MIB + 123)
    root = tmp_path / "a"

    async def main() -> None:
        writer = make(s3_server, root)
        try:
            await writer.put_bytes(ZIP, data)
            async with CuttingProxy(s3_server.url, cut_after=1 * MIB) as proxy:
                reader = make(s3_server, root, endpoint=proxy.url)
                try:
                    s = await reader.stream(ZIP)
                    assert s is not None
                    chunks = [c async for c in s]
                finally:
                    await reader.close()
            assert proxy.cuts_left == 0, "the proxy never cut the response"
            assert b"".join(chunks) == data
            assert all(0 < len(c) <= STREAM_CHUNK for c in chunks)
        finally:
            await writer.close()

    run(main())


def test_a_stream_never_mixes_an_object_replaced_while_it_was_cut(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    old, new = os.urandom(4 * MIB), os.urandom(4 * MIB)
    root = tmp_path / "a"

    async def main() -> None:
        writer = make(s3_server, root)
        try:
            await writer.put_bytes(ZIP, old)
            async with CuttingProxy(s3_server.url, cut_after=1 * MIB) as proxy:
                reader = make(s3_server, root, endpoint=proxy.url)
                try:
                    s = await reader.stream(ZIP)
                    assert s is not None
                    it = aiter(s)
                    got = await anext(it)
                    await writer.put_bytes(ZIP, new)
                    with pytest.raises(StorageError, match="replaced while being read"):
                        async for chunk in it:
                            got += chunk
                    assert old.startswith(got)  # what was sent was the old object, only
                finally:
                    await reader.close()
        finally:
            await writer.close()

    run(main())


# --- presigned URLs and failures -------------------------------------------------------


@pytest.mark.parametrize("signature", ["v4", "v2"])
def test_a_presigned_url_serves_the_object(
    s3_server: S3Endpoint, tmp_path: Path, signature: str
) -> None:
    data = os.urandom(300_000)

    async def main() -> str:
        st = make(s3_server, tmp_path / "a", signature=signature)
        try:
            await st.put_bytes(ZIP, data)
            url = await st.presign(ZIP, 60)
            assert url is not None
            return url
        finally:
            await st.close()

    url = run(main())
    assert url.startswith(s3_server.url + "/" + s3_server.bucket + "/")
    if signature == "v4":
        assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    else:  # the query-string form of Signature Version 2 (old OSS, OBS and Ceph)
        assert "Signature=" in url and "Expires=" in url and "X-Amz-" not in url
    with urllib.request.urlopen(url, timeout=30) as resp:  # a plain client, no credentials
        assert resp.read() == data


def test_virtual_host_urls_put_the_bucket_in_the_host_name() -> None:
    """Presigning is local: no request is made (the network guard would refuse one)."""

    async def main() -> str | None:
        st = S3Storage(
            S3Settings(
                bucket="go-cache",
                prefix="p/",
                endpoint="https://oss-cn-hangzhou.aliyuncs.com",
                region="cn-hangzhou",
                access_key="AKID",
                secret_key="SECRET",
                addressing="virtual",
            )
        )
        try:
            return await st.presign(ZIP, 600)
        finally:
            await st.close()

    url = run(main())
    assert url is not None
    parts = urlsplit(url)
    assert parts.hostname == "go-cache.oss-cn-hangzhou.aliyuncs.com"
    assert parts.path == "/p/example.com/m/%40v/v1.0.0.zip"
    assert "SECRET" not in url


def test_an_unreachable_object_store_is_a_storage_error(tmp_path: Path) -> None:
    from support.ports import free_port

    async def main() -> None:
        st = S3Storage(
            s3_settings(
                S3Endpoint(url=f"http://127.0.0.1:{free_port()}"),
                tmp_path,
                connect_timeout=2.0,
                max_attempts=1,
            )
        )
        try:
            with pytest.raises(StorageError, match="checking bucket"):
                await st.check()
            with pytest.raises(StorageError, match=f"reading {ZIP}"):
                await st.stat(ZIP)
            with pytest.raises(StorageError, match="writing"):
                await st.put_bytes(ZIP, b"x")
        finally:
            await st.close()

    run(main())


def test_a_missing_bucket_fails_the_check_by_name(s3_server: S3Endpoint, tmp_path: Path) -> None:
    async def main() -> None:
        st = make(s3_server, tmp_path / "a", bucket="no-such-bucket")
        try:
            with pytest.raises(StorageError, match="no-such-bucket"):
                await st.check()
        finally:
            await st.close()

    run(main())


# --- the go command through gomirror on S3 ------------------------------------------------


@pytest.mark.e2e
def test_go_follows_a_presigned_redirect_to_the_object_store(
    s3_server: S3Endpoint, tmp_path: Path
) -> None:
    corpus = Corpus()
    mv = corpus.synthetic_module("example.com/big", "v1.0.0", 256 << 10, n_files=2)
    prefix = prefix_for(tmp_path / "gomirror")
    env = {
        "GOMIRROR_STORAGE": "s3",
        "GOMIRROR_S3_ENDPOINT": s3_server.url,
        "GOMIRROR_S3_BUCKET": s3_server.bucket,
        "GOMIRROR_S3_PREFIX": prefix,
        "GOMIRROR_S3_REGION": s3_server.region,
        "GOMIRROR_S3_ACCESS_KEY": s3_server.access_key,
        "GOMIRROR_S3_SECRET_KEY": s3_server.secret_key,
        "GOMIRROR_S3_ADDRESSING": "path",
        "GOMIRROR_REDIRECT_MIN_SIZE": "1",
        "GOMIRROR_MONITOR": "false",
    }
    with UpstreamSimulator(corpus, name="sim") as sim:
        (tmp_path / "gomirror").mkdir()
        with GomirrorProcess(tmp_path / "gomirror", upstream=sim.url, env=env) as mirror:
            for n in range(2):  # a miss, then a hit: both answered with a redirect
                go = GoRunner(tmp_path / f"go{n}", mirror.url)
                (got,) = go.mod_download_json("example.com/big@v1.0.0")
                assert "Error" not in got, got
                assert go.modcache_file("example.com/big", "v1.0.0", "zip").read_bytes() == mv.zip
            conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
            try:
                conn.request("GET", "/example.com/big/@v/v1.0.0.zip")
                resp = conn.getresponse()
                resp.read()
                location = resp.getheader("Location") or ""
            finally:
                conn.close()
            assert s3_server.secret_key not in mirror.log()
        assert resp.status == 302
        assert location.startswith(f"{s3_server.url}/{s3_server.bucket}/{prefix}example.com/big/")
        assert sim.count("*/@v/v1.0.0.zip") == 1  # stored once, then every answer came from S3
    # The zip and its sidecar are in the bucket, where gomirror put them.
    keys = run(_keys(s3_server, tmp_path / "gomirror"))
    assert {"example.com/big/@v/v1.0.0.zip", "example.com/big/@v/v1.0.0.zip.json"} <= keys
    assert not any(k.startswith("_gomirror/tmp") for k in keys)


async def _keys(endpoint: S3Endpoint, root: Path) -> set[str]:
    st = S3Storage(s3_settings(endpoint, root))
    try:
        return {k async for k in st.keys("")}
    finally:
        await st.close()
