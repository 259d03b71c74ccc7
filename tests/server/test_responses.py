"""Tests for server.responses: the one error → HTTP mapping and the body trimming rule."""

from __future__ import annotations

import pytest

from gomirror.answers import IMMUTABLE, STALE, Lifetime
from gomirror.errors import (
    ChecksumMismatch,
    ConfigError,
    Gone,
    InvalidContent,
    InvalidPath,
    InvalidRequest,
    InvalidVersion,
    NotFound,
    RateLimited,
    StorageError,
    StorageFull,
    SumdbError,
    UpstreamError,
    UpstreamOff,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    VerificationError,
)
from gomirror.server import responses as R


@pytest.mark.parametrize(
    ("err", "status", "cache"),
    [
        (NotFound("not found: x"), 404, R.NOT_FOUND_CACHE),
        (UpstreamOff("module lookup disabled by GOPROXY=off"), 404, R.NOT_FOUND_CACHE),
        (RateLimited("429", retry_after=60), 502, R.ERROR_CACHE),
        (StorageFull("cache full"), 507, R.ERROR_CACHE),
        (Gone("gone: x"), 410, R.NOT_FOUND_CACHE),
        (InvalidRequest("bad"), 400, R.NOT_FOUND_CACHE),
        (InvalidPath("bad path"), 400, R.NOT_FOUND_CACHE),
        (InvalidVersion("bad version"), 400, R.NOT_FOUND_CACHE),
        (ChecksumMismatch("m", "v1.0.0", "zip", "h1:a", "h1:b"), 502, R.ERROR_CACHE),
        (SumdbError("bad signature"), 502, R.ERROR_CACHE),
        (VerificationError("unverifiable"), 502, R.ERROR_CACHE),
        (UpstreamTimeout("timed out"), 504, R.ERROR_CACHE),
        (UpstreamUnavailable("500"), 502, R.ERROR_CACHE),
        (UpstreamRejected("403"), 502, R.ERROR_CACHE),
        (InvalidContent("bad zip"), 502, R.ERROR_CACHE),
        (UpstreamError("boom"), 502, R.ERROR_CACHE),
        (StorageError("disk full"), 500, R.ERROR_CACHE),
        (ConfigError("bad setting"), 500, R.ERROR_CACHE),
    ],
)
def test_status_mapping(err: Exception, status: int, cache: str) -> None:
    ans = R.error_answer(err)
    assert ans.status == status
    assert ans.cache_control == cache
    assert ans.body.endswith(b"\n")
    assert str(err).split("\n")[0].encode() in ans.body


def test_prefixes_name_the_kind_of_failure() -> None:
    assert R.error_answer(InvalidRequest("x")).body == b"bad request: x\n"
    assert R.error_answer(StorageError("disk full")).body == b"cache error: disk full\n"


def test_unexpected_exceptions_leak_nothing() -> None:
    ans = R.error_answer(ValueError("secret /etc/passwd detail"))
    assert (ans.status, ans.body, ans.cache_control) == (500, b"internal error\n", R.ERROR_CACHE)
    assert R.error_answer(KeyError("k")).status == 500


def _check_limits(body: bytes) -> None:
    assert body.endswith(b"\n")
    assert len(body) <= R.MAX_BODY_BYTES
    assert body.count(b"\n") <= R.MAX_BODY_LINES


def test_at_most_eight_lines() -> None:
    msg = "\n".join(f"line {i}" for i in range(20))
    body = R.error_answer(UpstreamError(msg)).body
    _check_limits(body)
    assert body == ("\n".join(f"line {i}" for i in range(8)) + "\n").encode()


def test_at_most_648_bytes_whole_lines_first() -> None:
    msg = "\n".join(f"{i} " + "x" * 150 for i in range(8))
    body = R.error_answer(NotFound(msg)).body
    _check_limits(body)
    lines = body.decode().splitlines()
    assert lines[0].startswith("0 ")
    # 4 * 153 = 612 bytes of whole lines; the fifth is cut to what is left.
    assert all(len(ln) == len(f"{i} ") + 150 for i, ln in enumerate(lines[:4]))
    assert len(lines) == 5
    assert lines[4].startswith("4 x")
    assert len(body) == R.MAX_BODY_BYTES


def test_a_single_overlong_line_is_cut_not_dropped() -> None:
    msg = "not found: " + "a/" * 600
    body = R.error_answer(NotFound(msg)).body
    _check_limits(body)
    assert body.startswith(b"not found: a/a/")
    assert len(body) > 500


def test_multibyte_text_is_cut_on_a_character_boundary() -> None:
    body = R.error_answer(NotFound("é" * 1000)).body
    _check_limits(body)
    body.decode("utf-8")  # must not raise


def test_blank_lines_cr_and_control_characters() -> None:
    body = R.error_body("first\r\n\n\n  \nsecond\x1b[31m\tthird  \n")
    assert body == b"first\nsecond?[31m?third\n"
    assert R.error_body("") == b"\n"


def test_cache_lifetimes() -> None:
    assert R.IMMUTABLE_CACHE.endswith("immutable")
    assert R.cache_control(IMMUTABLE) == R.IMMUTABLE_CACHE
    assert R.cache_control(Lifetime.fresh(60.0)) == "public, max-age=60"
    assert R.cache_control(Lifetime.fresh(0.0)) == R.ERROR_CACHE
    assert R.cache_control(Lifetime.fresh(-5)) == R.ERROR_CACHE
    assert R.cache_control(STALE) == "no-cache"
    assert R.TEXT == "text/plain; charset=utf-8"
