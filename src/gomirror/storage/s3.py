"""storage.s3 stores objects in one bucket of an S3-compatible object store (AWS S3, MinIO, Ceph RGW, OSS, COS, OBS).

A storage key ``k`` is the object ``<prefix>k`` in the bucket. The client is
aiobotocore (asyncio, on aiohttp), made on first use inside the running event
loop and closed by ``close``; one ``S3Storage`` belongs to one event loop.

Contract, beyond ``storage.base``:
- Atomic as S3 gives it: a PUT, or a multipart upload once completed, makes
  the whole object appear at once; readers never see part of one. Files up
  to ``part_size`` go in one PUT, bigger ones in parts of ``part_size``
  (``upload_concurrency`` at once), each sent straight from the file: no
  upload holds a part in memory. A failed upload is aborted; one cut by a crash never
  becomes visible, and ``abort_stale_uploads`` (or the bucket's lifecycle
  rule) removes its parts.
- Sidecars: when this process wrote ``k.json`` and then writes ``k``, the
  object ``k`` records the sidecar's identity in its metadata: a digest of
  the ``h1:`` and size it names (of the whole sidecar when it names none).
  Reading ``k`` (``get``, ``stat``, ``stream``) checks the sidecar still has
  that identity, and treats ``k`` as missing when it does not: the sidecar
  was replaced by one describing other content, or deleted, so the file no
  longer has the facts it was stored with (two instances storing the same
  verified file at once agree, whichever sidecar and file land last); the service then fetches it again and writes both in
  order. A sidecar without its file (a crash between the two writes) is
  harmless: the file is missing, so it is fetched. A file stored without a
  sidecar written first carries no digest and is served as is, as on disk.
- Reads: ``stream`` is one GET read in chunks of at most ``STREAM_CHUNK``;
  when the connection breaks it resumes with a ranged GET pinned to the
  object's ETag, so a replaced object is never mixed with the old one.
  ``get`` of small immutable objects is answered from a ``ReadCache``.
- ``stat`` mtime is the writer's clock (sub-second, kept in the metadata),
  else the object's Last-Modified. ``keys`` pages through ListObjectsV2.
- ``presign`` signs a GET URL locally (no request). ``local_path`` is None.
- Errors: a missing key is None; every other failure is ``StorageError``
  naming the operation and key, ``StorageFull`` for quota or full-storage
  answers (Ceph's ``QuotaExceeded``, MinIO's ``XMinioStorageFull``, HTTP 507).
  Credentials never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from gomirror.errors import StorageError, StorageFull
from gomirror.storage.base import STREAM_CHUNK, ObjectInfo
from gomirror.storage.disk import check_key
from gomirror.storage.readcache import ReadCache

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from gomirror.config import StorageSection

log = logging.getLogger(__name__)

MAX_PARTS = 10_000  # S3's limit per multipart upload
MAX_KEY_BYTES = 1024
MAX_RESUMES = 3  # ranged re-GETs after a broken connection, per stream
PENDING_SIDECARS = 4096
SIDECAR = ".json"
META_SIDECAR = "gomirror-sidecar"  # x-amz-meta-gomirror-sidecar: digest of k.json
META_MTIME = "gomirror-mtime"
FULL_CODES = frozenset({"QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NETWORK_ERRORS = (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach the bucket. Empty strings mean "from the AWS environment/profile chain"."""

    bucket: str
    prefix: str = ""  # "" or "a/b/"
    endpoint: str = ""  # "": AWS S3
    region: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    addressing: str = "virtual"  # or "path"
    signature: str = "v4"  # or "v2"
    tls_verify: bool = True
    ca_file: Path | None = None
    part_size: int = 8 << 20
    upload_concurrency: int = 2
    read_cache_bytes: int = 32 << 20
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_connections: int = 64
    max_attempts: int = 3  # per request, with botocore's backoff; 5xx, throttling, resets

    @classmethod
    def from_section(cls, st: StorageSection, **overrides: Any) -> S3Settings:
        """The settings a ``[storage]`` section names; ``overrides`` change single fields."""
        fields: dict[str, Any] = {
            "bucket": st.s3_bucket,
            "prefix": st.s3_prefix,
            "endpoint": st.s3_endpoint,
            "region": st.s3_region,
            "access_key": st.s3_access_key,
            "secret_key": st.s3_secret_key,
            "addressing": st.s3_addressing,
            "signature": st.s3_signature,
            "tls_verify": st.s3_tls_verify,
            "ca_file": st.s3_ca_file,
            "part_size": st.s3_part_size,
            "read_cache_bytes": st.s3_read_cache_bytes,
        }
        fields.update(overrides)
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class _Head:
    size: int
    mtime: float
    etag: str
    meta: dict[str, str]


def _head_of(resp: Any) -> _Head:
    meta = {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}
    try:
        mtime = float(meta[META_MTIME])
    except (KeyError, ValueError):
        mtime = resp["LastModified"].timestamp()
    return _Head(int(resp["ContentLength"]), mtime, str(resp.get("ETag", "")), meta)


def _code(e: ClientError) -> tuple[str, int]:
    err: Any = e.response.get("Error", {})
    status: Any = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(err.get("Code", "")), int(status or 0)


def _missing(e: Exception) -> bool:
    return isinstance(e, ClientError) and _code(e)[0] in NOT_FOUND_CODES


def storage_error(action: str, key: str, e: Exception) -> StorageError:
    """The domain error for a failed S3 call: StorageFull for quota/full answers."""
    if isinstance(e, ClientError):
        code, status = _code(e)
        if code in FULL_CODES or status == 507:
            return StorageFull(f"object store full ({code or status}) while {action} {key}")
        msg = str(e.response.get("Error", {}).get("Message", ""))[:200]
        what = code or f"HTTP {status}"
        return StorageError(f"object store {action} {key} failed: {what}{': ' if msg else ''}{msg}")
    return StorageError(f"object store {action} {key} failed: {type(e).__name__}: {e}"[:400])


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _sidecar_identity(data: bytes) -> str:
    """What a file's sidecar says the file is: its ``h1:`` and size, else the sidecar's digest.

    Two writers that stored the same verified bytes record the same ``h1:`` in
    sidecars that differ in time and upstream; keying on the content facts lets
    either file stand with either sidecar, while a file whose sidecar describes
    other content is still caught.
    """
    try:
        meta = json.loads(data)
    except ValueError:
        return _digest(data)
    if isinstance(meta, dict) and isinstance(meta.get("h1"), str):
        return _digest(f"{meta['h1']} {meta.get('size')}".encode())
    return _digest(data)


def _content_type(key: str) -> str:
    if key.endswith(".zip"):
        return "application/zip"
    if key.endswith((".json", ".info", "@latest")):
        return "application/json"
    return "text/plain; charset=utf-8"


class S3Storage:
    """A Storage in an S3-compatible bucket (see the module docstring)."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.cache = ReadCache(settings.read_cache_bytes)
        self._stack = contextlib.AsyncExitStack()
        self._s3: S3Client | None = None
        self._opening = asyncio.Lock()
        # key -> digest of the sidecar this process just wrote for it (see the docstring).
        self._pending: OrderedDict[str, str] = OrderedDict()

    # --- the client ------------------------------------------------------

    async def _client(self) -> S3Client:
        if self._s3 is not None:
            return self._s3
        async with self._opening:
            if self._s3 is None:
                client: S3Client = await self._stack.enter_async_context(self._new_client())
                self._s3 = client
            return self._s3

    def _new_client(self) -> Any:
        s = self.settings
        config = AioConfig(
            signature_version="s3v4" if s.signature == "v4" else "s3",
            s3={"addressing_style": s.addressing},
            retries={"mode": "standard", "max_attempts": s.max_attempts},
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            max_pool_connections=s.max_connections,
            # Newer botocore adds CRC trailers and aws-chunked bodies by default,
            # which MinIO, Ceph, OSS and COS versions in the field reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return AioSession().create_client(
            "s3",
            region_name=s.region or None,
            endpoint_url=s.endpoint or None,
            aws_access_key_id=s.access_key or None,
            aws_secret_access_key=s.secret_key or None,
            verify=str(s.ca_file) if s.ca_file is not None else s.tls_verify,
            config=config,
        )

    def _name(self, key: str) -> str:
        check_key(key)
        name = self.prefix + key
        if len(name.encode()) > MAX_KEY_BYTES:
            raise StorageError(f"storage key too long for S3 ({len(name.encode())} bytes): {key}")
        return name

    async def close(self) -> None:
        await self._stack.aclose()
        self._s3 = None

    async def check(self) -> None:
        """Raise StorageError unless the bucket answers (start-up, readiness)."""
        try:
            await (await self._client()).head_bucket(Bucket=self.bucket)
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("checking bucket", self.bucket, e) from None

    # --- reads -----------------------------------------------------------

    async def _head(self, key: str) -> _Head | None:
        c = await self._client()
        try:
            return _head_of(await c.head_object(Bucket=self.bucket, Key=self._name(key)))
        except (ClientError, *_NETWORK_ERRORS) as e:
            if _missing(e):
                return None
            raise storage_error("reading", key, e) from None

    async def _sidecar_digest(self, key: str) -> str | None:
        c = await self._client()
        try:
            resp = await c.get_object(Bucket=self.bucket, Key=self._name(key + SIDECAR))
            async with resp["Body"] as body:
                return _sidecar_identity(await body.read())
        except (ClientError, *_NETWORK_ERRORS) as e:
            if _missing(e):
                return None
            raise storage_error("reading", key + SIDECAR, e) from None

    async def _agrees(
        self, key: str, head: _Head, sidecar: asyncio.Task[str | None] | None
    ) -> bool:
        """Whether the object's recorded sidecar digest (if any) is the current sidecar's."""
        want = head.meta.get(META_SIDECAR)
        if want is None:
            return True
        have = await (sidecar if sidecar is not None else self._sidecar_digest(key))
        if have == want:
            return True
        log.warning("object without its sidecar", extra={"key": key, "sidecar": have is not None})
        return False

    def _sidecar_task(self, key: str) -> asyncio.Task[str | None] | None:
        """Start reading the sidecar alongside the object when the key usually has one."""
        if key.endswith(SIDECAR) or key.startswith("_gomirror/") or "/@v/" not in key:
            return None
        return asyncio.create_task(self._sidecar_digest(key))

    async def stat(self, key: str) -> ObjectInfo | None:
        self._name(key)
        sidecar = self._sidecar_task(key)
        try:
            head = await self._head(key)
            if head is None or not await self._agrees(key, head, sidecar):
                return None
        finally:
            await _settle(sidecar)
        return ObjectInfo(key=key, size=head.size, mtime=head.mtime)

    async def get(self, key: str) -> bytes | None:
        name = self._name(key)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        c = await self._client()
        sidecar = self._sidecar_task(key)
        try:
            try:
                resp = await c.get_object(Bucket=self.bucket, Key=name)
                async with resp["Body"] as body:
                    data = await body.read()
            except (ClientError, *_NETWORK_ERRORS) as e:
                if _missing(e):
                    return None
                raise storage_error("reading", key, e) from None
            if not await self._agrees(key, _head_of(resp), sidecar):
                return None
        finally:
            await _settle(sidecar)
        self.cache.put(key, data)
        return data

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        name = self._name(key)
        c = await self._client()
        sidecar = self._sidecar_task(key)
        try:
            try:
                resp = await c.get_object(Bucket=self.bucket, Key=name)
            except (ClientError, *_NETWORK_ERRORS) as e:
                if _missing(e):
                    return None
                raise storage_error("reading", key, e) from None
            head = _head_of(resp)
            agrees = False
            try:
                agrees = await self._agrees(key, head, sidecar)
            finally:
                if not agrees:
                    resp["Body"].close()
            if not agrees:
                return None
        finally:
            await _settle(sidecar)
        return self._chunks(key, resp["Body"], head)

    async def _chunks(self, key: str, body: Any, head: _Head) -> AsyncIterator[bytes]:
        offset, resumes = 0, 0
        try:
            while offset < head.size:
                try:
                    chunk = await body.read(min(STREAM_CHUNK, head.size - offset))
                except _NETWORK_ERRORS as e:
                    chunk, why = b"", f"{type(e).__name__}: {e}"
                else:
                    why = "connection closed early"
                if chunk:
                    offset += len(chunk)
                    yield chunk
                    continue
                body.close()
                if resumes >= MAX_RESUMES:
                    raise StorageError(f"object store reading {key} failed at byte {offset}: {why}")
                resumes += 1
                log.info("resuming object read", extra={"key": key, "offset": offset, "why": why})
                body = await self._range(key, offset, head.etag)
        finally:
            body.close()

    async def _range(self, key: str, offset: int, etag: str) -> Any:
        c = await self._client()
        try:
            resp = await c.get_object(
                Bucket=self.bucket, Key=self._name(key), Range=f"bytes={offset}-", IfMatch=etag
            )
        except (ClientError, *_NETWORK_ERRORS) as e:
            if isinstance(e, ClientError) and _code(e)[1] == 412:
                raise StorageError(f"object {key} was replaced while being read") from None
            raise storage_error("reading", key, e) from None
        return resp["Body"]

    async def local_path(self, key: str) -> Path | None:
        self._name(key)
        return None  # objects have no local file to sendfile from

    async def presign(self, key: str, expires: float) -> str | None:
        name = self._name(key)
        c = await self._client()
        try:
            url: str = await c.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": name},
                ExpiresIn=max(1, int(expires)),
            )
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("signing", key, e) from None
        return url

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        c = await self._client()
        pages = c.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        try:
            async for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.prefix) :]
                    if key and not key.endswith("/"):  # "folder" markers are no objects
                        yield key
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("listing", prefix or "(all)", e) from None

    # --- writes ----------------------------------------------------------

    def _metadata(self, key: str) -> dict[str, str]:
        meta = {META_MTIME: f"{time.time():.6f}"}
        link = self._pending.get(key)
        if link is not None:
            meta[META_SIDECAR] = link
        return meta

    def _wrote(self, key: str, data: bytes | None) -> None:
        """Bookkeeping after a successful write: the read cache and the sidecar digests."""
        self.cache.discard(key)
        self._pending.pop(key, None)  # used up by this write (or none)
        if data is None:
            return
        self.cache.put(key, data)
        if key.endswith(SIDECAR):
            self._pending[key.removesuffix(SIDECAR)] = _sidecar_identity(data)
            self._pending.move_to_end(key.removesuffix(SIDECAR))
            while len(self._pending) > PENDING_SIDECARS:
                self._pending.popitem(last=False)

    async def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        c = await self._client()
        self.cache.discard(key)
        try:
            await c.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                Metadata=self._metadata(key),
                ContentType=_content_type(key),
            )
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("writing", key, e) from None
        self._wrote(key, data)

    async def put_file(self, key: str, src: Path) -> None:
        name = self._name(key)
        try:
            size = (await asyncio.to_thread(os.stat, src)).st_size
        except OSError as e:
            raise StorageError(f"reading {src.name} to store {key} failed: {e.strerror}") from None
        self.cache.discard(key)
        if size > self.settings.part_size:
            await self._multipart(key, src, size)
        else:
            c = await self._client()
            try:
                with _FilePart(src, 0, size) as body:
                    await c.put_object(
                        Bucket=self.bucket,
                        Key=name,
                        Body=cast("IO[bytes]", body),
                        ContentLength=size,
                        Metadata=self._metadata(key),
                        ContentType=_content_type(key),
                    )
            except (ClientError, *_NETWORK_ERRORS) as e:
                raise storage_error("writing", key, e) from None
        self._wrote(key, None)

    async def _multipart(self, key: str, src: Path, size: int) -> None:
        c = await self._client()
        name = self._name(key)
        try:
            upload = await c.create_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                Metadata=self._metadata(key),
                ContentType=_content_type(key),
            )
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("writing", key, e) from None
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(key, upload_id, src, size)
            await c.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as e:
            # Shielded: even a cancelled upload must not leave its parts behind.
            await asyncio.shield(self._abort(key, upload_id))
            if isinstance(e, ClientError | BotoCoreError | aiohttp.ClientError | TimeoutError):
                raise storage_error("writing", key, e) from None
            if isinstance(e, OSError):
                raise StorageError(f"reading {src.name} to store {key} failed: {e}") from None
            raise

    async def _upload_parts(
        self, key: str, upload_id: str, src: Path, size: int
    ) -> list[CompletedPartTypeDef]:
        """Upload src in parts, at most ``upload_concurrency`` at once; return them in order."""
        part_size = max(self.settings.part_size, -(-size // MAX_PARTS))
        inflight: set[asyncio.Task[CompletedPartTypeDef]] = set()
        done: list[CompletedPartTypeDef] = []
        try:
            for number, offset in enumerate(range(0, size, part_size), 1):
                length = min(part_size, size - offset)
                part = self._part(key, upload_id, number, src, offset, length)
                inflight.add(asyncio.create_task(part))
                if len(inflight) >= self.settings.upload_concurrency:
                    finished, inflight = await asyncio.wait(
                        inflight, return_when=asyncio.FIRST_COMPLETED
                    )
                    done.extend(t.result() for t in finished)
            done.extend(await asyncio.gather(*inflight))
            inflight = set()
        finally:
            for t in inflight:
                t.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
        return sorted(done, key=lambda p: p["PartNumber"])

    async def _part(
        self, key: str, upload_id: str, number: int, src: Path, offset: int, length: int
    ) -> CompletedPartTypeDef:
        c = await self._client()
        with _FilePart(src, offset, length) as body:
            resp = await c.upload_part(
                Bucket=self.bucket,
                Key=self._name(key),
                UploadId=upload_id,
                PartNumber=number,
                Body=cast("IO[bytes]", body),
                ContentLength=length,
            )
        return {"ETag": resp["ETag"], "PartNumber": number}

    async def _abort(self, key: str, upload_id: str) -> None:
        c = await self._client()
        try:
            await c.abort_multipart_upload(
                Bucket=self.bucket, Key=self._name(key), UploadId=upload_id
            )
        except (ClientError, *_NETWORK_ERRORS) as e:
            log.warning(
                "multipart upload not aborted",
                extra={"key": key, "error": str(storage_error("aborting", key, e))},
            )

    async def abort_stale_uploads(self, older_than: float = 24 * 3600.0) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` s ago."""
        c = await self._client()
        cutoff = time.time() - older_than
        aborted = 0
        try:
            pages = c.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            async for page in pages:
                for up in page.get("Uploads", []):
                    if up["Initiated"].timestamp() <= cutoff:
                        await c.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        aborted += 1
        except (ClientError, *_NETWORK_ERRORS) as e:
            raise storage_error("aborting uploads under", self.prefix or "(all)", e) from None
        return aborted

    async def delete(self, key: str) -> None:
        name = self._name(key)
        c = await self._client()
        self.cache.discard(key)
        self._pending.pop(key, None)
        try:
            await c.delete_object(Bucket=self.bucket, Key=name)
        except (ClientError, *_NETWORK_ERRORS) as e:
            if not _missing(e):
                raise storage_error("deleting", key, e) from None


class _FilePart(io.RawIOBase):
    """Bytes [offset, offset+length) of a file as a seekable stream of their own.

    Handed to botocore as a request body, it is hashed (SigV4 over http) and
    sent by aiohttp in small reads, so an upload never holds a part in memory.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._offset, self._length, self._pos = offset, length, 0

    def __len__(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = min(max(0, base + pos), self._length)
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._length - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._offset + self._pos)
        got = self._f.readinto(memoryview(buf)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


async def _settle(task: asyncio.Task[str | None] | None) -> None:
    """End a sidecar read nobody needs any more; its outcome (even an error) is dropped."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])  # never raises the task's error; our own cancellation still does
    if not task.cancelled():
        task.exception()  # mark it retrieved, so asyncio does not log it
