"""Tests for gomirror.module.info: .info JSON in and out, @v/list parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gomirror.errors import InvalidContent
from gomirror.module.info import Info, format_info, format_time, parse_info, parse_list


def test_round_trip_proxy_golang_org_shape() -> None:
    body = b'{"Version":"v1.5.2","Time":"2018-02-14T15:44:20Z"}'
    info = parse_info(body)
    assert info == Info("v1.5.2", datetime(2018, 2, 14, 15, 44, 20, tzinfo=UTC), None)
    assert format_info(info) == body


def test_origin_order_and_omitempty() -> None:
    origin = {
        "RepoSum": "r1:x",
        "Ref": "refs/tags/v1.0.0",
        "Hash": "abc",
        "URL": "https://github.com/a/b",
        "VCS": "git",
        "Subdir": "",
        "TagSum": "",
    }
    info = Info("v1.0.0", datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC), origin)
    assert format_info(info) == (
        b'{"Version":"v1.0.0","Time":"2020-01-02T03:04:05Z","Origin":'
        b'{"VCS":"git","URL":"https://github.com/a/b","Hash":"abc",'
        b'"Ref":"refs/tags/v1.0.0","RepoSum":"r1:x"}}'
    )
    assert parse_info(format_info(info)).origin == {k: v for k, v in origin.items() if v}


def test_time_formatting() -> None:
    east = timezone(timedelta(hours=-7))
    assert format_time(datetime(2020, 1, 1, 17, 0, 0, tzinfo=east)) == "2020-01-02T00:00:00Z"
    assert format_time(datetime(2020, 1, 1, 0, 0, 0, 120000, tzinfo=UTC)) == (
        "2020-01-01T00:00:00.12Z"
    )
    assert format_time(None) == "0001-01-01T00:00:00Z"


def test_parse_time_variants() -> None:
    info = parse_info(b'{"Version":"v1.0.0","Time":"2020-01-01T01:00:00.123456789+01:00"}')
    assert info.time == datetime(2020, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert parse_info(b'{"Version":"v1.0.0"}').time is None
    assert parse_info(b'{"Version":"v1.0.0","Time":null}').time is None


def test_go_decoder_leniency() -> None:
    info = parse_info(b'{"version":"v1.0.0","TIME":"2020-01-01T00:00:00Z","Extra":1}')
    assert info.version == "v1.0.0"
    assert info.time is not None


def test_html_escaping_like_go() -> None:
    assert format_info(Info("<&>")) == (
        b'{"Version":"\\u003c\\u0026\\u003e","Time":"0001-01-01T00:00:00Z"}'
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"Time":"2020-01-01T00:00:00Z"}',
        b'{"Version":1}',
        b'{"Version":""}',
        b'{"Version":"v1.0.0","Time":"yesterday"}',
        b'{"Version":"v1.0.0","Time":"2020-13-01T00:00:00Z"}',
        b'{"Version":"v1.0.0","Time":"2020-01-01 00:00:00Z"}',
        b'{"Version":"v1.0.0","Time":5}',
        b'{"Version":"v1.0.0","Origin":"git"}',
        b"\xff\xfe",
    ],
)
def test_parse_info_rejects(body: bytes) -> None:
    with pytest.raises(InvalidContent):
        parse_info(body)


def test_parse_list() -> None:
    body = (
        b"v1.0.0\nv1.10.0 2020-01-01T00:00:00Z\n  v1.2.0  \nbad\n\n"
        b"v0.0.0-20191109021931-daa7c04131f5\nv2.0.0+incompatible\nv1.0.0-rc.1\nv1.2\n"
    )
    assert parse_list(body) == [
        "v1.0.0-rc.1",
        "v1.0.0",
        "v1.2",
        "v1.2.0",
        "v1.10.0",
        "v2.0.0+incompatible",
    ]
    assert parse_list(b"") == []
