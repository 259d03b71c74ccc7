"""Metrics renders its own registry: no ``_created`` series, an optional constant ``instance`` label."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gomirror.monitor.metrics import Metrics


def _record(m: Metrics) -> None:
    m.requests.labels("info", "200").inc()
    m.request_seconds.labels("info").observe(0.03)
    m.observe_upstream("proxy.golang.org", "info", "ok", 0.2)
    m.hedge_started("proxy.golang.org")


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def test_render_has_no_created_series() -> None:
    m = Metrics()
    _record(m)
    text = m.render().decode()
    assert "gomirror_requests_total" in text
    assert "gomirror_request_duration_seconds_bucket" in text
    assert "_created" not in text


def test_instance_label_is_on_every_sample() -> None:
    m = Metrics(instance="mirror-a")
    _record(m)
    samples = _samples(m.render().decode())
    assert len(samples) > 20  # counters and every histogram bucket
    assert all(labels.get("instance") == "mirror-a" for _, labels, _ in samples)
    assert (
        "gomirror_requests_total",
        {"endpoint": "info", "status": "200", "instance": "mirror-a"},
        1.0,
    ) in samples


def test_without_instance_there_is_no_instance_label() -> None:
    m = Metrics()
    _record(m)
    assert all("instance" not in labels for _, labels, _ in _samples(m.render().decode()))


def test_two_metrics_share_nothing() -> None:
    a, b = Metrics(), Metrics()
    a.requests.labels("info", "200").inc(3)
    assert "gomirror_requests_total{" not in b.render().decode()
    assert ("gomirror_requests_total", {"endpoint": "info", "status": "200"}, 3.0) in _samples(
        a.render().decode()
    )
