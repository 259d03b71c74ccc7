"""server.status_page renders the status page people open, and defines the data it shows.

Contract: a ``StatusSnapshot`` (typed, frozen dataclasses: mirrors, watched modules, recent
events, cache and checksum-database figures) is what the server produces; ``to_json()``
is the body of ``GET /-/status.json`` (``STATUS_JSON_PATH``) and ``StatusSnapshot.from_json``
reads it back, raising ``ValueError`` on a malformed document. ``render_status_page``
turns a snapshot into one self-contained HTML page (inline CSS and JS, no external assets,
responsive, light and dark) served at ``/`` and ``/-/status``; its script re-fetches the
JSON every ``refresh`` seconds and redraws the page, and a ``<noscript>`` meta refresh
reloads it when scripts are off. ``content_security_policy()`` is the header to send with
the page: it allows exactly the inline script and style and requests to this origin.

Module paths, versions, mirror names and error texts are attacker-influenced: every value
is HTML-escaped (``status_html.el``), and the script builds the DOM with ``textContent`` only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gomirror.server.status_assets import SCRIPT, STYLE, asset_hash
from gomirror.server.status_html import (
    Child,
    Html,
    el,
    fmt_ago,
    fmt_bytes,
    fmt_duration,
    fmt_ms,
    fmt_pct,
    fmt_utc,
    path_breaks,
    sparkline,
    time_el,
)

__all__ = [
    "MIRROR_STATES",
    "STATUS_HTML_PATHS",
    "STATUS_JSON_PATH",
    "CacheStats",
    "EventRow",
    "MirrorStatus",
    "StatusSnapshot",
    "SumdbStatus",
    "WatchedModule",
    "content_security_policy",
    "render_status_page",
]

STATUS_JSON_PATH = "/-/status.json"
STATUS_HTML_PATHS = ("/", "/-/status")
SCHEMA = 1
MIRROR_STATES = ("healthy", "slow", "down", "lagging", "untrusted", "unknown")
NOSCRIPT_REFRESH = 30  # seconds between full reloads when scripts are off


# --- the snapshot --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MirrorStatus:
    """One upstream mirror's health as the chain and the monitor see it."""

    name: str  # short display name, also the key in WatchedModule.latest
    url: str
    state: str  # one of MIRROR_STATES
    p50_ms: float | None = None
    p90_ms: float | None = None
    success_ratio: float | None = None  # 0..1 over the sliding window
    requests: int = 0  # requests in that window
    consecutive_failures: int = 0
    last_error: str = ""
    last_error_at: float | None = None
    state_since: float | None = None
    history_ms: tuple[float | None, ...] = ()  # recent latencies, oldest first; None = failed
    note: str = ""  # e.g. why it is untrusted and until when


@dataclass(frozen=True, slots=True)
class WatchedModule:
    """Which latest version each mirror reports for one watched module."""

    path: str
    newest: str = ""  # the newest version a trusted mirror (or the database) has
    latest: Mapping[str, str | None] = field(
        default_factory=dict
    )  # mirror -> version; "" not found, None error
    checked_at: float | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    """One monitor finding (tamper, lag, error, ...), newest first in the snapshot."""

    time: float  # first seen
    kind: str
    severity: str = "warning"  # critical, warning, info
    mirror: str = ""
    module: str = ""
    version: str = ""
    text: str = ""
    last_seen: float | None = None
    resolved_at: float | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Cache effectiveness since start."""

    hits: int = 0
    misses: int = 0
    bytes_served: int = 0

    @property
    def hit_ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass(frozen=True, slots=True)
class SumdbStatus:
    """One checksum database: the verified tree size and when it was last checked."""

    name: str
    state: str = "ok"  # ok, unreachable, inconsistent, off
    tree_size: int | None = None
    verified_at: float | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything the status page shows, at one instant (``generated_at``)."""

    version: str
    started_at: float
    generated_at: float
    policy: str = ""
    mirrors: tuple[MirrorStatus, ...] = ()
    modules: tuple[WatchedModule, ...] = ()
    events: tuple[EventRow, ...] = ()
    cache: CacheStats = field(default_factory=CacheStats)
    sumdbs: tuple[SumdbStatus, ...] = ()

    @property
    def uptime(self) -> float:
        return max(0.0, self.generated_at - self.started_at)

    def to_json(self) -> dict[str, Any]:
        """The JSON document served at ``STATUS_JSON_PATH`` (computed fields included)."""
        return {
            "schema": SCHEMA,
            "version": self.version,
            "started_at": self.started_at,
            "generated_at": self.generated_at,
            "uptime_seconds": round(self.uptime, 3),
            "policy": self.policy,
            "mirrors": [{**asdict(m), "history_ms": list(m.history_ms)} for m in self.mirrors],
            "modules": [{**asdict(w), "latest": dict(w.latest)} for w in self.modules],
            "events": [asdict(e) for e in self.events],
            "cache": {
                "hits": self.cache.hits,
                "misses": self.cache.misses,
                "bytes_served": self.cache.bytes_served,
                "hit_ratio": self.cache.hit_ratio,
            },
            "sumdbs": [asdict(d) for d in self.sumdbs],
        }

    @classmethod
    def from_json(cls, data: Any) -> StatusSnapshot:
        """Read a ``to_json`` document back; ``ValueError`` names the first bad field."""
        d = _Obj(data, "status")
        if d.integer("schema") != SCHEMA:
            raise ValueError(f"status.schema: unsupported (want {SCHEMA})")
        c = d.obj("cache")
        return cls(
            version=d.text("version"),
            started_at=d.number("started_at"),
            generated_at=d.number("generated_at"),
            policy=d.text("policy", ""),
            mirrors=tuple(
                MirrorStatus(
                    name=m.text("name"),
                    url=m.text("url"),
                    state=m.text("state"),
                    p50_ms=m.opt_num("p50_ms"),
                    p90_ms=m.opt_num("p90_ms"),
                    success_ratio=m.opt_num("success_ratio"),
                    requests=m.integer("requests", 0),
                    consecutive_failures=m.integer("consecutive_failures", 0),
                    last_error=m.text("last_error", ""),
                    last_error_at=m.opt_num("last_error_at"),
                    state_since=m.opt_num("state_since"),
                    history_ms=m.history("history_ms"),
                    note=m.text("note", ""),
                )
                for m in d.objs("mirrors")
            ),
            modules=tuple(
                WatchedModule(
                    path=w.text("path"),
                    newest=w.text("newest", ""),
                    latest=w.versions("latest"),
                    checked_at=w.opt_num("checked_at"),
                )
                for w in d.objs("modules")
            ),
            events=tuple(
                EventRow(
                    time=e.number("time"),
                    kind=e.text("kind"),
                    severity=e.text("severity", "warning"),
                    mirror=e.text("mirror", ""),
                    module=e.text("module", ""),
                    version=e.text("version", ""),
                    text=e.text("text", ""),
                    last_seen=e.opt_num("last_seen"),
                    resolved_at=e.opt_num("resolved_at"),
                )
                for e in d.objs("events")
            ),
            cache=CacheStats(
                hits=c.integer("hits", 0),
                misses=c.integer("misses", 0),
                bytes_served=c.integer("bytes_served", 0),
            ),
            sumdbs=tuple(
                SumdbStatus(
                    name=s.text("name"),
                    state=s.text("state", "ok"),
                    tree_size=s.opt_int("tree_size"),
                    verified_at=s.opt_num("verified_at"),
                    error=s.text("error", ""),
                )
                for s in d.objs("sumdbs")
            ),
        )


_MISSING = object()


class _Obj:
    """Typed field access on one JSON object, with errors that say where."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: must be an object")
        self.data: dict[str, Any] = data
        self.where = where

    def _get(self, key: str, default: Any) -> Any:
        v = self.data.get(key, default)
        if v is _MISSING:
            raise ValueError(f"{self.where}.{key}: missing")
        return v

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"{self.where}.{key}: must be {what}")

    def text(self, key: str, default: Any = _MISSING) -> str:
        v = self._get(key, default)
        if not isinstance(v, str):
            raise self._bad(key, "a string")
        return v

    def integer(self, key: str, default: Any = _MISSING) -> int:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer")
        return v

    def number(self, key: str, default: Any = _MISSING) -> float:
        v = self._get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._bad(key, "a number")
        return float(v)

    def opt_num(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def opt_int(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.integer(key)

    def objs(self, key: str) -> list[_Obj]:
        v = self._get(key, [])
        if not isinstance(v, list):
            raise self._bad(key, "a list")
        return [_Obj(x, f"{self.where}.{key}[{i}]") for i, x in enumerate(v)]

    def obj(self, key: str) -> _Obj:
        return _Obj(self._get(key, {}), f"{self.where}.{key}")

    def history(self, key: str) -> tuple[float | None, ...]:
        v = self._get(key, [])
        if not isinstance(v, list) or not all(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool)) for x in v
        ):
            raise self._bad(key, "a list of numbers or nulls")
        return tuple(None if x is None else float(x) for x in v)

    def versions(self, key: str) -> dict[str, str | None]:
        v = self._get(key, {})
        if not isinstance(v, dict) or not all(x is None or isinstance(x, str) for x in v.values()):
            raise self._bad(key, "an object of strings or nulls")
        return dict(v)


# --- page parts ----------------------------------------------------------------------------------


def overall(s: StatusSnapshot) -> tuple[str, str]:
    """``(level, text)`` for the header badge; level is ok, warn, bad or unk."""
    bad = [m for m in s.mirrors if m.state in ("down", "untrusted")]
    warn = [m for m in s.mirrors if m.state in ("slow", "lagging")]
    db_bad = [d for d in s.sumdbs if d.state in ("unreachable", "inconsistent")]
    n = len(s.mirrors)
    if not n:
        return "unk", "no mirrors"
    if len(bad) == n:
        return "bad", "all mirrors down"
    if db_bad:
        return "bad", f"checksum database {db_bad[0].state}"
    if bad or warn:
        return ("bad" if bad else "warn"), f"{len(bad) + len(warn)} of {n} mirrors degraded"
    return "ok", "all mirrors healthy"


def _num(label: str, value: str) -> Html:
    return el("div", None, el("dt", None, label), el("dd", None, value))


def mirror_card(m: MirrorStatus, now: float) -> Html:
    state = m.state if m.state in MIRROR_STATES else "unknown"
    since = (
        [" · since ", time_el(m.state_since, fmt_ago(now - m.state_since))] if m.state_since else []
    )
    err: Child = None
    if m.last_error:
        when = f" {fmt_ago(now - m.last_error_at)}" if m.last_error_at else ""
        err = el("div", {"class": "merr"}, f"last error{when}: {m.last_error}")
    return el(
        "article",
        {"class": f"mirror st-{state}", "data-mirror": m.name, "data-state": state},
        el(
            "div",
            {"class": "mhead"},
            el("h3", {"class": "mname", "title": m.name}, m.name),
            el("span", {"class": "badge"}, state),
        ),
        el("div", {"class": "murl"}, m.url, since),
        el(
            "dl",
            {"class": "nums"},
            _num("p50", fmt_ms(m.p50_ms)),
            _num("p90", fmt_ms(m.p90_ms)),
            _num("success", fmt_pct(m.success_ratio)),
            _num("requests", f"{m.requests:,}"),
        ),
        sparkline(m.history_ms),
        el("div", {"class": "mnote"}, m.note) if m.note else None,
        err,
    )


def _tile(label: str, value: str, sub: Child = None, key: str = "") -> Html:
    return el(
        "div",
        {"class": "tile", "data-tile": key or None},
        el("div", {"class": "label"}, label),
        el("div", {"class": "value"}, value),
        el("div", {"class": "sub"}, sub) if sub else None,
    )


def tiles(s: StatusSnapshot) -> Html:
    up = sum(1 for m in s.mirrors if m.state in ("healthy", "slow", "lagging"))
    c = s.cache
    out = [
        _tile(
            "Mirrors in use",
            f"{up} / {len(s.mirrors)}",
            s.policy and f"policy {s.policy}",
            "mirrors",
        ),
        _tile(
            "Cache hit ratio",
            fmt_pct(c.hit_ratio),
            f"{c.hits:,} hits · {c.misses:,} misses",
            "cache",
        ),
        _tile("Bytes served", fmt_bytes(c.bytes_served), None, "bytes"),
    ]
    for d in s.sumdbs:
        size = "–" if d.tree_size is None else f"{d.tree_size:,}"
        sub: list[Child] = [d.name, " · ", d.state]
        if d.verified_at:
            sub += [" · verified ", time_el(d.verified_at, fmt_ago(s.generated_at - d.verified_at))]
        if d.error:
            sub += [" · ", d.error]
        out.append(_tile("Checksum DB tree size", size, sub, "sumdb"))
    out.append(_tile("Uptime", fmt_duration(s.uptime), f"gomirror {s.version}", "uptime"))
    return el("div", {"class": "tiles"}, out)


def _mirror_columns(s: StatusSnapshot) -> list[str]:
    cols = [m.name for m in s.mirrors]
    for w in s.modules:
        cols += [k for k in w.latest if k not in cols]
    return cols


def version_cell(v: str | None, newest: str) -> Html:
    if v is None:
        return el("td", {"class": "v v-err"}, "error")
    if v == "":
        return el("td", {"class": "v v-missing", "title": "not found"}, "—")
    cls = "v v-ok" if not newest or v == newest else "v v-lag"
    return el("td", {"class": cls}, v)


def modules_table(s: StatusSnapshot) -> Html:
    if not s.modules:
        return el("p", {"class": "empty"}, "No modules watched yet.")
    cols = _mirror_columns(s)
    head = el(
        "tr",
        None,
        el("th", None, "Module"),
        el("th", None, "Newest"),
        [el("th", None, c) for c in cols],
    )
    rows = [
        el(
            "tr",
            {"data-module": w.path},
            el("td", {"class": "mod"}, path_breaks(w.path)),
            el("td", {"class": "v"}, w.newest or "–"),
            [version_cell(w.latest.get(c, ""), w.newest) for c in cols],
        )
        for w in s.modules
    ]
    return el(
        "div",
        {"class": "scroll"},
        el("table", {"class": "modules"}, el("thead", None, head), el("tbody", None, rows)),
    )


def event_item(e: EventRow, now: float) -> Html:
    where = " · ".join(
        p for p in (e.mirror, e.module + (f"@{e.version}" if e.version else "")) if p
    )
    sev = e.severity if e.severity in ("critical", "warning", "info") else "info"
    res: Child = None
    if e.resolved_at:
        res = el(
            "span",
            {"class": "res"},
            "resolved ",
            time_el(e.resolved_at, fmt_ago(now - e.resolved_at)),
        )
    return el(
        "li",
        {"class": f"ev sev-{sev}" + (" resolved" if e.resolved_at else ""), "data-kind": e.kind},
        time_el(e.time, fmt_utc(e.time)[5:16] if now - e.time > 3600 else fmt_ago(now - e.time)),
        el(
            "div",
            {"class": "ehead"},
            el("span", {"class": "kind"}, e.kind),
            " ",
            el("span", {"class": "where"}, where),
            " ",
            res,
        ),
        el("p", {"class": "etext"}, e.text) if e.text else None,
    )


def events_list(s: StatusSnapshot) -> Html:
    if not s.events:
        return el("p", {"class": "empty"}, "No events recorded.")
    return el("ol", {"class": "events"}, [event_item(e, s.generated_at) for e in s.events])


def main_content(s: StatusSnapshot) -> Html:
    now = s.generated_at
    mirrors: Child = [mirror_card(m, now) for m in s.mirrors] or el(
        "p", {"class": "empty"}, "No upstream mirrors configured."
    )
    return Html(
        el("section", {"id": "summary"}, el("h2", None, "Overview"), tiles(s))
        + el("section", None, el("h2", None, "Mirrors"), el("div", {"class": "mirrors"}, mirrors))
        + el("section", None, el("h2", None, "Watched modules"), modules_table(s))
        + el("section", None, el("h2", None, "Recent events"), events_list(s))
    )


def header_bar(s: StatusSnapshot) -> Html:
    level, text = overall(s)
    return Html(
        el(
            "h1",
            None,
            "gomirror ",
            el("span", {"class": f"overall {level}", "id": "overall"}, text),
        )
        + el(
            "div",
            {"class": "meta", "id": "meta"},
            f"{s.version} · up {fmt_duration(s.uptime)} · updated ",
            time_el(s.generated_at, fmt_utc(s.generated_at)),
        )
    )


def content_security_policy() -> str:
    """The Content-Security-Policy for the page: only its own inline script and style."""
    return (
        "default-src 'none'; "
        f"script-src '{asset_hash(SCRIPT)}'; style-src '{asset_hash(STYLE)}'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def render_status_page(
    snapshot: StatusSnapshot, *, refresh: int = 10, json_path: str = STATUS_JSON_PATH
) -> str:
    """The whole HTML document for ``snapshot`` (see the module docstring)."""
    body = el(
        "body",
        {"data-json": json_path, "data-refresh": str(max(2, int(refresh)))},
        el(
            "div",
            {"class": "wrap"},
            el("header", {"class": "top", "id": "top"}, header_bar(snapshot)),
            el("div", {"class": "stale", "id": "stale", "hidden": ""}),
            el("main", {"id": "app"}, main_content(snapshot)),
            el(
                "footer",
                None,
                "The same data as JSON: ",
                el("a", {"href": json_path}, json_path),
                f" · refreshes every {max(2, int(refresh))} s",
            ),
        ),
        Html(f"<script>{SCRIPT}</script>"),
    )
    head = (
        '<meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        '<meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="data:,">'
        f'<noscript><meta http-equiv="refresh" content="{NOSCRIPT_REFRESH}"></noscript>'
        + str(el("title", None, f"gomirror status · {overall(snapshot)[1]}"))
        + f"<style>{STYLE}</style>"
    )
    return f'<!doctype html>\n<html lang="en"><head>{head}</head>{body}</html>\n'


def dumps(snapshot: StatusSnapshot) -> str:
    """``snapshot.to_json()`` as compact JSON text."""
    return json.dumps(snapshot.to_json(), separators=(",", ":"), ensure_ascii=False)
