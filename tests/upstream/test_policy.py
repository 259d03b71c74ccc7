"""Tests for upstream.policy: the order each policy asks links in, fall-through, hedge delays.

Policies do no I/O, so the links hold ``Named`` stand-ins that only have a name;
health records are filled by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gomirror.config import POLICIES
from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    Gone,
    InvalidContent,
    NotFound,
    RateLimited,
    SumdbError,
    UpstreamOff,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.health import HealthBook
from gomirror.upstream.policy import (
    POLICY_NAMES,
    FailoverPolicy,
    FastestPolicy,
    GoPolicy,
    HedgedPolicy,
    Link,
    Policy,
    make_policy,
)


class Named:
    """An Upstream that is only a name: policies never call one."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def list(self, module: str) -> Fetched:
        raise AssertionError("policies do not fetch")

    async def info(self, module: str, query: str) -> Fetched:
        raise AssertionError("policies do not fetch")

    async def latest(self, module: str) -> Fetched:
        raise AssertionError("policies do not fetch")

    async def mod(self, module: str, version: str) -> Fetched:
        raise AssertionError("policies do not fetch")

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        raise AssertionError("policies do not fetch")

    async def close(self) -> None:
        pass


def mirror(name: str, sep: str = ",") -> Link:
    return Link(Named(name), sep == "|")


def direct(sep: str = ",") -> Link:
    return Link(Named("direct"), sep == "|", is_direct=True, is_keyword=True)


def off() -> Link:
    return Link(Named("off"), False, is_keyword=True)


def names(links: list[Link]) -> list[str]:
    return [lk.upstream.name for lk in links]


ALL: list[Policy] = [GoPolicy(), FailoverPolicy(), FastestPolicy(), HedgedPolicy()]
IDS = [p.name for p in ALL]


def test_policy_names_match_the_config_choices() -> None:
    assert POLICY_NAMES == POLICIES
    for name in POLICY_NAMES:
        assert make_policy(name).name == name
    with pytest.raises(ValueError, match="unknown policy 'random'"):
        make_policy("random")


def test_make_policy_passes_the_hedge_settings() -> None:
    p = make_policy("hedged", hedge_floor=0.1, hedge_cap=0.7, max_parallel=3)
    assert isinstance(p, HedgedPolicy)
    assert (p.floor, p.cap, p.max_parallel) == (0.1, 0.7, 3)
    assert HedgedPolicy(max_parallel=0).max_parallel == 1  # never zero in flight
    for name in ("go", "failover", "fastest"):
        assert make_policy(name, max_parallel=5).max_parallel == 1


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_every_policy_keeps_list_order_when_nothing_is_known(policy: Policy) -> None:
    links = [mirror("a"), mirror("b", "|"), mirror("c"), direct(), off()]
    assert names(policy.order(links, HealthBook())) == ["a", "b", "c", "direct", "off"]


def test_go_keeps_list_order_whatever_the_latency() -> None:
    health = HealthBook()
    health.get("a").record_success("small", 2.0)
    health.get("b").record_success("small", 0.01)
    links = [mirror("a"), mirror("b")]
    assert names(GoPolicy().order(links, health)) == ["a", "b"]
    assert names(FailoverPolicy().order(links, health)) == ["a", "b"]


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_untrusted_mirrors_go_after_trusted_ones(policy: Policy) -> None:
    health = HealthBook()
    health.get("a").mark_untrusted("checksum mismatch")
    health.get("a").record_success("small", 0.001)  # even the fastest
    health.get("c").mark_untrusted("checksum mismatch")
    links = [mirror("a"), mirror("b"), mirror("c"), mirror("d"), direct()]
    assert names(policy.order(links, health)) == ["b", "d", "a", "c", "direct"]


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_lagging_mirrors_go_between_current_and_untrusted(policy: Policy) -> None:
    health = HealthBook()
    health.get("a").set_lagging(True, "behind")
    health.get("b").mark_untrusted("tampered")
    links = [mirror("a"), mirror("b"), mirror("c")]
    assert names(policy.order(links, health)) == ["c", "a", "b"]


@pytest.mark.parametrize("policy", [FastestPolicy(), HedgedPolicy()], ids=["fastest", "hedged"])
def test_fastest_orders_by_score_with_list_order_breaking_ties(policy: Policy) -> None:
    health = HealthBook()
    health.get("slow").record_success("small", 1.5)
    health.get("fast").record_success("small", 0.01)
    health.get("tie1").record_success("small", 0.1)
    health.get("tie2").record_success("small", 0.1)
    links = [mirror("slow"), mirror("tie2"), mirror("tie1"), mirror("fast"), mirror("new")]
    # "new" was never measured: it is assumed to take DEFAULT_LATENCY (0.25 s).
    assert names(policy.order(links, health)) == ["fast", "tie2", "tie1", "new", "slow"]


def test_fastest_moves_a_mirror_that_went_down_to_the_back() -> None:
    health = HealthBook()
    health.get("a").record_success("small", 0.01)
    health.get("b").record_success("small", 0.2)
    links = [mirror("a"), mirror("b")]
    assert names(FastestPolicy().order(links, health)) == ["a", "b"]
    health.get("a").record_failure("timed out", timeout=True)
    assert names(FastestPolicy().order(links, health)) == ["b", "a"]


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_keywords_and_everything_after_them_never_move(policy: Policy) -> None:
    health = HealthBook()
    health.get("a").record_success("small", 2.0)
    health.get("b").record_success("small", 1.0)
    health.get("c").record_success("small", 0.001)
    health.get("b").mark_untrusted("tampered")
    links = [mirror("a"), mirror("b"), direct(), mirror("c"), off()]
    ordered = names(policy.order(links, health))
    assert ordered[2:] == ["direct", "c", "off"]  # c is fastest but stays behind direct
    assert ordered[:2] == ["a", "b"]
    assert policy.order([], health) == []
    only_direct = [direct()]
    assert policy.order(only_direct, health) == only_direct


def test_order_does_not_change_the_links_given() -> None:
    health = HealthBook()
    health.get("a").record_success("small", 2.0)
    links = [mirror("a"), mirror("b")]
    before = list(links)
    FastestPolicy().order(links, health)
    assert links == before


# --- falls_through ------------------------------------------------------------

NOT_FOUND: list[GomirrorError] = [NotFound("404"), Gone("410"), UpstreamOff("off")]
BAD_CONTENT: list[GomirrorError] = [
    InvalidContent("bad zip"),
    ChecksumMismatch("m", "v1.0.0", "zip", "h1:a=", "h1:b="),
]
TRANSIENT: list[GomirrorError] = [
    UpstreamUnavailable("503"),
    UpstreamTimeout("timed out"),
    RateLimited("429", retry_after=60.0),
]
REFUSALS: list[GomirrorError] = [UpstreamRejected("403 Forbidden"), SumdbError("fork")]


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_not_found_and_bad_content_always_fall_through(policy: Policy) -> None:
    for err in [*NOT_FOUND, *BAD_CONTENT]:
        assert policy.falls_through(mirror("a", ","), err), err
        assert policy.falls_through(mirror("a", "|"), err), err


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_pipe_falls_through_on_everything(policy: Policy) -> None:
    for err in [*TRANSIENT, *REFUSALS]:
        assert policy.falls_through(mirror("a", "|"), err), err


def test_go_stops_after_comma_on_anything_but_not_found() -> None:
    for err in [*TRANSIENT, *REFUSALS]:
        assert not GoPolicy().falls_through(mirror("a", ","), err), err


@pytest.mark.parametrize("policy", [FailoverPolicy(), FastestPolicy(), HedgedPolicy()], ids=IDS[1:])
def test_failover_family_falls_through_transient_failures_after_comma(policy: Policy) -> None:
    for err in TRANSIENT:
        assert policy.falls_through(mirror("a", ","), err), err
    for err in REFUSALS:
        assert not policy.falls_through(mirror("a", ","), err), err


def test_direct_follows_the_same_separator_rules() -> None:
    assert not FailoverPolicy().falls_through(direct(","), UpstreamRejected("git: auth"))
    assert GoPolicy().falls_through(direct(","), NotFound("unknown revision"))
    assert GoPolicy().falls_through(direct("|"), UpstreamUnavailable("git failed"))


# --- hedge_delay ----------------------------------------------------------------


@pytest.mark.parametrize("policy", ALL[:3], ids=IDS[:3])
def test_only_hedged_ever_hedges(policy: Policy) -> None:
    assert policy.max_parallel == 1
    assert policy.hedge_delay(mirror("a"), "small", HealthBook()) is None
    assert policy.hedge_delay(mirror("a"), "zip", HealthBook()) is None


def test_hedged_delay_follows_the_mirror_p90_within_floor_and_cap() -> None:
    policy = HedgedPolicy(floor=0.05, cap=1.0)
    health = HealthBook()
    link = mirror("a")
    assert policy.hedge_delay(link, "small", health) == 0.5  # unknown: the slow threshold
    for _ in range(10):
        health.get("a").record_success("small", 0.3)
    assert policy.hedge_delay(link, "small", health) == pytest.approx(0.3)
    health.get("b").record_success("small", 0.001)
    assert policy.hedge_delay(mirror("b"), "small", health) == pytest.approx(0.05)
    health.get("c").record_success("small", 9.0)
    assert policy.hedge_delay(mirror("c"), "small", health) == pytest.approx(1.0)


def test_hedged_never_hedges_from_a_keyword() -> None:
    policy = HedgedPolicy()
    assert policy.hedge_delay(direct(), "zip", HealthBook()) is None
    assert policy.hedge_delay(off(), "small", HealthBook()) is None


@pytest.mark.parametrize("name", ["fastest", "hedged"])
def test_load_spreads_version_content_over_trusted_mirrors(name: str) -> None:
    """With requests in flight, the expected wait (score x (1 + in flight)) ranks mirrors."""
    policy = make_policy(name)
    health = HealthBook()
    health.get("a").record_success("small", 0.1)
    health.get("b").record_success("small", 0.2)
    links = [mirror("a"), mirror("b"), direct()]
    assert names(policy.order(links, health, {})) == ["a", "b", "direct"]
    assert names(policy.order(links, health, {"a": 1})) == ["a", "b", "direct"]  # 0.2 = 0.2: list
    assert names(policy.order(links, health, {"a": 2})) == ["b", "a", "direct"]  # 0.3 > 0.2
    # Load never lifts a lagging or untrusted mirror above a current, trusted one.
    health.get("b").mark_untrusted("checksum mismatch")
    assert names(policy.order(links, health, {"a": 50})) == ["a", "b", "direct"]


@pytest.mark.parametrize("policy", [GoPolicy(), FailoverPolicy()], ids=["go", "failover"])
def test_list_order_policies_ignore_load(policy: Policy) -> None:
    links = [mirror("a"), mirror("b")]
    assert names(policy.order(links, HealthBook(), {"a": 100})) == ["a", "b"]
