"""logs: key=value events, userinfo masked, client errors demoted, floods rate-limited."""

from __future__ import annotations

import logging

import pytest

from gomirror.logs import ClientErrorFilter, KeyValueFormatter, RateLimitFilter, redact


def record(msg: str, name: str = "gomirror.x", level: int = logging.WARNING, **extra: object):
    rec = logging.LogRecord(name, level, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_fields_are_appended_and_quoted() -> None:
    line = KeyValueFormatter().format(record("upstream failed", upstream="https://a", reason="x y"))
    assert line.endswith('warning gomirror.x upstream failed upstream=https://a reason="x y"')


def test_userinfo_is_masked_everywhere_in_the_line() -> None:
    line = KeyValueFormatter().format(
        record("GET https://bob:hunter2@goproxy.example/x failed", url="http://t0k3n@h/p")
    )
    assert "hunter2" not in line and "t0k3n" not in line
    assert "https://***@goproxy.example/x" in line
    assert redact("no url here") == "no url here"


def test_client_errors_become_one_info_line_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    try:
        raise ValueError("Invalid method encountered")
    except ValueError:
        import sys

        rec = logging.LogRecord(
            "aiohttp.server",
            logging.ERROR,
            __file__,
            1,
            "Error handling request from %s",
            ("127.0.0.1",),
            sys.exc_info(),
        )
    assert ClientErrorFilter().filter(rec)
    assert rec.levelno == logging.INFO and rec.exc_info is None
    line = KeyValueFormatter().format(rec)
    assert "Traceback" not in line and "bad client request" in line
    assert "Invalid method" in line
    caplog.set_level(logging.WARNING)
    again = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s", ("x",), None
    )
    assert not ClientErrorFilter().filter(again)  # an info line is dropped at level warning


def test_rate_limit_suppresses_floods_and_reports_the_count() -> None:
    now = [0.0]
    f = RateLimitFilter(burst=3, period=10.0, clock=lambda: now[0])
    passed = [f.filter(record("accept failed")) for _ in range(100)]
    assert passed.count(True) == 3
    assert f.filter(record("another message"))  # other messages are not affected
    now[0] = 10.0
    rec = record("accept failed")
    assert f.filter(rec)
    assert rec.__dict__["suppressed"] == 97
    assert f.filter(record("request", name="gomirror.access"))  # access log never limited
