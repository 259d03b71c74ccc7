"""monitor.metrics owns gomirror's Prometheus metrics on an injected registry.

Nothing here is global: the composition root creates one ``Metrics`` with its
own ``CollectorRegistry`` and hands it to the parts that record. Label values
are bounded sets (endpoint names, upstream names from config, outcome labels).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The metric families gomirror exports at ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gomirror_requests",
            "Requests served, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "gomirror_request_duration_seconds",
            "Time to answer a request (headers sent).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "gomirror_cache",
            "Cache lookups, by endpoint and result (hit, miss, stale, negative).",
            ["endpoint", "result"],
            registry=r,
        )
        self.bytes_served = Counter(
            "gomirror_bytes_served",
            "Response body bytes sent, by endpoint.",
            ["endpoint"],
            registry=r,
        )
        self.upstream_requests = Counter(
            "gomirror_upstream_requests",
            "Requests to upstreams, by upstream, operation and outcome.",
            ["upstream", "op", "outcome"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "gomirror_upstream_duration_seconds",
            "Upstream request latency, by upstream and operation.",
            ["upstream", "op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tamper_events = Counter(
            "gomirror_tamper_events",
            "Upstream content rejected as tampered or invalid.",
            ["upstream", "kind"],
            registry=r,
        )
        self.verifications = Counter(
            "gomirror_verifications",
            "Checksum database verifications, by result.",
            ["result"],
            registry=r,
        )

    def observe_upstream(self, upstream: str, op: str, outcome: str, seconds: float) -> None:
        self.upstream_requests.labels(upstream, op, outcome).inc()
        self.upstream_seconds.labels(upstream, op).observe(seconds)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
