"""Tests for upstream.health: state transitions, backoff, trust, latency, score and hedge delay.

Time is an injected ``Clock`` the test moves by hand, so every transition that
depends on "later" is exact and no test waits.
"""

from __future__ import annotations

import pytest

from gomirror.upstream.health import DEFAULT_LATENCY, Health, HealthBook, HealthSettings


class Clock:
    """A monotonic clock the test advances explicitly."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SETTINGS = HealthSettings(
    window=10,
    slow_threshold=0.5,
    down_after=3,
    down_backoff=30.0,
    max_backoff=100.0,
    untrusted_for=600.0,
)


def state(h: Health) -> str:
    """The state, read afresh (a plain call, so type checkers do not narrow it between reads)."""
    return h.state


def make(settings: HealthSettings = SETTINGS) -> tuple[Health, Clock]:
    clock = Clock()
    return Health("http://mirror", settings, clock), clock


def test_a_new_record_is_healthy_and_may_be_asked() -> None:
    h, _ = make()
    assert state(h) == "healthy"
    assert h.skip_reason() is None
    assert h.success_ratio is None
    assert h.latency("small", 0.5) is None
    assert not h.down and not h.untrusted


def test_timeout_takes_it_down_until_the_backoff_ends_then_one_probe_passes() -> None:
    h, clock = make()
    h.record_failure("http://mirror/x: timed out", timeout=True)
    assert state(h) == "down" and h.down
    reason = h.skip_reason()
    assert reason is not None and "timed out" in reason and "retrying in 30s" in reason
    clock.advance(29.9)
    assert h.skip_reason() is not None
    clock.advance(0.1)
    assert h.skip_reason() is None  # the probe
    # Every other caller waits for the probe's outcome for another backoff period.
    assert h.skip_reason() is not None
    assert state(h) == "down"


def test_backoff_doubles_while_the_probe_fails_up_to_the_maximum() -> None:
    h, clock = make()
    h.record_failure("timed out", timeout=True)
    waits = []
    for _ in range(4):
        # Find how long the record stays skipped: advance to the end of the wait, probe, fail.
        start = clock.now
        while h.skip_reason() is not None:
            clock.advance(1.0)
        waits.append(clock.now - start)
        h.record_failure("timed out", timeout=True)  # the probe fails
    assert waits == [30.0, 60.0, 100.0, 100.0]


def test_requests_that_time_out_together_park_it_for_one_backoff() -> None:
    """Only a failed probe doubles the wait; requests already in flight when it went down do not.

    Ten go-command requests hanging on one mirror all time out at once: that is one
    outage, so the mirror is skipped for ``down_backoff``, not for the maximum.
    """
    h, clock = make()
    for _ in range(4):
        h.record_failure("timed out", timeout=True)
    reason = h.skip_reason()
    assert reason is not None and "retrying in 30s" in reason
    clock.advance(30.0)
    assert h.skip_reason() is None


def test_success_makes_it_healthy_and_resets_the_backoff() -> None:
    h, clock = make()
    h.record_failure("timed out", timeout=True)
    clock.advance(30)
    assert h.skip_reason() is None
    h.record_failure("timed out", timeout=True)  # backoff now 60
    clock.advance(60)
    assert h.skip_reason() is None
    h.record_success("small", 0.05)
    assert state(h) == "healthy"
    assert not h.down
    assert h.skip_reason() is None
    assert h.snapshot()["down_reason"] == ""
    # The next outage starts again from the base backoff.
    h.record_failure("timed out", timeout=True)
    clock.advance(30)
    assert h.skip_reason() is None


def test_a_not_found_answer_also_proves_it_is_up() -> None:
    h, clock = make()
    h.record_failure("timed out", timeout=True)
    clock.advance(30)
    assert h.skip_reason() is None
    h.record_answer("small", 0.02)
    assert state(h) == "healthy"
    assert h.consecutive_failures == 0
    assert h.skip_reason() is None


def test_429_retry_after_parks_it_for_the_time_asked() -> None:
    h, clock = make()
    h.record_failure("429 Too Many Requests", retry_after=120.0)
    assert state(h) == "down"
    reason = h.skip_reason()
    assert reason is not None and "rate limited (429)" in reason
    clock.advance(119.0)
    assert h.skip_reason() is not None
    clock.advance(1.0)
    assert h.skip_reason() is None


def test_down_after_n_consecutive_failures_and_a_success_resets_the_count() -> None:
    h, _ = make()
    h.record_failure("500")
    h.record_failure("500")
    assert state(h) == "healthy" and h.consecutive_failures == 2
    h.record_success("small", 0.01)
    assert h.consecutive_failures == 0
    h.record_failure("500")
    h.record_failure("500")
    assert h.skip_reason() is None
    h.record_failure("502 Bad Gateway")
    assert state(h) == "down"
    reason = h.skip_reason()
    assert reason is not None and "3 failures in a row" in reason
    assert h.last_error == "502 Bad Gateway"
    assert h.last_error_at is not None


def test_untrusted_for_a_time_then_trusted_again() -> None:
    h, clock = make()
    h.mark_untrusted("checksum mismatch for m@v1.0.0")
    assert h.untrusted and state(h) == "untrusted"
    assert h.snapshot()["untrusted_reason"].startswith("checksum mismatch")
    # Untrusted is not down: it may still be asked (last), so it is never skipped.
    assert h.skip_reason() is None
    h.record_failure("timed out", timeout=True)
    assert state(h) == "untrusted"  # the stronger warning wins
    clock.advance(599.0)
    assert state(h) == "untrusted"
    clock.advance(1.0)
    assert state(h) == "down"  # trusted again; still parked after its timeout
    assert h.snapshot()["untrusted_reason"] == ""


def test_lagging_state_set_and_cleared_by_the_monitor() -> None:
    h, _ = make()
    h.set_lagging(True, "lacks v1.2.0 for 10 minutes")
    assert state(h) == "lagging"
    assert h.snapshot()["lagging_reason"] == "lacks v1.2.0 for 10 minutes"
    h.set_lagging(False, "ignored")
    assert state(h) == "healthy"
    assert h.lagging_reason == ""


def test_slow_by_median_time_to_first_byte_of_small_files() -> None:
    h, _ = make()
    for seconds in (0.6, 0.7, 0.1):
        h.record_success("small", seconds)
    assert h.latency("small", 0.5) == pytest.approx(0.6)
    assert state(h) == "slow"
    for _ in range(3):
        h.record_success("small", 0.1)
    assert state(h) == "healthy"  # the median moved below the threshold


def test_time_to_first_byte_counts_not_total_time_and_zips_do_not_make_it_slow() -> None:
    h, _ = make()
    h.record_success("small", 3.0, ttfb=0.05)  # a big body, but an early first byte
    h.record_success("zip", 30.0, ttfb=2.0)
    assert state(h) == "healthy"
    assert h.latency("small", 0.5) == pytest.approx(0.05)
    assert h.latency("zip", 0.5) == pytest.approx(2.0)


def test_an_unfinished_request_without_a_first_byte_is_a_latency_sample() -> None:
    """A hedge loser still tells how slow it was: at least the time it was given."""
    h, _ = make()
    h.record_unfinished("small", 0.9, got_first_byte=False)
    assert h.latency("small", 0.5) == pytest.approx(0.9)
    assert state(h) == "slow"
    h2, _ = make()
    h2.record_unfinished("small", 0.9, got_first_byte=True)  # it was answering: no sample
    assert h2.latency("small", 0.5) is None
    assert h2.requests == 0


def test_success_ratio_over_a_sliding_window() -> None:
    h, _ = make(HealthSettings(window=4, down_after=100))
    for _ in range(4):
        h.record_failure("500")
    assert h.success_ratio == 0.0
    h.record_success("small", 0.01)
    h.record_success("small", 0.01)
    assert h.success_ratio == 0.5
    h.record_answer("small", 0.01)
    h.record_success("small", 0.01)
    assert h.success_ratio == 1.0  # the failures have left the window
    assert h.requests == 8


def test_score_orders_fast_before_unmeasured_before_slow_and_punishes_failures() -> None:
    book = HealthBook(SETTINGS, Clock())
    fast, unmeasured, slow, flaky, dead = (
        book.get(n) for n in ("fast", "unmeasured", "slow", "flaky", "dead")
    )
    fast.record_success("small", 0.02)
    slow.record_success("small", 0.9)
    for _ in range(5):
        flaky.record_success("small", 0.02)
        flaky.record_failure("500")
        flaky.record_success("small", 0.02)
    dead.record_success("small", 0.02)
    dead.record_failure("timed out", timeout=True)
    assert unmeasured.score() == pytest.approx(DEFAULT_LATENCY)
    assert fast.score() < unmeasured.score() < slow.score()
    assert fast.score() < flaky.score()  # same latency, a third of the answers failed
    assert dead.score() > slow.score()  # down costs far more than slow
    ranked = sorted(book.all(), key=lambda h: h.score())
    assert [h.name for h in ranked] == ["fast", "flaky", "unmeasured", "slow", "dead"]


def test_score_uses_zip_latency_when_no_small_file_was_measured() -> None:
    h, _ = make()
    h.record_success("zip", 3.0, ttfb=1.5)
    assert h.score() == pytest.approx(1.5)


def test_hedge_delay_is_the_p90_between_floor_and_cap() -> None:
    h, _ = make()
    assert h.hedge_delay("small", 0.05, 2.0) == 0.5  # nothing known: the slow threshold
    for ms in range(1, 11):
        h.record_success("small", ms / 100)  # 0.01 .. 0.10
    assert h.latency("small", 0.9) == pytest.approx(0.09)
    assert h.hedge_delay("small", 0.05, 2.0) == pytest.approx(0.09)
    assert h.hedge_delay("small", 0.2, 2.0) == pytest.approx(0.2)  # floor
    assert h.hedge_delay("small", 0.01, 0.05) == pytest.approx(0.05)  # cap
    # No zip sample yet: a zip's first byte is expected about as soon as a small file's.
    assert h.hedge_delay("zip", 0.05, 2.0) == pytest.approx(0.09)
    h.record_success("zip", 10.0, ttfb=1.0)
    assert h.hedge_delay("zip", 0.05, 2.0) == pytest.approx(1.0)
    assert h.hedge_delay("zip", 0.05, 0.5) == pytest.approx(0.5)


def test_book_keeps_one_record_per_name_on_the_shared_clock() -> None:
    clock = Clock()
    book = HealthBook(SETTINGS, clock)
    a = book.get("a")
    assert book.get("a") is a
    assert [h.name for h in book.all()] == ["a"]
    a.mark_untrusted("bad")
    clock.advance(SETTINGS.untrusted_for)
    assert not book.get("a").untrusted
    assert HealthBook().settings == HealthSettings()


def test_snapshot_is_plain_data() -> None:
    h, _ = make()
    h.record_success("small", 0.1)
    h.record_failure("500 boom")
    snap = h.snapshot()
    assert snap["name"] == "http://mirror"
    assert snap["state"] == "healthy"
    assert snap["requests"] == 2
    assert snap["success_ratio"] == 0.5
    assert snap["consecutive_failures"] == 1
    assert snap["p50"] == pytest.approx(0.1)
    assert snap["last_error"] == "500 boom"
    assert snap["history"] == [0.1]
