"""server.status_html holds the status page's building blocks: value formatting, escaping, sparklines.

Contract: ``el(tag, attrs, *children)`` builds markup in which every ``str`` child and
every attribute value is HTML-escaped (only ``Html`` values, which ``el`` itself returns,
pass through), so attacker-influenced text cannot become markup. The ``fmt_*`` functions
format numbers, sizes and times exactly as the page's script does (keep them in step with
``status_assets.SCRIPT``); ``sparkline`` draws recent latencies as an inline SVG.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "Child",
    "Html",
    "el",
    "fmt_ago",
    "fmt_bytes",
    "fmt_duration",
    "fmt_ms",
    "fmt_pct",
    "fmt_utc",
    "path_breaks",
    "sparkline",
    "time_el",
]


# --- formatting (kept identical to the script's, so both renderings agree) ----------------------


def fmt_ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{int(v + 0.5)} ms" if v < 999.5 else f"{v / 1000:.1f} s"


def fmt_pct(r: float | None) -> str:
    return "–" if r is None else f"{r * 100:.1f}%"


def fmt_bytes(n: int) -> str:
    v = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    raise AssertionError("unreachable")


def fmt_ago(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 10:
        return "just now"
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def fmt_duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def fmt_utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# --- a tiny HTML builder: every string child and attribute value is escaped ---------------------


class Html(str):
    """Markup that is already safe (built by ``el``); plain ``str`` is always escaped."""

    __slots__ = ()


Child = str | Html | None | Iterable["Child"]


def _render_children(children: Iterable[Child]) -> str:
    out: list[str] = []
    for c in children:
        if c is None:
            continue
        if isinstance(c, Html):
            out.append(c)
        elif isinstance(c, str):
            out.append(html.escape(c, quote=False))
        else:
            out.append(_render_children(c))
    return "".join(out)


def el(tag: str, attrs: Mapping[str, str | None] | None = None, *children: Child) -> Html:
    """``<tag attrs>children</tag>``; attributes whose value is None are left out."""
    a = "".join(
        f' {k}="{html.escape(v, quote=True)}"' for k, v in (attrs or {}).items() if v is not None
    )
    if tag in _VOID:
        return Html(f"<{tag}{a}>")
    return Html(f"<{tag}{a}>{_render_children(children)}</{tag}>")


_VOID = frozenset({"wbr", "br"})


def path_breaks(path: str) -> list[Child]:
    """A module path with a line-break opportunity after each ``/`` (narrow screens)."""
    parts = path.split("/")
    out: list[Child] = []
    for i, p in enumerate(parts):
        out.append(p if i == len(parts) - 1 else p + "/")
        if i < len(parts) - 1:
            out.append(el("wbr"))
    return out


def time_el(t: float, text: str) -> Html:
    return el("time", {"datetime": iso(t), "title": fmt_utc(t)}, text)


def sparkline(values: Sequence[float | None], width: int = 160, height: int = 32) -> Html:
    """An inline SVG of recent latencies; failed probes are red marks on the baseline."""
    known = [v for v in values if v is not None]
    top = max(known) * 1.1 if known else 1.0
    top = top or 1.0
    n = len(values)
    step = width / (n - 1) if n > 1 else 0.0
    base = height - 4

    def xy(i: int, v: float) -> tuple[float, float]:
        return round(i * step if n > 1 else width / 2, 1), round(base - v / top * (base - 2), 1)

    parts: list[Html] = []
    segment: list[tuple[float, float]] = []
    segments: list[list[tuple[float, float]]] = []
    for i, v in enumerate(values):
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            x = round(i * step if n > 1 else width / 2, 1)
            attrs = {"class": "fail", "x": f"{max(0.0, x - 1):g}", "y": str(height - 3)}
            parts.append(el("rect", {**attrs, "width": "2", "height": "3"}))
        else:
            segment.append(xy(i, v))
    if segment:
        segments.append(segment)
    for seg in segments:
        pts = " ".join(f"{x:g},{y:g}" for x, y in seg)
        if len(seg) == 1:
            x, y = seg[0]
            parts.append(
                el(
                    "rect",
                    {
                        "class": "dot",
                        "x": f"{x - 1:g}",
                        "y": f"{y - 1:g}",
                        "width": "2",
                        "height": "2",
                    },
                )
            )
            continue
        area = f"M{seg[0][0]:g},{base} L{pts.replace(' ', ' L')} L{seg[-1][0]:g},{base} Z"
        parts.append(el("path", {"class": "area", "d": area}))
        parts.append(el("polyline", {"class": "line", "points": pts}))
    label = "latency history" + (
        f", last {fmt_ms(known[-1])}, max {fmt_ms(max(known))}" if known else ", no data"
    )
    return el(
        "svg",
        {
            "class": "spark",
            "viewBox": f"0 0 {width} {height}",
            "preserveAspectRatio": "none",
            "role": "img",
            "aria-label": label,
        },
        el("title", None, label),
        parts,
    )
