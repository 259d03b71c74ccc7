"""s3server runs a real S3 API server, moto's, as its own process on 127.0.0.1 for the storage tests.

Contract: ``S3Server.start(workdir)`` starts ``python -c LAUNCHER``: moto's
WSGI application (the one ``moto_server`` serves) on a werkzeug threaded
server bound to ``127.0.0.1`` port 0, so the kernel picks a free port and
there is no race for it. The child prints ``{"port": N}`` once it is bound;
the parent then polls an HTTP request against it until it answers, with a
deadline (readiness on a real condition, no sleeps). ``stop()`` kills it.
Every request a test makes goes over HTTP to that process: nothing is faked
inside the test process.

The server is configured the way the tests need it: ``ListObjectsV2`` pages
hold ``PAGE_KEYS`` keys unless the client asks otherwise, so every listing
test pages for real; large objects spool to temp files under ``workdir``.
One test-only middleware sits in front of moto: ``set_quota(bucket, n)``
makes every upload to that bucket whose body is over ``n`` bytes fail with
Ceph RGW's ``403 QuotaExceeded`` (moto has no quotas), so full storage is
tested over the wire. ``S3Endpoint`` is what a client needs (URL, region,
keys, bucket) and crosses into subprocesses as JSON.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from support.child import Child
from support.ports import wait_for_http

PAGE_KEYS = 3
BUCKET = "gomirror-test"
QUOTA_BUCKET = "gomirror-quota"

LAUNCHER = r"""
import json, os, sys, tempfile
# Before moto is imported: big objects spool under the test's directory, short list pages.
tempfile.tempdir = sys.argv[1]
os.environ["MOTO_S3_DEFAULT_MAX_KEYS"] = sys.argv[2]
import logging
from werkzeug.serving import make_server
# werkzeug logs every request to stderr, a pipe nobody reads: a few hundred requests would
# fill it and block the server mid-answer. Errors only.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

QUOTA_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>QuotaExceeded</Code>'
    b'<Message>bucket quota exceeded</Message></Error>'
)


class Quota:
    # PUT /_test/quota/<bucket>?bytes=N sets a quota, ?bytes=-1 removes it.
    def __init__(self, app):
        self.app, self.limits = app, {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_test/quota/"):
            n = int(environ.get("QUERY_STRING", "").partition("=")[2])
            bucket = path.rsplit("/", 1)[1]
            if n < 0:
                self.limits.pop(bucket, None)
            else:
                self.limits[bucket] = n
            start_response("204 No Content", [])
            return [b""]
        bucket, _, obj = path.lstrip("/").partition("/")
        limit = self.limits.get(bucket)
        if limit is not None and obj and environ["REQUEST_METHOD"] in ("PUT", "POST"):
            sent = int(environ.get("CONTENT_LENGTH") or 0)
            size = int(environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or sent)
            if size > limit:
                body = environ["wsgi.input"]
                while sent > 0:  # read the body, so the connection stays usable
                    chunk = body.read(min(sent, 1 << 16))
                    if not chunk:
                        break
                    sent -= len(chunk)
                start_response("403 Forbidden", [
                    ("Content-Type", "application/xml"),
                    ("Content-Length", str(len(QUOTA_BODY))),
                ])
                return [QUOTA_BODY]
        return self.app(environ, start_response)


app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, Quota(app), threaded=True)
print(json.dumps({"port": server.server_port}), flush=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class S3Endpoint:
    """Where and as whom a client reaches the test server."""

    url: str
    bucket: str = BUCKET
    quota_bucket: str = QUOTA_BUCKET
    region: str = "us-east-1"
    access_key: str = "gomirror-test"
    secret_key: str = "gomirror-test-secret"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> S3Endpoint:
        return cls(**json.loads(text))

    def set_quota(self, bucket: str, max_bytes: int | None) -> None:
        """Uploads over max_bytes to bucket fail with QuotaExceeded (None: no quota)."""
        n = -1 if max_bytes is None else max_bytes
        req = urllib.request.Request(f"{self.url}/_test/quota/{bucket}?bytes={n}", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204


class S3Server:
    """One moto S3 API server process (see the module docstring)."""

    def __init__(self, child: Child, endpoint: S3Endpoint) -> None:
        self.child = child
        self.endpoint = endpoint

    @classmethod
    def start(cls, workdir: Path, timeout: float = 60.0) -> S3Server:
        workdir.mkdir(parents=True, exist_ok=True)
        child = Child.start(LAUNCHER, str(workdir), str(PAGE_KEYS))
        try:
            port = json.loads(child.expect(timeout=timeout))["port"]
            endpoint = S3Endpoint(url=f"http://127.0.0.1:{port}")
            wait_for_http(endpoint.url + "/", timeout=timeout)
            for bucket in (endpoint.bucket, endpoint.quota_bucket):
                req = urllib.request.Request(f"{endpoint.url}/{bucket}", method="PUT")
                with urllib.request.urlopen(req, timeout=10) as resp:
                    assert resp.status == 200, resp.status
        except BaseException:
            child.kill()
            raise
        return cls(child, endpoint)

    def stop(self) -> None:
        if self.child.proc.poll() is None:
            self.child.kill()
        for pipe in (self.child.proc.stdin, self.child.proc.stdout, self.child.proc.stderr):
            if pipe is not None:
                pipe.close()
