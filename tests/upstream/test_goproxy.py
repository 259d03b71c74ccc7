"""Tests for upstream.goproxy: GOPROXY list parsing with Go's rules."""

from __future__ import annotations

import pytest

from gomirror.errors import ConfigError
from gomirror.upstream.goproxy import Entry, parse_goproxy, redact_url


def test_separators_set_fallback_of_the_entry_before_them() -> None:
    assert parse_goproxy("https://a,https://b|https://c") == [
        Entry("https://a", False),
        Entry("https://b", True),
        Entry("https://c", False),
    ]


def test_keywords_end_the_list_and_schemes_are_added() -> None:
    assert parse_goproxy(" goproxy.cn , direct , https://ignored") == [
        Entry("https://goproxy.cn", False),
        Entry("direct", False),
    ]
    assert parse_goproxy("off") == [Entry("off", False)]
    assert parse_goproxy("127.0.0.1:8080") == [Entry("https://127.0.0.1:8080", False)]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (",", "contains no entries"),
        ("ftp://x.example", "invalid proxy URL scheme"),
        ("file:///tmp/x", "file:// upstreams are not supported"),
    ],
)
def test_bad_lists(value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_goproxy(value)


def test_redact_url_drops_credentials() -> None:
    assert (
        redact_url("https://user:secret@mirror.example:8443/goproxy")
        == "https://mirror.example:8443/goproxy"
    )
    assert redact_url("https://mirror.example") == "https://mirror.example"
