"""Tests for server.status_page (and status_html): the snapshot's JSON, the HTML, and the page in a real browser.

The browser tests load the page from a loopback aiohttp server in Debian's headless
Chromium (support.browser): the HTML is rendered from one snapshot and the JSON API serves
another, so what the DOM shows proves the page's script fetched and redrew it. Screenshots
are saved under the test's tmp dir (paths printed); with ``UPDATE_DOCS_SCREENSHOT=1`` the
desktop one is also written to docs/status-page.png.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gomirror.server.status_html import fmt_ago, fmt_bytes, fmt_duration, fmt_ms, fmt_pct, sparkline
from gomirror.server.status_page import (
    STATUS_JSON_PATH,
    CacheStats,
    EventRow,
    MirrorStatus,
    StatusSnapshot,
    SumdbStatus,
    WatchedModule,
    content_security_policy,
    overall,
    render_status_page,
)
from support.browser import Chromium, Page

NOW = 1_714_560_000.0  # 2024-05-01 10:40:00 UTC
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"


def _history(
    base: float, n: int = 40, spread: float = 0.35, fails: tuple[int, ...] = ()
) -> tuple[float | None, ...]:
    out: list[float | None] = []
    for i in range(n):
        wobble = ((i * 7919) % 13) / 13 - 0.5  # deterministic jitter
        out.append(
            None
            if i in fails
            else round(base * (1 + spread * wobble + (0.8 if i == n // 3 else 0)), 1)
        )
    return tuple(out)


def demo() -> StatusSnapshot:
    mirrors = (
        MirrorStatus(
            "goproxy.cn",
            "https://goproxy.cn",
            "healthy",
            38,
            96,
            0.998,
            12480,
            0,
            history_ms=_history(42),
            state_since=NOW - 86400 * 2,
        ),
        MirrorStatus(
            "mirrors.aliyun.com",
            "https://mirrors.aliyun.com/goproxy/",
            "slow",
            420,
            1310,
            0.971,
            3210,
            0,
            last_error="read timeout after 60.0 s",
            last_error_at=NOW - 340,
            history_ms=tuple(round(80 + i * i * 0.9, 1) for i in range(40)),
            state_since=NOW - 900,
        ),
        MirrorStatus(
            "goproxy.io",
            "https://goproxy.io",
            "untrusted",
            85,
            210,
            0.993,
            2033,
            0,
            history_ms=_history(90),
            state_since=NOW - 120,
            note="untrusted until 11:10 UTC: served a go.mod whose h1: differs from sum.golang.org",
        ),
        MirrorStatus(
            "proxy.golang.org",
            "https://proxy.golang.org",
            "down",
            2900,
            5000,
            0.12,
            57,
            14,
            last_error="connect timeout after 5.0 s",
            last_error_at=NOW - 15,
            history_ms=_history(2900, spread=0.5, fails=(*range(8, 12), *range(22, 40))),
            state_since=NOW - 1500,
        ),
        MirrorStatus(
            "mirrors.tencent.com",
            "https://mirrors.tencent.com/go/",
            "lagging",
            64,
            150,
            1.0,
            1877,
            0,
            history_ms=_history(60),
            state_since=NOW - 600,
            note="2 versions behind the others for 1 module since 25 min",
        ),
    )
    names = [m.name for m in mirrors]

    def row(path: str, newest: str, **odd: str | None) -> WatchedModule:
        latest: dict[str, str | None] = dict.fromkeys(names, newest)
        latest.update({k.replace("_", "."): v for k, v in odd.items()})
        return WatchedModule(path, newest, latest, NOW - 60)

    modules = (
        row("github.com/gin-gonic/gin", "v1.10.0", proxy_golang_org=None),
        row("golang.org/x/net", "v0.25.0", mirrors_aliyun_com="v0.24.0", proxy_golang_org=None),
        row(
            "google.golang.org/grpc",
            "v1.64.0",
            mirrors_tencent_com="v1.63.2",
            proxy_golang_org=None,
        ),
        row("github.com/spf13/cobra", "v1.8.0", proxy_golang_org=None),
        row("github.com/sirupsen/logrus", "v1.9.3", goproxy_io="", proxy_golang_org=None),
    )
    events = (
        EventRow(
            NOW - 120,
            "tamper",
            "critical",
            "goproxy.io",
            "github.com/sirupsen/logrus",
            "v1.9.3",
            "go.mod hash h1:Zm9vYmFy… differs from sum.golang.org's h1:8s6Q4pX…",
            NOW - 30,
        ),
        EventRow(
            NOW - 600,
            "lag",
            "warning",
            "mirrors.tencent.com",
            "google.golang.org/grpc",
            "v1.64.0",
            "listed by 3 other mirrors for 25 min; missing here",
        ),
        EventRow(
            NOW - 1500,
            "mirror_down",
            "critical",
            "proxy.golang.org",
            text="14 consecutive failures: connect timeout after 5.0 s",
        ),
        EventRow(
            NOW - 5400,
            "info_mismatch",
            "warning",
            "goproxy.io",
            "github.com/gin-gonic/gin",
            "v1.10.0",
            ".info Time 2024-05-07T10:12:34Z differs from the others' 2024-05-07T10:12:33Z",
            resolved_at=NOW - 3600,
        ),
        EventRow(
            NOW - 9000,
            "mirror_slow",
            "warning",
            "mirrors.aliyun.com",
            text="p90 above 1 s",
            resolved_at=NOW - 8000,
        ),
    )
    return StatusSnapshot(
        version="0.1.0",
        started_at=NOW - 3 * 86400 - 4 * 3600 - 120,
        generated_at=NOW,
        policy="hedged",
        mirrors=mirrors,
        modules=modules,
        events=events,
        cache=CacheStats(182_340, 9_871, int(48.6 * 2**30)),
        sumdbs=(SumdbStatus("sum.golang.org", "ok", 31_842_117, NOW - 45),),
    )


def from_api(s: StatusSnapshot) -> StatusSnapshot:
    """What the JSON API serves in the browser tests: differs from the HTML's snapshot."""
    mirrors = tuple(
        dataclasses.replace(m, state="healthy") if m.name == "mirrors.aliyun.com" else m
        for m in s.mirrors
    )
    fresh = EventRow(
        NOW - 5,
        "zip_tamper",
        "critical",
        "goproxy.io",
        "github.com/spf13/cobra",
        "v1.8.0",
        "zip h1: differs from sum.golang.org; served from the next mirror",
    )
    return dataclasses.replace(s, mirrors=mirrors, events=(fresh, *s.events))


# --- the snapshot's JSON -------------------------------------------------------------------------


def test_json_round_trip() -> None:
    s = demo()
    doc = json.loads(json.dumps(s.to_json()))
    assert doc["schema"] == 1
    assert doc["uptime_seconds"] == 3 * 86400 + 4 * 3600 + 120
    assert doc["cache"]["hit_ratio"] == pytest.approx(182_340 / (182_340 + 9_871))
    assert doc["mirrors"][3]["history_ms"][8] is None
    assert doc["modules"][0]["latest"]["proxy.golang.org"] is None
    assert StatusSnapshot.from_json(doc) == s


def test_json_field_names() -> None:
    doc = demo().to_json()
    assert sorted(doc) == sorted(
        [
            "schema",
            "version",
            "started_at",
            "generated_at",
            "uptime_seconds",
            "policy",
            "mirrors",
            "modules",
            "events",
            "cache",
            "sumdbs",
        ]
    )
    assert sorted(doc["mirrors"][0]) == sorted(
        [
            "name",
            "url",
            "state",
            "p50_ms",
            "p90_ms",
            "success_ratio",
            "requests",
            "consecutive_failures",
            "last_error",
            "last_error_at",
            "state_since",
            "history_ms",
            "note",
        ]
    )
    assert sorted(doc["modules"][0]) == ["checked_at", "latest", "newest", "path"]
    assert sorted(doc["events"][0]) == sorted(
        [
            "time",
            "kind",
            "severity",
            "mirror",
            "module",
            "version",
            "text",
            "last_seen",
            "resolved_at",
        ]
    )
    assert sorted(doc["sumdbs"][0]) == ["error", "name", "state", "tree_size", "verified_at"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.update(schema=2), "status.schema"),
        (lambda d: d.pop("version"), "status.version"),
        (lambda d: d["mirrors"][1].update(p50_ms="fast"), "status.mirrors[1].p50_ms"),
        (lambda d: d["mirrors"][0].update(history_ms=[1, "x"]), "status.mirrors[0].history_ms"),
        (lambda d: d["modules"][0].update(latest={"a": 1}), "status.modules[0].latest"),
        (lambda d: d["events"][0].update(time=True), "status.events[0].time"),
        (lambda d: d.update(mirrors={}), "status.mirrors"),
        (lambda d: d["sumdbs"][0].update(tree_size=1.5), "status.sumdbs[0].tree_size"),
    ],
)
def test_from_json_names_the_bad_field(mutate: Callable[[dict[str, Any]], Any], where: str) -> None:
    doc = demo().to_json()
    mutate(doc)
    with pytest.raises(ValueError) as e:
        StatusSnapshot.from_json(doc)
    assert str(e.value).startswith(where + ":")


# --- the HTML ------------------------------------------------------------------------------------


def hostile() -> StatusSnapshot:
    s = demo()
    evil_mirror = '"><img src=x onerror="window.__pwned=1">'
    evil_module = "<script>window.__pwned=2</script>"
    mirrors = (
        dataclasses.replace(
            s.mirrors[0], name=evil_mirror, url="javascript:alert(3)", last_error="</div><b>x</b>"
        ),
        *s.mirrors[1:],
    )
    modules = (
        WatchedModule(evil_module, "v1.0.0<i>", {evil_mirror: "<svg onload=alert(4)>"}),
        *s.modules,
    )
    events = (
        EventRow(
            NOW - 1,
            "<b>tamper</b>",
            "critical",
            evil_mirror,
            evil_module,
            "v1<x>",
            "<iframe src=//evil>",
        ),
        *s.events,
    )
    return dataclasses.replace(
        s, mirrors=mirrors, modules=modules, events=events, policy="<u>p</u>", version="<v>"
    )


def test_html_escapes_every_value() -> None:
    page = render_status_page(hostile())
    assert "<script>window.__pwned" not in page
    assert "&lt;script&gt;window.__pwned=2&lt;/script&gt;" in page
    assert "<img" not in page and "<iframe" not in page and "<svg onload" not in page
    assert 'data-mirror="&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;"' in page
    assert "<b>" not in page and "<i>" not in page and "<u>" not in page and "<v>" not in page
    assert page.count("<script") == 1  # only the page's own script
    assert 'href="javascript:' not in page


def test_html_is_self_contained_and_mobile_ready() -> None:
    page = render_status_page(demo(), refresh=7)
    assert page.startswith("<!doctype html>")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in page
    assert f'data-json="{STATUS_JSON_PATH}"' in page and 'data-refresh="7"' in page
    refs = re.findall(r'\b(?:src|href|action|srcset)="([^"]*)"', page)
    assert refs == [
        "data:,",
        STATUS_JSON_PATH,
    ]  # favicon and the JSON link; nothing fetched elsewhere
    assert "@import" not in page and "url(" not in page and "@font-face" not in page
    assert "prefers-color-scheme:dark" in page


def test_html_content() -> None:
    page = render_status_page(demo())
    assert page.count('<article class="mirror') == 5
    assert (
        '<article class="mirror st-down" data-mirror="proxy.golang.org" data-state="down">' in page
    )
    assert "<dd>38 ms</dd>" in page and "<dd>1.3 s</dd>" in page and "<dd>99.8%</dd>" in page
    assert '<td class="v v-lag">v0.24.0</td>' in page
    assert '<td class="v v-err">error</td>' in page
    assert '<td class="v v-missing" title="not found">—</td>' in page
    assert '<li class="ev sev-critical" data-kind="tamper">' in page
    assert '<li class="ev sev-warning resolved" data-kind="info_mismatch">' in page
    assert "31,842,117" in page and "48.6 GiB" in page and "94.9%" in page
    assert "3 d 4 h" in page and "0.1.0" in page
    assert '<span class="overall bad" id="overall">4 of 5 mirrors degraded</span>' in page


def test_csp_allows_exactly_the_inline_blocks() -> None:
    page = render_status_page(demo())
    csp = content_security_policy()
    for tag in ("script", "style"):
        (block,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp


def test_formatting() -> None:
    assert [fmt_ms(v) for v in (None, 0.4, 42.5, 999.4, 999.6, 1530)] == [
        "–",
        "0 ms",
        "43 ms",
        "999 ms",
        "1.0 s",
        "1.5 s",
    ]
    assert [fmt_pct(v) for v in (None, 1.0, 0.9984)] == ["–", "100.0%", "99.8%"]
    assert [fmt_bytes(n) for n in (0, 1023, 1536, 5 * 2**30, 3 * 2**50)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 GiB",
        "3072.0 TiB",
    ]
    assert [fmt_ago(s) for s in (-5, 9, 59, 61, 7200, 200000)] == [
        "just now",
        "just now",
        "59 s ago",
        "1 min ago",
        "2 h ago",
        "2 d ago",
    ]
    assert [fmt_duration(s) for s in (5, 150, 3 * 3600 + 125, 90000)] == [
        "5 s",
        "2 min",
        "3 h 2 min",
        "1 d 1 h",
    ]


def test_sparkline() -> None:
    svg = sparkline([10, 20, None, 40, 30])  # x = 0, 40, (80 failed), 120, 160
    assert svg.count('<rect class="fail"') == 1 and 'x="79"' in svg
    assert svg.count("<polyline") == 2  # the failure splits the line in two
    assert re.search(r'points="0,[\d.]+ 40,[\d.]+"', svg)
    assert 'points="120,4.4 160,10.3"' in svg  # 40 is the top (max * 1.1 headroom)
    assert "last 30 ms, max 40 ms" in svg
    assert "<polyline" not in sparkline([]) and "no data" in sparkline([])
    assert sparkline([None, None]).count('class="fail"') == 2
    assert 'class="dot"' in sparkline([5]) and "<polyline" not in sparkline([5])


def test_overall_state() -> None:
    s = demo()
    healthy = dataclasses.replace(
        s, mirrors=tuple(dataclasses.replace(m, state="healthy") for m in s.mirrors)
    )
    assert overall(healthy) == ("ok", "all mirrors healthy")
    one_slow = dataclasses.replace(
        healthy, mirrors=(dataclasses.replace(s.mirrors[1]), *healthy.mirrors[1:])
    )
    assert overall(one_slow) == ("warn", "1 of 5 mirrors degraded")
    all_down = dataclasses.replace(
        s, mirrors=tuple(dataclasses.replace(m, state="down") for m in s.mirrors)
    )
    assert overall(all_down) == ("bad", "all mirrors down")
    db = dataclasses.replace(healthy, sumdbs=(SumdbStatus("sum.golang.org", "unreachable"),))
    assert overall(db) == ("bad", "checksum database unreachable")
    assert overall(dataclasses.replace(s, mirrors=())) == ("unk", "no mirrors")


def test_empty_snapshot_renders() -> None:
    page = render_status_page(StatusSnapshot("0.1.0", NOW, NOW))
    assert "No upstream mirrors configured." in page
    assert "No modules watched yet." in page and "No events recorded." in page


# --- in a real browser ---------------------------------------------------------------------------


class PageServer:
    """Serves the page (HTML from one snapshot) and the JSON API (from ``api()``) on loopback."""

    def __init__(self, html: str, api: Callable[[], web.Response], *, csp: bool = True) -> None:
        self.html = html
        self.api = api
        self.csp = csp
        self.json_requests = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _page(self, request: web.Request) -> web.Response:
        headers = {"Content-Security-Policy": content_security_policy()} if self.csp else {}
        return web.Response(text=self.html, content_type="text/html", headers=headers)

    async def _json(self, request: web.Request) -> web.Response:
        self.json_requests += 1
        return self.api()

    async def __aenter__(self) -> PageServer:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/-/status", self._page)
        app.router.add_get(STATUS_JSON_PATH, self._json)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def json_response(s: StatusSnapshot) -> Callable[[], web.Response]:
    return lambda: web.json_response(s.to_json())


async def wait_rendered(page: Page, n: int = 1) -> None:
    await asyncio.wait_for(
        page.evaluate(
            "new Promise((resolve) => {"
            f"  const ok = () => Number(document.body.dataset.renders || 0) >= {n};"
            "  if (ok()) return resolve(true);"
            "  const h = () => { if (ok()) { document.removeEventListener('status-rendered', h); resolve(true); } };"
            "  document.addEventListener('status-rendered', h);"
            "})",
            await_promise=True,
        ),
        20,
    )


DOM = """(() => ({
  title: document.title,
  overall: document.getElementById("overall").textContent,
  mirrors: [...document.querySelectorAll("article.mirror")].map((m) => ({
    name: m.querySelector(".mname").textContent,
    state: m.dataset.state,
    badge: m.querySelector(".badge").textContent,
    nums: [...m.querySelectorAll(".nums dd")].map((d) => d.textContent),
    color: getComputedStyle(m).borderTopColor,
    lines: m.querySelectorAll("svg.spark polyline").length,
    fails: m.querySelectorAll("svg.spark rect.fail").length,
    error: (m.querySelector(".merr") || {}).textContent || "",
  })),
  events: [...document.querySelectorAll("li.ev")].map((e) => ({kind: e.dataset.kind, text: e.textContent, cls: e.className})),
  rows: [...document.querySelectorAll("table.modules tbody tr")].map((r) => [...r.cells].map((c) => [c.textContent, c.className])),
  head: [...document.querySelectorAll("table.modules thead th")].map((c) => c.textContent),
  tiles: Object.fromEntries([...document.querySelectorAll(".tile")].map((t) => [t.dataset.tile, t.querySelector(".value").textContent])),
  stale: document.getElementById("stale").hidden,
  renders: Number(document.body.dataset.renders || 0),
  scripts: document.scripts.length,
  imgs: document.querySelectorAll("img, iframe").length,
  pwned: window.__pwned === undefined ? null : window.__pwned,
  pageWidth: document.documentElement.scrollWidth,
}))()"""


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", css)[:3])


def browse(tmp_path: Path, body: Callable[[Chromium], Awaitable[None]]) -> None:
    async def main() -> None:
        async with Chromium(tmp_path) as browser:
            await body(browser)

    asyncio.run(main())


def test_page_in_browser_renders_the_api_data(tmp_path: Path) -> None:
    html_snapshot, api_snapshot = demo(), from_api(demo())

    async def body(browser: Chromium) -> None:
        async with PageServer(
            render_status_page(html_snapshot), json_response(api_snapshot)
        ) as srv:
            page = await browser.new_page()
            await page.set_viewport(1280, 900)
            await page.goto(srv.url + "/-/status")
            await wait_rendered(page)
            dom = await page.evaluate(DOM)
            assert srv.json_requests >= 1

            states = {m["name"]: m["state"] for m in dom["mirrors"]}
            assert states == {
                "goproxy.cn": "healthy",
                "mirrors.aliyun.com": "healthy",  # "slow" in the HTML: the script redrew it
                "goproxy.io": "untrusted",
                "proxy.golang.org": "down",
                "mirrors.tencent.com": "lagging",
            }
            assert [m["badge"] for m in dom["mirrors"]] == [m["state"] for m in dom["mirrors"]]
            cn, down = dom["mirrors"][0], dom["mirrors"][3]
            assert cn["nums"] == ["38 ms", "96 ms", "99.8%", "12,480"]
            assert cn["lines"] == 1 and down["fails"] == 22 and down["lines"] >= 1
            assert "connect timeout" in down["error"]
            r, g, _ = rgb(down["color"])
            assert r > 150 and g < 100, down["color"]  # down is red
            assert rgb(cn["color"])[1] > rgb(cn["color"])[0]  # healthy is green
            assert dom["overall"] == "3 of 5 mirrors degraded"
            assert dom["title"] == "gomirror status · 3 of 5 mirrors degraded"

            assert dom["events"][0]["kind"] == "zip_tamper"
            assert (
                "zip h1: differs from sum.golang.org; served from the next mirror"
                in dom["events"][0]["text"]
            )
            assert "goproxy.io · github.com/spf13/cobra@v1.8.0" in dom["events"][0]["text"]
            assert "ev sev-warning resolved" in [e["cls"] for e in dom["events"]]

            assert dom["head"] == ["Module", "Newest", *states]
            net = dom["rows"][1]
            assert net[0] == ["golang.org/x/net", "mod"]
            assert net[3] == ["v0.24.0", "v v-lag"] and net[2] == ["v0.25.0", "v v-ok"]
            assert net[5] == ["error", "v v-err"]
            assert dom["rows"][4][4] == ["—", "v v-missing"]
            assert dom["tiles"] == {
                "mirrors": "3 / 5",  # healthy, slow or lagging; not down or untrusted
                "cache": "94.9%",
                "bytes": "48.6 GiB",
                "sumdb": "31,842,117",
                "uptime": "3 d 4 h",
            }
            assert dom["stale"] is True
            assert page.errors == [] and page.dialogs == []
            assert dom["pageWidth"] <= 1280

            shot = await page.screenshot(tmp_path / "status-desktop.png", width=1280)
            print(f"\nscreenshot: {shot}")
            if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
                DOCS_SHOT.write_bytes(shot.read_bytes())
                print(f"screenshot: {DOCS_SHOT}")

            # A phone, dark mode: nothing wider than the screen (the table scrolls in its box).
            await page.color_scheme("dark")
            shot = await page.screenshot(
                tmp_path / "status-phone-dark.png", width=390, mobile=True, scale=2
            )
            print(f"screenshot: {shot}")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            bg = await page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert sum(rgb(bg)) < 100, bg  # dark background
            assert page.errors == []

    browse(tmp_path, body)


def test_page_refreshes_itself(tmp_path: Path) -> None:
    answers = [from_api(demo())]
    later = dataclasses.replace(
        demo(),
        mirrors=tuple(dataclasses.replace(m, state="healthy") for m in demo().mirrors),
        generated_at=NOW + 2,
    )

    def api() -> web.Response:
        s = answers.pop(0) if answers else later
        return web.json_response(s.to_json())

    async def body(browser: Chromium) -> None:
        async with PageServer(render_status_page(demo(), refresh=2), api) as srv:
            page = await browser.new_page()
            await page.goto(srv.url + "/")
            await wait_rendered(page, 2)  # the first fetch at load, the next one 2 s later
            dom = await page.evaluate(DOM)
            assert {m["state"] for m in dom["mirrors"]} == {"healthy"}
            assert dom["overall"] == "all mirrors healthy"
            assert srv.json_requests >= 2
            assert page.errors == []

    browse(tmp_path, body)


def test_stale_banner_when_the_api_fails(tmp_path: Path) -> None:
    async def body(browser: Chromium) -> None:
        async with PageServer(
            render_status_page(demo()), lambda: web.Response(status=503, text="busy")
        ) as srv:
            page = await browser.new_page()
            await page.goto(srv.url + "/")
            text = await asyncio.wait_for(
                page.evaluate(
                    "new Promise((resolve) => { const b = document.getElementById('stale');"
                    " const done = () => { if (!b.hidden) resolve(b.textContent); };"
                    " new MutationObserver(done).observe(b, {attributes: true}); done(); })",
                    await_promise=True,
                ),
                20,
            )
            assert text.startswith("Could not refresh (HTTP 503). Retrying")
            dom = await page.evaluate(DOM)
            assert (
                len(dom["mirrors"]) == 5 and dom["renders"] == 0
            )  # the server-rendered page stays
            # The only error is the browser's own note about the failed request.
            assert page.errors and all("503" in e for e in page.errors), page.errors

    browse(tmp_path, body)


def test_page_without_javascript(tmp_path: Path) -> None:
    async def body(browser: Chromium) -> None:
        async with PageServer(render_status_page(demo()), json_response(from_api(demo()))) as srv:
            page = await browser.new_page()
            await page.scripts(False)
            await page.goto(srv.url + "/")
            await page.scripts(True)  # evaluate() needs scripts; the page's own did not run
            dom = await page.evaluate(DOM)
            assert dom["renders"] == 0 and srv.json_requests == 0
            assert dom["mirrors"][1]["state"] == "slow"  # the HTML's snapshot, untouched
            assert dom["events"][0]["kind"] == "tamper"
            assert dom["tiles"]["sumdb"] == "31,842,117"
            refresh = await page.evaluate(
                "document.querySelector('meta[http-equiv=refresh]') !== null"
            )
            assert refresh
            await page.screenshot(tmp_path / "status-noscript.png")

    browse(tmp_path, body)


def test_hostile_values_stay_text_in_the_browser(tmp_path: Path) -> None:
    s = hostile()

    async def body(browser: Chromium) -> None:
        # No CSP here: escaping alone must hold.
        async with PageServer(render_status_page(s), json_response(s), csp=False) as srv:
            page = await browser.new_page()
            await page.goto(srv.url + "/")
            await wait_rendered(page)
            dom = await page.evaluate(DOM)
            assert dom["pwned"] is None and page.dialogs == [] and page.errors == []
            assert dom["imgs"] == 0 and dom["scripts"] == 1
            assert dom["mirrors"][0]["name"] == '"><img src=x onerror="window.__pwned=1">'
            assert dom["rows"][0][0] == ["<script>window.__pwned=2</script>", "mod"]
            assert dom["rows"][0][2] == ["<svg onload=alert(4)>", "v v-lag"]
            assert dom["events"][0]["kind"] == "<b>tamper</b>"
            assert "<iframe src=//evil>" in dom["events"][0]["text"]

    browse(tmp_path, body)
