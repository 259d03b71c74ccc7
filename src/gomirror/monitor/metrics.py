"""monitor.metrics owns gomirror's Prometheus metrics on an injected registry.

Nothing here is global: the composition root creates one ``Metrics`` with its
own ``CollectorRegistry`` and hands it to the parts that record. Label values
are bounded sets (endpoint names, upstream names from config, outcome labels).

``render()`` is this process's exposition (Prometheus text format) as it is
exported, not as the registry holds it: the ``_created`` samples that
prometheus_client keeps for every counter and histogram are left out (they
change whenever a worker starts, and summing them across workers means
nothing), and with ``instance`` set every sample carries a constant
``instance`` label. Both are done by the view that ``render`` exports through,
so the library's process-wide switches are never touched. Summing the
expositions of several worker processes is ``monitor.aggregate``'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The metric families gomirror exports at ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self, registry: CollectorRegistry | None = None, *, instance: str | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.instance = instance
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
        self.upstream_ttfb = Histogram(
            "gomirror_upstream_first_byte_seconds",
            "Time to the first byte of a successful upstream answer, by upstream and kind.",
            ["upstream", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.hedges = Counter(
            "gomirror_upstream_hedges",
            "Hedged requests: started for an upstream, and won by it.",
            ["upstream", "result"],
            registry=r,
        )
        self.storage_ops = Counter(
            "gomirror_storage_operations",
            "Storage operations, by operation and result.",
            ["op", "result"],
            registry=r,
        )
        self.storage_seconds = Histogram(
            "gomirror_storage_duration_seconds",
            "Storage operation latency, by operation.",
            ["op"],
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
        self._monitor_metrics(r)
        self.predictions = Counter(
            "gomirror_predict",
            "Predictive prefetch, by outcome: scheduled, skipped, fetched, failed, hit"
            " (a client asked for a file prediction fetched).",
            ["outcome"],
            registry=r,
        )

    def observe_probe(self, upstream: str, op: str, outcome: str, seconds: float) -> None:
        self.probes.labels(upstream, op, outcome).inc()
        self.probe_seconds.labels(upstream, op).observe(seconds)

    def watch_predictions(self, hit_ratio: Callable[[], float]) -> None:
        """Export the predictor's hit ratio (hits per predicted file fetched), read at scrape time."""
        self.registry.register(_PredictCollector(hit_ratio))

    def watch_lags(self, lags: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        """Export the monitor's lag per (mirror, module) as a gauge, read at scrape time."""
        self.registry.register(_LagCollector(lags))

    def watch_coordination(self, coordination: CoordinationView) -> None:
        """Export whether cross-instance coordination works, read at scrape time."""
        self.registry.register(_CoordinationCollector(coordination))

    def watch_health(self, health: HealthView) -> None:
        """Export every upstream's health state as gauges, read at scrape time."""
        self.registry.register(_HealthCollector(health))

    def observe_upstream(self, upstream: str, op: str, outcome: str, seconds: float) -> None:
        self.upstream_requests.labels(upstream, op, outcome).inc()
        self.upstream_seconds.labels(upstream, op).observe(seconds)

    def _monitor_metrics(self, r: CollectorRegistry) -> None:
        self.probes = Counter(
            "gomirror_monitor_probes",
            "Consistency-monitor probes of mirrors, by upstream, operation and outcome.",
            ["upstream", "op", "outcome"],
            registry=r,
        )
        self.probe_seconds = Histogram(
            "gomirror_monitor_probe_duration_seconds",
            "Consistency-monitor probe latency, by upstream and operation.",
            ["upstream", "op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.findings = Counter(
            "gomirror_monitor_findings",
            "Findings the consistency monitor opened, by type (lag, tamper, info_mismatch, ...).",
            ["type"],
            registry=r,
        )

    def hedge_started(self, upstream: str) -> None:
        self.hedges.labels(upstream, "started").inc()

    def hedge_won(self, upstream: str) -> None:
        self.hedges.labels(upstream, "won").inc()

    def render(self) -> bytes:
        """This process's exposition: no ``_created`` series, ``instance`` on every sample."""
        return bytes(generate_latest(ExportView(self.registry, self.instance)))


class ExportView(Collector):
    """The registry's families as exported: ``_created`` samples dropped, ``instance`` added."""

    def __init__(self, registry: CollectorRegistry, instance: str | None) -> None:
        self.registry = registry
        self.instance = instance

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                if self.instance is not None:
                    sample = sample._replace(labels={**sample.labels, "instance": self.instance})
                out.samples.append(sample)
            yield out


class HealthView(Protocol):
    """What the health collector reads: upstream name -> state and success ratio."""

    def all(self) -> Sequence[Any]: ...


STATES = ("healthy", "slow", "down", "lagging", "untrusted")


class CoordinationView(Protocol):
    """What the coordination collector reads (``coordination.redis.RedisCoordinator``)."""

    @property
    def degraded(self) -> bool: ...

    local_runs: int
    lost_leases: int


class _CoordinationCollector:
    """``gomirror_coordination_degraded`` and the runs done without the shared lock."""

    def __init__(self, view: CoordinationView) -> None:
        self._view = view

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gomirror_coordination_degraded",
            "1 while Redis is unreachable and fetches are coordinated on this machine only.",
            value=1.0 if self._view.degraded else 0.0,
        )
        yield CounterMetricFamily(
            "gomirror_coordination_local_runs",
            "Fetches run under local coordination because Redis was unreachable.",
            value=float(self._view.local_runs),
        )
        yield CounterMetricFamily(
            "gomirror_coordination_lost_leases",
            "Fetches whose Redis lock expired or was taken by another holder while they ran.",
            value=float(self._view.lost_leases),
        )


class _HealthCollector:
    """``gomirror_upstream_up`` and ``gomirror_upstream_state{state}`` from the health book."""

    def __init__(self, health: HealthView) -> None:
        self._health = health

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "gomirror_upstream_up", "1 unless the upstream is down.", labels=["upstream"]
        )
        state = GaugeMetricFamily(
            "gomirror_upstream_state",
            "1 for the upstream's current health state, 0 for the others.",
            labels=["upstream", "state"],
        )
        ratio = GaugeMetricFamily(
            "gomirror_upstream_success_ratio",
            "Share of the upstream's recent answers that were not failures.",
            labels=["upstream"],
        )
        for rec in self._health.all():
            current = rec.state
            up.add_metric([rec.name], 0.0 if current == "down" else 1.0)
            for st in STATES:
                state.add_metric([rec.name, st], 1.0 if st == current else 0.0)
            if rec.success_ratio is not None:
                ratio.add_metric([rec.name], float(rec.success_ratio))
        yield up
        yield state
        yield ratio


class _PredictCollector:
    """``gomirror_predict_hit_ratio`` from the predictor."""

    def __init__(self, hit_ratio: Callable[[], float]) -> None:
        self._hit_ratio = hit_ratio

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "gomirror_predict_hit_ratio",
            "Predicted files a client then asked for, per predicted file fetched (this process).",
            value=self._hit_ratio(),
        )


class _LagCollector:
    """``gomirror_mirror_lag_seconds{upstream,module}`` from the consistency monitor."""

    def __init__(self, lags: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        self._lags = lags

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "gomirror_mirror_lag_seconds",
            "How long a mirror has lacked a version other mirrors serve, per watched module.",
            labels=["upstream", "module"],
        )
        for (mirror, module), seconds in sorted(self._lags().items()):
            g.add_metric([mirror, module], seconds)
        yield g
