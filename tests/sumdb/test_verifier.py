"""test_sumdb_verifier checks verdicts, mismatches, nosumdb skips and GOSUMDB parsing."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest

from gomirror.errors import ChecksumMismatch, ConfigError, VerificationError
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.routes import SumdbUnavailable
from gomirror.sumdb.transport import HttpSumdbTransport, SumdbRoute, database_routes
from gomirror.sumdb.verifier import (
    KNOWN_SUMDB_KEYS,
    NoVerifier,
    SumdbSpec,
    SumdbVerifier,
    Verdict,
    parse_sumdb_spec,
)
from support.sumdb_server import TEST_VERIFIER_KEY, DirectTransport, MemoryStore, TestSumdb

ZIP = "h1:3fEykkD9k7lYzXqCYrwGAf7iNhbk4yCjHmKBN9td4L0="
MOD = "h1:LzX7hefJvL54yjefDEDHNONDjII0t9xZLPXsUe+TKr0="
OTHER = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def _verifier(nosumdb: str = "") -> tuple[SumdbVerifier, TestSumdb]:
    db = TestSumdb()
    db.add("rsc.io/quote", "v1.5.2", ZIP, MOD)
    db.add("golang.org/toolchain", "v0.0.1-go1.22.0.linux-amd64", OTHER, OTHER)
    client = SumdbClient(TEST_VERIFIER_KEY, DirectTransport(db), MemoryStore())
    return SumdbVerifier(client, nosumdb=nosumdb), db


def test_verified_zip_and_mod_share_one_lookup() -> None:
    v, db = _verifier()

    async def both() -> tuple[Verdict, Verdict]:
        return (
            await v.check("rsc.io/quote", "v1.5.2", "zip", ZIP),
            await v.check("rsc.io/quote", "v1.5.2", "mod", MOD),
        )

    z, m = asyncio.run(both())
    assert z == m == Verdict(True, db.name, 2, f"verified: {db.name} tree 2")
    assert db.requests.count("/lookup/rsc.io/quote@v1.5.2") == 1


def test_mismatch_raises_checksum_mismatch() -> None:
    v, _ = _verifier()
    with pytest.raises(ChecksumMismatch) as exc:
        asyncio.run(v.check("rsc.io/quote", "v1.5.2", "mod", OTHER))
    e = exc.value
    assert (e.module, e.version, e.kind, e.expected, e.got) == (
        "rsc.io/quote",
        "v1.5.2",
        "go.mod",
        MOD,
        OTHER,
    )
    assert "rsc.io/quote@v1.5.2/go.mod" in str(e)
    with pytest.raises(ChecksumMismatch, match="sumdb has h1:3fEy"):
        asyncio.run(v.check("rsc.io/quote", "v1.5.2", "zip", OTHER))


def test_unknown_version_is_a_verification_failure() -> None:
    v, _ = _verifier()
    with pytest.raises(VerificationError, match="not in checksum database") as exc:
        asyncio.run(v.check("rsc.io/quote", "v9.9.9", "zip", ZIP))
    assert not isinstance(exc.value, ChecksumMismatch)


def test_nosumdb_modules_are_never_sent() -> None:
    v, db = _verifier(nosumdb="rsc.io,*.corp.example.com,golang.org")
    verdict = asyncio.run(v.check("rsc.io/quote", "v1.5.2", "zip", OTHER))
    assert verdict == Verdict(
        False, None, None, "skipped: matches nosumdb rsc.io,*.corp.example.com,golang.org"
    )
    assert asyncio.run(v.check("git.corp.example.com/x", "v1.0.0", "mod", OTHER)).verified is False
    assert db.requests == []
    # The go command always verifies toolchain modules, whatever GONOSUMDB says.
    toolchain = asyncio.run(
        v.check("golang.org/toolchain", "v0.0.1-go1.22.0.linux-amd64", "zip", OTHER)
    )
    assert toolchain.verified


def test_no_verifier_skips() -> None:
    verdict = asyncio.run(NoVerifier().check("rsc.io/quote", "v1.5.2", "zip", ZIP))
    assert not verdict.verified and verdict.note.startswith("skipped:")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sum.golang.org", SumdbSpec("sum.golang.org", KNOWN_SUMDB_KEYS["sum.golang.org"], None)),
        (
            "sum.golang.google.cn",
            SumdbSpec(
                "sum.golang.org", KNOWN_SUMDB_KEYS["sum.golang.org"], "https://sum.golang.google.cn"
            ),
        ),
        (
            f"{TEST_VERIFIER_KEY} http://127.0.0.1:1234/db",
            SumdbSpec("localhost.localdev/sumdb", TEST_VERIFIER_KEY, "http://127.0.0.1:1234/db"),
        ),
        (TEST_VERIFIER_KEY, SumdbSpec("localhost.localdev/sumdb", TEST_VERIFIER_KEY, None)),
        ("off", None),
    ],
)
def test_parse_sumdb_spec(value: str, expected: SumdbSpec | None) -> None:
    assert parse_sumdb_spec(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("", "missing GOSUMDB"),
        ("a b c", "invalid GOSUMDB: too many fields"),
        ("sum.example.com", "invalid GOSUMDB: malformed verifier id"),
        (f"{TEST_VERIFIER_KEY} ftp://x", "invalid GOSUMDB URL: ftp://x"),
    ],
)
def test_parse_sumdb_spec_errors(value: str, error: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_sumdb_spec(value)
    assert str(exc.value) == error


def test_mirror_without_the_database_is_not_no_record() -> None:
    """Defect 11: no working route is "database unavailable", with the routes and a fix."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with TestSumdb() as mirror:  # answers 404 for /supported, as a mirror without /sumdb/ does
        mirror.add("rsc.io/quote", "v1.5.2", ZIP, MOD)

        async def main() -> None:
            async with aiohttp.ClientSession() as session:
                routes = database_routes("db.example", None, [mirror.url])
                routes[-1] = SumdbRoute(dead)  # "the database itself", unreachable
                transport = HttpSumdbTransport(routes, session, name="db.example")
                client = SumdbClient(TEST_VERIFIER_KEY, transport, MemoryStore())
                await SumdbVerifier(client).check("rsc.io/quote", "v1.5.2", "zip", ZIP)

        with pytest.raises(VerificationError) as exc:
            asyncio.run(main())
    err = exc.value
    assert isinstance(err, SumdbUnavailable)
    text = str(err)
    assert "no record" not in text and "not in checksum database" not in text
    assert f"{mirror.url}/sumdb/db.example: does not proxy this checksum database" in text
    assert f"{dead}: connection failed" in text
    assert 'sumdb = "off"' in text
    assert mirror.requests == ["/sumdb/db.example/supported"]
