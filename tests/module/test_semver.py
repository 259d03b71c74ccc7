"""Known-answer tests for gomirror.module.semver against the ``semver`` vectors."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gomirror.module import semver
from support.vectors import group

V = group("semver")


@pytest.mark.parametrize("case", V["versions"], ids=[c["in"] for c in V["versions"]])
def test_parse_functions(case: dict[str, Any]) -> None:
    v = case["in"]
    assert semver.is_valid(v) == case["is_valid"]
    assert semver.canonical(v) == case["canonical"]
    assert semver.major(v) == case["major"]
    assert semver.major_minor(v) == case["major_minor"]
    assert semver.prerelease(v) == case["prerelease"]
    assert semver.build(v) == case["build"]


@pytest.mark.parametrize("i", range(len(V["compare_inputs"])), ids=V["compare_inputs"])
def test_compare_matrix_row(i: int) -> None:
    inputs = V["compare_inputs"]
    row = V["compare_matrix"][i]
    got = [semver.compare(inputs[i], w) for w in inputs]
    assert got == row


@pytest.mark.parametrize(
    "case", V["compare_extra"], ids=[f"{c['a']}~{c['b']}" for c in V["compare_extra"]]
)
def test_compare_extra(case: dict[str, Any]) -> None:
    assert semver.is_valid(case["a"]) == case["a_valid"]
    assert semver.is_valid(case["b"]) == case["b_valid"]
    assert semver.compare(case["a"], case["b"]) == case["compare"]
    assert semver.compare(case["b"], case["a"]) == -case["compare"]


def test_sort_golden() -> None:
    shuffled = list(V["sort_golden"])
    random.Random(7).shuffle(shuffled)
    assert semver.sort_versions(shuffled) == V["sort_golden"]
    assert semver.sort_versions(list(reversed(V["sort_golden"]))) == V["sort_golden"]


def test_max_version() -> None:
    assert semver.max_version("v1.2", "v1.1.9") == "v1.2.0"
    assert semver.max_version("bad", "v0.1") == "v0.1.0"
    assert semver.max_version("v1.0.0+x", "v1.0.0") == "v1.0.0"
    assert semver.max_version("bad", "worse") == ""


def test_huge_numbers_compare_by_length() -> None:
    big = "v1." + "9" * 5000 + ".0"
    assert semver.is_valid(big)
    assert semver.compare(big, "v1.2.0") == 1
