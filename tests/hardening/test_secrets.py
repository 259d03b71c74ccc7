"""test_secrets checks that secrets never leave gomirror: credentials everywhere, every channel read.

A real ``gomirror serve`` is started with a credential in every place a URL
or token goes: userinfo in two ``--upstream`` URLs (one of them refuses
connections), userinfo in the ``--sumdb`` URL of a test checksum database,
``git_tokens`` for the git host of a private module (whose "git server" does
not speak TLS), and an alert webhook with a token in its query string (via
``--config``; the webhook answers 500). Then errors are made to flow: the
dead mirror refuses, the live mirror tampers with one module and answers 500
for another, the private module's git fetch fails, the checksum database
answers 500 and finally goes away, and ``/sumdb/`` pass-through requests are
made in each state.

Every output channel is then read: the process's log (stderr, debug level),
``/metrics``, ``/``, ``/-/status``, ``/-/status.json``, ``/readyz``, every file
under the cache directory (``_gomirror/events/`` and the sidecars included),
and the status line, headers and body of every answer, failed or not. None
may contain any of the secrets (nor the base64 ``user:secret`` a Basic
``Authorization`` header would carry). What gomirror sent elsewhere is
checked too: the webhook and the mirror never see the other credentials.

A second test does the same for storage credentials: S3 keys with an
unreachable endpoint (start-up fails) and a Redis password with Redis down.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from hardening.kit import poll, wait_until
from support.corpus import Corpus, build_zip
from support.server import GomirrorProcess, free_port
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

V = "v1.0.0"
HONEST, TAMPERED, FAILING, DB_FAILS, DB_GONE = (f"example.com/secret/m{i}" for i in range(5))
PRIVATE = "git.corp.example/team/repo"
USER = "user"
SECRETS = {
    "upstream": "s3cr3t-up",
    "dead upstream": "s3cr3t-dead",
    "sumdb": "s3cr3t-db",
    "git token": "s3cr3t-git",
    "webhook token": "s3cr3t-hook",
}


def forms(secret: str) -> list[str]:
    """The secret and the Basic-auth encodings it could leak as."""
    return [
        secret,
        base64.b64encode(f"{USER}:{secret}".encode()).decode(),
        base64.b64encode(f"x-access-token:{secret}".encode()).decode(),
    ]


def with_userinfo(url: str, secret: str) -> str:
    return url.replace("http://", f"http://{USER}:{secret}@", 1)


@dataclass
class Channels:
    """Every text gomirror produced, by channel name."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, data: bytes | str) -> None:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        self.texts[name] = self.texts.get(name, "") + text

    def leaks(self, allowed: dict[str, set[str]] | None = None) -> list[str]:
        found = []
        for channel, text in self.texts.items():
            for what, secret in SECRETS.items():
                if allowed and what in allowed.get(channel, set()):
                    continue
                for form in forms(secret):
                    if form in text:
                        i = text.index(form)
                        found.append(
                            f"{what} secret in {channel}: ...{text[max(0, i - 120) : i + 40]!r}"
                        )
        return found


@dataclass
class Hook:
    bodies: list[bytes] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        return web.Response(status=500, text="hook down\n")


@pytest.fixture
def corpus() -> Corpus:
    c = Corpus()
    for m in (HONEST, TAMPERED, FAILING, DB_FAILS, DB_GONE):
        c.add_module(m, V, {"s.go": b"package s\n"})
    return c


@pytest.fixture
def db(corpus: Corpus) -> Iterator[TestSumdb]:
    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    d = TestSumdb(source=source)
    d.start()
    yield d
    d.stop()  # no error if the test stopped it already


def test_no_secret_reaches_any_output_channel(
    tmp_path: Path, corpus: Corpus, db: TestSumdb
) -> None:
    hook = Hook()
    out = Channels()
    with (
        UpstreamSimulator(corpus, name="mirror") as up,
        UpstreamSimulator(Corpus(), name="hook") as hook_sim,
        UpstreamSimulator(Corpus(), name="not-git") as git,
    ):
        hook_sim.mount("/hook", hook.handle)
        git_host = f"127.0.0.1:{git.port}"
        toml = tmp_path / "gomirror.toml"
        toml.write_text(
            f"""
[monitor]
monitor_interval = 1.0
watch = ["{HONEST}", "{TAMPERED}"]

[direct]
private = "git.corp.example"
git_timeout = 20.0
git_tokens = {{ "{git_host}" = "{USER}:{SECRETS["git token"]}" }}

[direct.direct_rules]
"git.corp.example/*/*" = "https://{git_host}/{{path}}.git"

[[alerts]]
type = "webhook"
url = "{hook_sim.url}/hook?token={SECRETS["webhook token"]}"
min_severity = "info"
attempts = 1
"""
        )
        dead = f"http://{USER}:{SECRETS['dead upstream']}@127.0.0.1:{free_port()}"
        upstream = f"{dead}|{with_userinfo(up.url, SECRETS['upstream'])}"
        sumdb = f"{db.verifier_key} {with_userinfo(db.url, SECRETS['sumdb'])}"
        (tmp_path / "run").mkdir()
        proc = GomirrorProcess(
            tmp_path / "run", upstream=upstream, sumdb=sumdb, extra_args=["--config", str(toml)]
        ).start()
        try:
            name = db.name

            def get(path: str, expect: tuple[int, ...] | None = None) -> int:
                status, headers, body = proc.get(path, timeout=60)
                out.add(
                    f"answer to GET {path}",
                    f"{status}\n{headers}\n" + body.decode("utf-8", "replace"),
                )
                if expect is not None:
                    assert status in expect, (path, status, body[:300])
                return status

            # The dead mirror refuses; the live one answers.
            for ext in ("info", "mod", "zip"):
                get(f"/{HONEST}/@v/{V}.{ext}", (200,))
            get(f"/{HONEST}/@v/list", (200,))
            # Tampering: a checksum mismatch names the mirror.
            mv = corpus[TAMPERED, V]
            evil_zip = build_zip([*mv.files, (f"{TAMPERED}@{V}/evil.go", b"package s\n")])
            up.add_fault(f"/{TAMPERED}/@v/{V}.mod", replace_body=(mv.mod or b"") + b"// evil\n")
            up.add_fault(f"/{TAMPERED}/@v/{V}.zip", replace_body=evil_zip)
            get(f"/{TAMPERED}/@v/{V}.mod", (502,))
            get(f"/{TAMPERED}/@v/{V}.zip", (502,))
            assert "checksum mismatch" in out.texts[f"answer to GET /{TAMPERED}/@v/{V}.zip"]
            # The mirror fails.
            up.fail(f"/{FAILING}/*", 500, "mirror exploded\n")
            get(f"/{FAILING}/@v/{V}.info", (502,))
            get(f"/{FAILING}/@v/{V}.mod", (502,))
            get(f"/{FAILING}/@latest", (502,))
            # The private module's git server does not speak TLS.
            get(f"/{PRIVATE}/@v/list")
            get(f"/{PRIVATE}/@latest")
            # The checksum database, honest, through the pass-through.
            get(f"/sumdb/{name}/supported")
            get(f"/sumdb/{name}/latest")
            get(f"/sumdb/{name}/lookup/{HONEST}@{V}")
            # The checksum database fails ...
            db.set_override(f"/lookup/{DB_FAILS}@{V}", b"database exploded\n", status=500)
            db.set_override("/latest", b"database exploded\n", status=500)
            get(f"/{DB_FAILS}/@v/{V}.mod", (502,))
            get(f"/sumdb/{name}/lookup/{DB_FAILS}@{V}")
            get(f"/sumdb/{name}/latest")
            get(f"/sumdb/{name}/tile/8/0/001")
            # ... and goes away.
            db.stop()
            get(f"/{DB_GONE}/@v/{V}.mod", (502,))
            get(f"/{DB_GONE}/@v/{V}.zip", (502,))
            get(f"/sumdb/{name}/lookup/{DB_GONE}@{V}")
            # Alerts are sent asynchronously: give the webhook a chance (it fails; more errors).
            assert poll(lambda: bool(hook.bodies), 15), "no alert reached the webhook"
            for path in ("/metrics", "/", "/-/status", "/-/status.json", "/healthz"):
                get(path, (200,))
            get("/readyz")
        finally:
            proc.stop()
        wait_until(
            lambda: proc.proc is not None and proc.proc.poll() is not None, 15, "gomirror to exit"
        )
        out.add("log (stderr)", proc.log())
        for p in sorted(proc.cache_dir.rglob("*")):
            if p.is_file():
                out.add(f"cache file {p.relative_to(proc.cache_dir)}", p.read_bytes())
        assert any(n.startswith("cache file _gomirror/events") for n in out.texts), (
            "no event was recorded"
        )

        # What gomirror sent to others: the webhook sees no credential at all (its own token
        # is in its URL, which is its address); the mirror sees only its own.
        for i, body in enumerate(hook.bodies):
            out.add(f"webhook request body {i}", body)
        for r in up.requests:
            out.add("requests the mirror received", f"{r.raw_path} {r.headers}\n")
        for r in git.requests:
            out.add("requests the git host received", f"{r.raw_path} {r.headers}\n")

    # The checks can see a credential: the mirror did get its own, as Basic auth.
    assert forms(SECRETS["upstream"])[1] in out.texts["requests the mirror received"]
    leaks = out.leaks(allowed={"requests the mirror received": {"upstream"}})
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks)


STORAGE_SECRETS = {
    "s3 access key": "AKIDs3cr3tak",
    "s3 secret key": "s3cr3t-s3key",
    "redis password": "s3cr3t-redis",
}


def storage_leaks(name: str, text: str) -> list[str]:
    out = []
    for what, secret in STORAGE_SECRETS.items():
        if secret in text:
            i = text.index(secret)
            out.append(f"{what} in {name}: ...{text[max(0, i - 160) : i + 40]!r}")
    return out


def test_storage_credentials_never_reach_the_log(tmp_path: Path, corpus: Corpus) -> None:
    """S3 keys (the bucket's endpoint refuses) and a Redis password (Redis refuses), at debug level."""
    dead = free_port()
    s3 = tmp_path / "s3.toml"
    s3.write_text(
        f"""
[storage]
storage = "s3"
s3_endpoint = "http://127.0.0.1:{dead}"
s3_bucket = "gomirror-test"
s3_access_key = "{STORAGE_SECRETS["s3 access key"]}"
s3_secret_key = "{STORAGE_SECRETS["s3 secret key"]}"
"""
    )
    # Start-up checks the bucket and fails: its message, and every debug line before it.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomirror.cli.main",
            "serve",
            "--config",
            str(s3),
            "--cache-dir",
            str(tmp_path / "s3-cache"),
            "--listen",
            "127.0.0.1:0",
            "--sumdb",
            "off",
            "--upstream",
            "off",
            "--log-level",
            "debug",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith(("GOMIRROR_", "AWS_"))},
    )
    assert run.returncode != 0 and "s3_bucket" in run.stderr, run.stderr[-2000:]
    leaks = storage_leaks("serve's output with an unreachable S3 endpoint", run.stdout + run.stderr)

    redis = tmp_path / "redis.toml"
    redis.write_text(
        f'[storage]\nredis_url = "redis://:{STORAGE_SECRETS["redis password"]}@127.0.0.1:{dead}/0"\n'
    )
    (tmp_path / "redis").mkdir()
    with UpstreamSimulator(corpus, name="mirror") as up:
        proc = GomirrorProcess(
            tmp_path / "redis", upstream=up.url, extra_args=["--config", str(redis)]
        )
        with proc:
            for path in (
                f"/{HONEST}/@v/{V}.info",
                f"/{HONEST}/@v/{V}.zip",
                "/readyz",
                "/metrics",
                "/-/status.json",
            ):
                status, headers, body = proc.get(path, timeout=60)
                leaks += storage_leaks(
                    f"answer to GET {path}", f"{status} {headers} {body.decode('utf-8', 'replace')}"
                )
        leaks += storage_leaks("log with an unreachable Redis", proc.log())
    assert not leaks, f"{len(leaks)} leaks:\n" + "\n".join(leaks)
