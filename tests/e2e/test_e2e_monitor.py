"""The consistency monitor inside a running gomirror: lag found, alerted, shown, served.

Two loopback mirrors serve one module; the second does not have its newest
version yet. gomirror (built and served in-process by the composition root,
with the monitor probing every 0.2 s) must: record a lag finding naming the
second mirror, mark it lagging, send the alert to a loopback webhook, show all
of it in /-/status.json and on the status page rendered by a real headless
Chromium (no JavaScript errors), and still serve the new version, from the
mirror that has it, to the real go command.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from gomirror import app
from gomirror.config import load_config
from support.browser import Chromium
from support.corpus import Corpus
from support.gorunner import GoRunner
from support.simulator import UpstreamSimulator
from support.webhook import WebhookReceiver

M = "example.com/watched/mod"


def corpora() -> tuple[Corpus, Corpus]:
    full, behind = Corpus(), Corpus()
    for c in (full, behind):
        c.add_module(M, "v1.0.0", {"a.go": b"package mod\n"})
    full.add_module(M, "v1.1.0", {"a.go": b"package mod // v1.1.0\n"})
    return full, behind


def test_lag_is_found_alerted_shown_and_the_new_tag_still_served(tmp_path: Path) -> None:
    full, behind = corpora()
    with (
        UpstreamSimulator(behind, name="behind") as slow,
        UpstreamSimulator(full, name="current") as current,
    ):

        async def main() -> None:
            async with WebhookReceiver() as hook:
                toml = tmp_path / "gomirror.toml"
                toml.write_text(
                    "[[alerts]]\n"
                    'type = "webhook"\n'
                    f'url = "{hook.url}/hook"\n'
                    'min_severity = "info"\n'
                )
                cfg = load_config(
                    config_file=toml,
                    env={},
                    overrides={
                        "cache_dir": str(tmp_path / "cache"),
                        "upstream": f"{slow.url}|{current.url}",
                        "sumdb": "off",
                        "listen": "127.0.0.1:0",
                        "access_log": "false",
                        "monitor_interval": "0.2",
                        "lag_alert_after": "0",
                        "watch": M,
                    },
                )
                async with app.build(cfg, monitor=True) as parts, app.serve(parts) as port:
                    assert parts.monitor is not None
                    await parts.monitor.wait_rounds(2)
                    assert parts.health.get(slow.url).state == "lagging"
                    base = f"http://127.0.0.1:{port}"
                    async with aiohttp.ClientSession() as s:
                        async with s.get(base + "/-/status.json") as r:
                            snap: dict[str, Any] = await r.json()
                        async with s.get(base + "/metrics") as r:
                            metrics = await r.text()
                    module = next(m for m in snap["modules"] if m["path"] == M)
                    assert module["newest"] == "v1.1.0"
                    assert module["latest"][slow.url] == "v1.0.0"
                    assert module["latest"][current.url] == "v1.1.0"
                    lag = [e for e in snap["events"] if e["kind"] == "lag"]
                    assert lag and lag[0]["mirror"] == slow.url and lag[0]["version"] == "v1.1.0"
                    assert {m["name"]: m["state"] for m in snap["mirrors"]}[slow.url] == "lagging"
                    assert (
                        f'gomirror_mirror_lag_seconds{{module="{M}",upstream="{slow.url}"}}'
                        in metrics
                    )
                    assert 'gomirror_monitor_findings_total{type="lag"}' in metrics

                    got = await hook.wait_for(1, within=10)
                    bodies = [json.dumps(g.json) for g in got]
                    assert any("lag" in b and M in b for b in bodies), bodies

                    async with Chromium(tmp_path / "chromium") as browser:
                        page = await browser.new_page()
                        await page.goto(base + "/-/status")
                        text = await page.evaluate("document.body.innerText")
                        assert slow.url in text and current.url in text
                        assert "lagging" in text and M in text
                        assert page.errors == []
                        shot = await page.screenshot(tmp_path / "status-live.png", width=1280)
                        print(f"\nscreenshot: {shot}")

                    # Users see the new tag as soon as any trusted mirror has it.
                    go = GoRunner(tmp_path / "go", base)
                    out = await asyncio.to_thread(  # the server runs on this loop
                        go.run, "list", "-m", "-json", f"{M}@latest", cwd=tmp_path
                    )
                    assert json.loads(out.stdout)["Version"] == "v1.1.0"

        asyncio.run(main())
