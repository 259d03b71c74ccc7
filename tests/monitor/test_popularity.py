"""Tests for monitor.popularity: bounded top-K of requested modules, and the watch set."""

from __future__ import annotations

import random

import pytest

from gomirror.monitor.popularity import Popularity, watch_set


def test_top_orders_by_count_then_name() -> None:
    p = Popularity(capacity=10)
    for module, n in (
        ("b.example/x", 3),
        ("a.example/x", 3),
        ("c.example/x", 5),
        ("d.example/x", 1),
    ):
        for _ in range(n):
            p.record(module)
    assert p.top(3) == ["c.example/x", "a.example/x", "b.example/x"]
    assert p.top(10) == ["c.example/x", "a.example/x", "b.example/x", "d.example/x"]
    assert p.top(0) == [] and p.count("c.example/x") == 5 and p.count("nope.example/x") == 0


def test_memory_stays_bounded_and_heavy_hitters_survive() -> None:
    p = Popularity(capacity=50, halve_every=10**9)
    rng = random.Random(1)
    hot = [f"hot.example/m{i}" for i in range(5)]
    for i in range(50_000):
        if i % 4 == 0:
            p.record(rng.choice(hot))  # a quarter of the traffic goes to five modules
        else:
            p.record(f"cold.example/m{i}")  # a long tail asked for once each
        assert len(p) <= 100
    assert sorted(p.top(5)) == hot


def test_periodic_halving_lets_new_favourites_overtake() -> None:
    p = Popularity(capacity=100, halve_every=100)
    for _ in range(400):
        p.record("old.example/m")
    for _ in range(300):  # three halvings of the old count while the new one grows
        p.record("new.example/m")
    assert p.top(1) == ["new.example/m"]
    assert p.count("old.example/m") < 400


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        Popularity(capacity=0)


def test_watch_set_puts_config_first_and_never_lists_private_modules() -> None:
    p = Popularity()
    for m in ("corp.example/secret/a", "pub.example/x", "pub.example/x", "pub.example/y"):
        p.record(m)
    watch = watch_set(
        ["cfg.example/a", "pub.example/y"], p.top, k=10, private="corp.example/secret"
    )
    assert watch() == ["cfg.example/a", "pub.example/y", "pub.example/x"]
    assert watch_set(["cfg.example/a"], p.top, k=0)() == ["cfg.example/a"]
    assert watch_set(["corp.example/secret/z"], None, private="corp.example")() == []
