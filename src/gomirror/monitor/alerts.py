"""monitor.alerts delivers alerts about mirrors and the checksum database to people.

Contract:

- ``Alert`` is one state change: ``key`` de-duplicates (``"mirror_down:https://goproxy.io"``),
  ``state`` is ``"firing"`` or ``"resolved"``.
- ``parse_sinks(items)`` reads the ``[[alerts]]`` TOML tables into ``SinkConfig``; an invalid
  entry raises ``ConfigError`` naming ``alerts[i].field``.
- ``Alerter(sinks, session)`` de-duplicates (a key already firing sends nothing, unless its
  severity rises; ``resolve`` sends only for a key that fired), filters by each sink's
  ``min_severity``/``kinds``, rate-limits per sink (``max_per_minute``; the excess is
  counted and reported with the next message or in a summary once the window has room),
  and delivers with the injected ``aiohttp.ClientSession`` from one background task per
  sink, retrying transport errors, 5xx, 429 and the services' rate-limit codes with
  exponential backoff for at most ``attempts`` tries. ``fire``/``resolve`` are synchronous
  and never wait: they put the message on the sink's bounded queue (a full queue drops and
  counts it). ``close(grace)`` drains the queues for at most ``grace`` seconds.
- Webhook URLs are logged only through ``redact_url`` and secrets never; ``SinkConfig``'s
  repr hides both.

``fire``/``resolve``/``tick`` must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from gomirror.errors import ConfigError
from gomirror.monitor.alert_formats import (
    RATE_LIMIT_CODES,
    SIGNED_TYPES,
    SINK_TYPES,
    SinkType,
    app_error,
    build_request,
    plain,
    redact_url,
    scrub,
    url_secrets,
)

__all__ = [
    "SEVERITIES",
    "Alert",
    "Alerter",
    "SinkConfig",
    "SinkStats",
    "parse_sinks",
    "redact_url",
]

log = logging.getLogger(__name__)

Severity = Literal["critical", "warning", "info"]
State = Literal["firing", "resolved"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
WINDOW = 60.0  # seconds of the per-sink rate limit window
SUPPRESSED_KEY = "gomirror:rate_limited"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert about a mirror, a module or the checksum database."""

    key: str
    kind: str  # mirror_down, mirror_recovered, lag, tamper, sumdb_unreachable, ...
    severity: Severity
    title: str
    text: str = ""
    state: State = "firing"
    mirror: str = ""
    module: str = ""
    version: str = ""
    time: float = 0.0  # epoch seconds; 0 means "now" when fired
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "title": self.title,
            "text": self.text,
            "mirror": self.mirror,
            "module": self.module,
            "version": self.version,
            "time": self.time,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class SinkConfig:
    """One ``[[alerts]]`` entry. ``url``, ``secret`` and ``headers`` are hidden from repr."""

    type: SinkType
    name: str
    url: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    min_severity: Severity = "warning"
    kinds: frozenset[str] = frozenset()  # empty: every kind
    max_per_minute: int = 10  # 0: unlimited
    timeout: float = 10.0
    attempts: int = 5
    format: str = "card"  # feishu only: "card" or "text"

    def accepts(self, alert: Alert) -> bool:
        if _RANK[alert.severity] < _RANK[self.min_severity]:
            return False
        return not self.kinds or alert.kind in self.kinds or alert.key == SUPPRESSED_KEY


_COMMON_KEYS = {"type", "name", "min_severity", "kinds", "max_per_minute"}
_HTTP_KEYS = _COMMON_KEYS | {"url", "timeout", "attempts"}
_KEYS: Mapping[str, set[str]] = {
    "log": _COMMON_KEYS,
    "webhook": _HTTP_KEYS | {"secret", "headers"},
    "dingtalk": _HTTP_KEYS | {"secret"},
    "feishu": _HTTP_KEYS | {"secret", "format"},
    "wecom": _HTTP_KEYS,
    "slack": _HTTP_KEYS,
}


def _str(where: str, v: Any) -> str:
    if not isinstance(v, str):
        raise ConfigError(f"{where}: must be a string, got {type(v).__name__}")
    return v


def _int(where: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{where}: must be an integer from {lo} to {hi}")
    return v


def _choice(where: str, v: Any, choices: Sequence[str]) -> str:
    if v not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(choices)}, got {v!r}")
    return str(v)


def _severity(where: str, v: Any) -> Severity:
    for s in SEVERITIES:
        if v == s:
            return s
    raise ConfigError(f"{where}: must be one of {', '.join(SEVERITIES)}, got {v!r}")


def _sink_type(where: str, v: Any) -> SinkType:
    for t in SINK_TYPES:
        if v == t:
            return t
    raise ConfigError(f"{where}: must be one of {', '.join(SINK_TYPES)}, got {v!r}")


def _url(where: str, v: Any) -> str:
    url = _str(where, v).strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ConfigError(f"{where}: not a URL") from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo the value: it usually holds the robot's token.
        raise ConfigError(f"{where}: must be an http:// or https:// URL with a host")
    return url


def _parse_one(i: int, item: Any) -> SinkConfig:
    at = f"alerts[{i}]"
    if not isinstance(item, Mapping):
        raise ConfigError(f"{at}: must be a table")
    kind = _sink_type(f"{at}.type", item.get("type"))
    unknown = sorted(set(item) - _KEYS[kind])
    if unknown:
        raise ConfigError(f"{at}.{unknown[0]}: not a setting of a {kind} alert sink")
    name = _str(f"{at}.name", item.get("name", f"{kind}#{i}"))
    kinds = item.get("kinds", [])
    if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
        raise ConfigError(f"{at}.kinds: must be a list of alert kinds")
    headers = item.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ConfigError(f"{at}.headers: must be a table of strings")
    timeout = item.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ConfigError(f"{at}.timeout: must be a number of seconds from 0 to 300")
    if kind != "log" and "url" not in item:
        raise ConfigError(f"{at}.url: required for a {kind} alert sink")
    return SinkConfig(
        type=kind,
        name=name,
        url=_url(f"{at}.url", item["url"]) if kind != "log" else "",
        secret=_str(f"{at}.secret", item.get("secret", "")) if kind in SIGNED_TYPES else "",
        headers=dict(headers),
        min_severity=_severity(f"{at}.min_severity", item.get("min_severity", "warning")),
        kinds=frozenset(kinds),
        max_per_minute=_int(
            f"{at}.max_per_minute", item.get("max_per_minute", 0 if kind == "log" else 10), 0, 10000
        ),
        timeout=float(timeout),
        attempts=_int(f"{at}.attempts", item.get("attempts", 5), 1, 20),
        format=_choice(f"{at}.format", item.get("format", "card"), ("card", "text")),
    )


def parse_sinks(items: Any) -> list[SinkConfig]:
    """``[[alerts]]`` tables → sink configs; ConfigError names ``alerts[i].field``."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError("alerts: must be an array of tables ([[alerts]])")
    sinks = [_parse_one(i, item) for i, item in enumerate(items)]
    names = [s.name for s in sinks]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"alerts[{i}].name: {n!r} is used by another sink")
    return sinks


@dataclass(slots=True)
class SinkStats:
    """What one sink did: sent, failed after retries, rate-limited, dropped (queue full)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    dropped: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class _Delivery:
    alert: Alert
    suppressed: int  # alerts suppressed since the last delivery, reported with this one


class _Sink:
    """One sink's filter, rate limit, queue and delivery task."""

    def __init__(self, cfg: SinkConfig, owner: Alerter, queue_size: int) -> None:
        self.cfg = cfg
        self.owner = owner
        self.stats = SinkStats()
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue(queue_size)
        self.sent_at: deque[float] = deque()
        self.pending_suppressed = 0
        self.worst_suppressed: Severity = "info"
        self.suppressed_keys: set[str] = set()
        self.task: asyncio.Task[None] | None = None
        self.target = redact_url(cfg.url) if cfg.url else "log"
        self.secrets = [s for s in (cfg.secret, *url_secrets(cfg.url), *cfg.headers.values()) if s]

    def _room(self, now: float) -> bool:
        while self.sent_at and self.sent_at[0] <= now - WINDOW:
            self.sent_at.popleft()
        return not self.cfg.max_per_minute or len(self.sent_at) < self.cfg.max_per_minute

    def offer(self, alert: Alert, now: float) -> None:
        if not self.cfg.accepts(alert):
            return
        if alert.state == "resolved" and alert.key in self.suppressed_keys:
            # This sink never showed the firing message: a lone "resolved" would confuse.
            self.suppressed_keys.discard(alert.key)
            return
        if not self._room(now):
            self.stats.suppressed += 1
            self.pending_suppressed += 1
            if _RANK[alert.severity] > _RANK[self.worst_suppressed]:
                self.worst_suppressed = alert.severity
            if alert.state == "firing":
                self.suppressed_keys.add(alert.key)
            log.info(
                "alert rate limited",
                extra={
                    "sink": self.cfg.name,
                    "alert_key": alert.key,
                    "limit": self.cfg.max_per_minute,
                },
            )
            return
        self.suppressed_keys.discard(alert.key)
        self._enqueue(alert, now)

    def _enqueue(self, alert: Alert, now: float) -> None:
        self.sent_at.append(now)
        delivery = _Delivery(alert, self.pending_suppressed)
        self.pending_suppressed = 0
        self.worst_suppressed = "info"
        if self.cfg.type == "log":
            self.stats.sent += 1
            _log_alert(delivery)
            return
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning(
                "alert queue full",
                extra={"sink": self.cfg.name, "alert_key": alert.key, "size": self.queue.maxsize},
            )

    def tick(self, now: float) -> None:
        """Send a summary of suppressed alerts once the window has room again."""
        if not self.pending_suppressed or not self._room(now):
            return
        n = self.pending_suppressed
        self.pending_suppressed = 0
        summary = Alert(
            key=SUPPRESSED_KEY,
            kind="rate_limited",
            severity=self.worst_suppressed,
            title=f"{n} alert(s) suppressed by the rate limit",
            text=f"More than {self.cfg.max_per_minute} alerts per minute; see the status page.",
            time=now,
            details={"suppressed": n},
        )
        self._enqueue(summary, now)

    async def run(self, summary_interval: float) -> None:
        while True:
            try:
                d = await asyncio.wait_for(self.queue.get(), timeout=summary_interval)
            except TimeoutError:
                self.tick(self.owner.clock())
                continue
            try:
                await self._deliver(d)
            except Exception:  # a formatting bug must not kill the sink
                self.stats.failed += 1
                log.exception("alert delivery crashed", extra={"sink": self.cfg.name})
            finally:
                self.queue.task_done()

    async def _deliver(self, d: _Delivery) -> None:
        cfg = self.cfg
        why = ""
        for attempt in range(1, cfg.attempts + 1):
            outcome, why, retry_after = await self._post(d)
            if outcome == "ok":
                self.stats.sent += 1
                log.debug("alert delivered", extra=self._fields(d, attempt))
                return
            if outcome == "fatal" or attempt == cfg.attempts:
                break
            self.stats.retries += 1
            delay = self.owner.backoff(attempt, retry_after)
            log.info(
                "alert delivery retry",
                extra={**self._fields(d, attempt), "error": why, "delay": round(delay, 3)},
            )
            await asyncio.sleep(delay)
        self.stats.failed += 1
        log.warning("alert not delivered", extra={**self._fields(d, attempt), "error": why})

    def _fields(self, d: _Delivery, attempt: int) -> dict[str, Any]:
        return {
            "sink": self.cfg.name,
            "target": self.target,
            "alert_key": d.alert.key,
            "attempt": attempt,
        }

    async def _post(self, d: _Delivery) -> tuple[str, str, float | None]:
        """One POST: ``("ok"|"retry"|"fatal", reason, retry_after)``."""
        cfg = self.cfg
        session = self.owner.session
        assert session is not None
        url, body, headers = build_request(
            cfg.type, d.alert, cfg.url, cfg.secret, self.owner.clock(), d.suppressed, cfg.format
        )
        headers = {**cfg.headers, **headers, "Content-Type": "application/json; charset=utf-8"}
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=cfg.timeout),
                allow_redirects=False,
            ) as resp:
                text = (await resp.content.read(4096)).decode(errors="replace")
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            # The exception text can hold the URL (and so the token): log its class only.
            return "retry", type(e).__name__, None
        if status == 429 or status >= 500:
            return "retry", f"status {status}", retry_after
        if not 200 <= status < 300:
            return "fatal", f"status {status}", None
        err = app_error(cfg.type, text)
        if err is None:
            return "ok", "", None
        code, msg = err
        why = scrub(f"code {code}: {msg}", self.secrets)
        return ("retry" if code in RATE_LIMIT_CODES.get(cfg.type, ()) else "fatal"), why, None


def _retry_after(v: str | None) -> float | None:
    try:
        return max(0.0, float(v)) if v else None
    except ValueError:
        return None


def _log_alert(d: _Delivery) -> None:
    a = d.alert
    level = logging.INFO if a.state == "resolved" or a.severity == "info" else logging.WARNING
    log.log(
        level,
        "alert " + a.state,
        extra={
            "alert_key": a.key,
            "kind": a.kind,
            "severity": a.severity,
            "mirror": a.mirror,
            "mod": a.module,  # "module" is a reserved LogRecord attribute
            "version": a.version,
            "title": a.title,
            "suppressed": d.suppressed,
        },
    )
    log.debug("alert text", extra={"alert_key": a.key, "text": plain(a, d.suppressed)})


class Alerter:
    """De-duplicates, rate-limits and delivers alerts (see the module docstring)."""

    def __init__(
        self,
        sinks: Sequence[SinkConfig],
        session: aiohttp.ClientSession | None,
        *,
        clock: Callable[[], float] = time.time,
        queue_size: int = 100,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        summary_interval: float = 30.0,
    ) -> None:
        if session is None and any(s.type != "log" for s in sinks):
            raise ValueError("an HTTP session is needed for webhook alert sinks")
        self.session = session
        self.clock = clock
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._summary_interval = summary_interval
        self._sinks = [_Sink(cfg, self, queue_size) for cfg in sinks]
        self._firing: dict[str, Alert] = {}
        self._started = False
        self._closed = False

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before try ``attempt + 1``: exponential with jitter, capped."""
        if retry_after is not None:
            return min(retry_after, self._backoff_cap)
        delay = min(self._backoff_cap, self._backoff_base * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)  # jitter: sinks that failed together spread out

    def start(self) -> None:
        """Start one delivery task per HTTP sink; needs a running event loop."""
        if self._started:
            return
        self._started = True
        for s in self._sinks:
            if s.cfg.type != "log":
                s.task = asyncio.get_running_loop().create_task(
                    s.run(self._summary_interval), name=f"alerts:{s.cfg.name}"
                )

    async def __aenter__(self) -> Alerter:
        self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def fire(self, alert: Alert) -> bool:
        """Queue ``alert`` for every sink that wants it; False if it was a duplicate."""
        if self._closed:
            log.warning("alert after close", extra={"alert_key": alert.key})
            return False
        now = self.clock()
        alert = replace(alert, state="firing", time=alert.time or now)
        old = self._firing.get(alert.key)
        if old is not None and _RANK[alert.severity] <= _RANK[old.severity]:
            return False  # already told; a rise in severity is news, so it is sent again
        self._firing[alert.key] = alert
        self._dispatch(alert, now)
        return True

    def resolve(
        self, key: str, *, text: str = "", details: Mapping[str, Any] | None = None
    ) -> bool:
        """Queue the "resolved" message for ``key``; False if ``key`` was not firing."""
        fired = self._firing.pop(key, None)
        if fired is None or self._closed:
            return False
        now = self.clock()
        resolved = replace(
            fired,
            state="resolved",
            text=text or fired.text,
            time=now,
            details={
                **fired.details,
                **(details or {}),
                "fired_at": fired.time,
                "duration": round(now - fired.time, 3),
            },
        )
        self._dispatch(resolved, now)
        return True

    def firing(self) -> list[Alert]:
        """The alerts firing now, oldest first."""
        return sorted(self._firing.values(), key=lambda a: a.time)

    def tick(self) -> None:
        """Send due rate-limit summaries (the delivery tasks also call this periodically)."""
        now = self.clock()
        for s in self._sinks:
            s.tick(now)

    def stats(self) -> dict[str, SinkStats]:
        return {s.cfg.name: s.stats for s in self._sinks}

    def _dispatch(self, alert: Alert, now: float) -> None:
        for s in self._sinks:
            s.offer(alert, now)

    async def close(self, grace: float = 5.0) -> None:
        """Deliver what is queued, waiting at most ``grace`` seconds, then stop."""
        if self._closed:
            return
        self.tick()
        self._closed = True
        tasks = [s.task for s in self._sinks if s.task is not None]
        if tasks:
            drained = asyncio.gather(*(s.queue.join() for s in self._sinks if s.task is not None))
            try:
                await asyncio.wait_for(drained, grace)
            except TimeoutError:
                pending = sum(s.queue.qsize() for s in self._sinks)
                log.warning("alerts not drained", extra={"pending": pending, "grace": grace})
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
