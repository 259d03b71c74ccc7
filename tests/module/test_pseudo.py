"""Known-answer tests for gomirror.module.pseudo against the ``pseudo`` vectors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gomirror.errors import InvalidVersion
from gomirror.module import pseudo
from support.vectors import group

V = group("pseudo")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("case", V["construct"], ids=[c["version"] for c in V["construct"]])
def test_construct_and_parse_back(case: dict[str, Any]) -> None:
    v = pseudo.pseudo_version(case["major"], case["older"], _time(case["time"]), case["rev"])
    assert v == case["version"]
    assert pseudo.is_pseudo_version(v) == case["is_pseudo"]
    assert pseudo.is_pseudo_version(case["older"]) == case["older_is_pseudo"]
    assert pseudo.pseudo_version_time(v) == _time(case["parsed_time"])
    assert pseudo.pseudo_version_rev(v) == case["parsed_rev"]
    assert pseudo.pseudo_version_base(v) == case["parsed_base"]


@pytest.mark.parametrize("case", V["invalid_base"], ids=[c["version"] for c in V["invalid_base"]])
def test_invalid_base(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidVersion) as e:
        pseudo.pseudo_version_base(case["version"])
    assert str(e.value) == case["error"]


@pytest.mark.parametrize("case", V["classify"], ids=[c["version"] for c in V["classify"]])
def test_classify(case: dict[str, Any]) -> None:
    v = case["version"]
    assert pseudo.is_pseudo_version(v) == case["is_pseudo"]
    assert pseudo.is_zero_pseudo_version(v) == case["is_zero_pseudo"]
    if "time" in case:
        assert pseudo.pseudo_version_time(v) == _time(case["time"])
    if "time_error" in case:
        with pytest.raises(InvalidVersion) as e:
            pseudo.pseudo_version_time(v)
        assert str(e.value) == case["time_error"]
    if "rev" in case:
        assert pseudo.pseudo_version_rev(v) == case["rev"]
    if "base" in case:
        assert pseudo.pseudo_version_base(v) == case["base"]
    if "base_error" in case:
        with pytest.raises(InvalidVersion) as e:
            pseudo.pseudo_version_base(v)
        assert str(e.value) == case["base_error"]


def test_zero_pseudo() -> None:
    zero = V["zero_pseudo"]
    assert pseudo.zero_pseudo_version("") == zero["empty_major"]
    assert pseudo.zero_pseudo_version("v0") == zero["v0"]
    assert pseudo.zero_pseudo_version("v2") == zero["v2"]
    assert pseudo.is_zero_pseudo_version(zero["v2"])


def test_time_is_converted_to_utc_and_naive_means_utc() -> None:
    east = timezone(timedelta(hours=2))
    t = datetime(2020, 1, 1, 2, 0, 0, tzinfo=east)
    assert pseudo.pseudo_version("", "", t, "abc") == "v0.0.0-20200101000000-abc"
    assert pseudo.pseudo_version("", "", datetime(2020, 1, 1), "abc").startswith("v0.0.0-2020")


def test_trailing_newline_is_not_a_pseudo_version() -> None:
    assert not pseudo.is_pseudo_version("v0.0.0-20191109021931-daa7c04131f5\n")
