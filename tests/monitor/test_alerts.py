"""Tests for monitor.alerts: sink config, message formats, de-duplication, rate limit, delivery.

Every delivery goes to a real loopback receiver (support.webhook); waits are on the
receiver's condition, and ``close()`` drains the queues, so counts read after it are final.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gomirror.errors import ConfigError
from gomirror.monitor.alert_formats import redact_url
from gomirror.monitor.alerts import Alert, Alerter, SinkConfig, parse_sinks
from support.ports import free_port
from support.webhook import Reply, WebhookReceiver

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
WHEN = "2023-11-14 22:13:20 UTC"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def down(mirror: str = "https://goproxy.io", severity: str = "critical") -> Alert:
    return Alert(
        key=f"mirror_down:{mirror}",
        kind="mirror_down",
        severity=severity,  # type: ignore[arg-type]
        title=f"{mirror} is down",
        text="5 probes failed in a row",
        mirror=mirror,
        details={"failures": 5},
    )


def run(
    sinks: list[dict[str, Any]],
    body: Callable[[Alerter, WebhookReceiver, Clock], Awaitable[None]],
    *,
    script: list[Reply] | None = None,
    default: Reply | None = None,
    grace: float = 5.0,
    **kw: Any,
) -> tuple[WebhookReceiver, Alerter]:
    """Run ``body`` with an Alerter whose sinks (``url`` defaults to the receiver) are started."""

    async def main() -> tuple[WebhookReceiver, Alerter]:
        clock = Clock()
        async with WebhookReceiver(script, default) as rx, aiohttp.ClientSession() as session:
            cfg = parse_sinks(
                [{"url": rx.url + "/hook?access_token=tok123456", **s} for s in sinks]
            )
            alerter = Alerter(cfg, session, clock=clock, backoff_base=0.001, **kw)
            alerter.start()
            try:
                await body(alerter, rx, clock)
            finally:
                await alerter.close(grace)
            return rx, alerter

    return asyncio.run(main())


# --- configuration -----------------------------------------------------------------------------


def test_parse_sinks_defaults_and_values() -> None:
    sinks = parse_sinks(
        [
            {
                "type": "dingtalk",
                "url": "https://oapi.dingtalk.com/robot/send?access_token=t",
                "secret": "SECx",
            },
            {"type": "log"},
            {
                "type": "feishu",
                "name": "ops",
                "url": "https://open.feishu.cn/open-apis/bot/v2/hook/abc",
                "min_severity": "critical",
                "kinds": ["tamper"],
                "max_per_minute": 3,
                "timeout": 2,
                "attempts": 2,
                "format": "text",
            },
        ]
    )
    assert [s.name for s in sinks] == ["dingtalk#0", "log#1", "ops"]
    assert sinks[0].secret == "SECx" and sinks[0].min_severity == "warning"
    assert sinks[0].max_per_minute == 10 and sinks[1].max_per_minute == 0
    ops = sinks[2]
    assert (
        ops.min_severity,
        ops.kinds,
        ops.max_per_minute,
        ops.timeout,
        ops.attempts,
        ops.format,
    ) == (
        "critical",
        frozenset({"tamper"}),
        3,
        2.0,
        2,
        "text",
    )
    assert parse_sinks(None) == []


@pytest.mark.parametrize(
    ("items", "where"),
    [
        ({"alerts": 1}, "alerts"),
        ([{"type": "pagerduty", "url": "https://x"}], "alerts[0].type"),
        ([{"type": "log"}, {"type": "slack"}], "alerts[1].url"),
        ([{"type": "slack", "url": "ftp://hooks.slack.com/x"}], "alerts[0].url"),
        ([{"type": "slack", "url": "https:///nohost"}], "alerts[0].url"),
        ([{"type": "wecom", "url": "https://q", "secret": "s"}], "alerts[0].secret"),
        ([{"type": "slack", "url": "https://q", "min_severity": "loud"}], "alerts[0].min_severity"),
        (
            [{"type": "slack", "url": "https://q", "max_per_minute": True}],
            "alerts[0].max_per_minute",
        ),
        ([{"type": "slack", "url": "https://q", "attempts": 0}], "alerts[0].attempts"),
        ([{"type": "slack", "url": "https://q", "timeout": -1}], "alerts[0].timeout"),
        ([{"type": "slack", "url": "https://q", "kinds": "tamper"}], "alerts[0].kinds"),
        ([{"type": "webhook", "url": "https://q", "headers": {"a": 1}}], "alerts[0].headers"),
        ([{"type": "feishu", "url": "https://q", "format": "html"}], "alerts[0].format"),
        ([{"type": "log"}, {"type": "log", "name": "log#0"}], "alerts[1].name"),
        (["dingtalk"], "alerts[0]"),
    ],
)
def test_parse_sinks_errors_name_the_key(items: Any, where: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_sinks(items)
    assert str(e.value).startswith(where + ":")


def test_bad_url_is_not_echoed_and_repr_hides_secrets() -> None:
    with pytest.raises(ConfigError) as e:
        parse_sinks([{"type": "slack", "url": "ftp://hooks.slack.com/services/T0/B0/SEKRIT"}])
    assert "SEKRIT" not in str(e.value)
    (cfg,) = parse_sinks(
        [
            {
                "type": "dingtalk",
                "url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN1",
                "secret": "SEC99",
            }
        ]
    )
    assert "TOKEN1" not in repr(cfg) and "SEC99" not in repr(cfg)


def test_redact_url_drops_path_query_and_userinfo() -> None:
    assert (
        redact_url("https://u:pw@hooks.slack.com:8443/services/T/B/X?x=1#f")
        == "https://hooks.slack.com:8443/…"
    )
    assert (
        redact_url("https://oapi.dingtalk.com/robot/send?access_token=t")
        == "https://oapi.dingtalk.com/…"
    )
    assert redact_url("http://example.com") == "http://example.com"


# --- message formats ---------------------------------------------------------------------------

DINGTALK_TEXT = (
    "#### 🔴 [FIRING] https://goproxy.io is down\n"
    "\n"
    "5 probes failed in a row\n"
    "\n"
    "- **severity**: `critical`\n"
    "- **kind**: `mirror_down`\n"
    "- **mirror**: `https://goproxy.io`\n"
    "- **failures**: `5`\n"
    f"- **time**: {WHEN}\n"
    "- **key**: `mirror_down:https://goproxy.io`"
)

EXPECTED_BODIES: dict[str, Any] = {
    "dingtalk": {
        "msgtype": "markdown",
        "markdown": {"title": "[FIRING] https://goproxy.io is down", "text": DINGTALK_TEXT},
    },
    "wecom": {
        "msgtype": "markdown",
        "markdown": {
            "content": (
                '### <font color="warning">FIRING</font> https://goproxy.io is down\n'
                "5 probes failed in a row\n"
                "> severity: `critical`\n"
                "> kind: `mirror_down`\n"
                "> mirror: `https://goproxy.io`\n"
                "> failures: `5`\n"
                f"> time: {WHEN}\n"
                "> key: `mirror_down:https://goproxy.io`"
            )
        },
    },
    "feishu": {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "template": "red",
                "title": {"tag": "plain_text", "content": "[FIRING] https://goproxy.io is down"},
            },
            "elements": [
                {
                    "tag": "div",
                    "text": {"tag": "lark_md", "content": DINGTALK_TEXT.split("\n", 2)[2]},
                }
            ],
        },
    },
    "feishu-text": {
        "msg_type": "text",
        "content": {
            "text": (
                "[FIRING] https://goproxy.io is down\n"
                "5 probes failed in a row\n"
                "severity: critical\n"
                "kind: mirror_down\n"
                "mirror: https://goproxy.io\n"
                "failures: 5\n"
                f"time: {WHEN}\n"
                "key: mirror_down:https://goproxy.io"
            )
        },
    },
    "slack": {
        "text": "🔴 [FIRING] https://goproxy.io is down",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": "🔴 [FIRING] https://goproxy.io is down"},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": "5 probes failed in a row"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*severity*: `critical`\n*kind*: `mirror_down`\n"
                    "*mirror*: `https://goproxy.io`\n*failures*: `5`",
                },
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"gomirror · {WHEN} · `mirror_down:https://goproxy.io`",
                    }
                ],
            },
        ],
    },
    "webhook": {
        "source": "gomirror",
        "key": "mirror_down:https://goproxy.io",
        "kind": "mirror_down",
        "severity": "critical",
        "state": "firing",
        "title": "https://goproxy.io is down",
        "text": "5 probes failed in a row",
        "mirror": "https://goproxy.io",
        "module": "",
        "version": "",
        "time": T0,
        "details": {"failures": 5},
        "suppressed": 0,
    },
}


@pytest.mark.parametrize("fmt", sorted(EXPECTED_BODIES))
def test_body_shape_per_format(fmt: str) -> None:
    kind, _, style = fmt.partition("-")
    sink: dict[str, Any] = {"type": kind}
    if style:
        sink["format"] = style

    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        assert alerter.fire(down())
        await rx.wait_for(1)

    rx, alerter = run([sink], body)
    (req,) = rx.requests
    assert req.method == "POST" and req.path == "/hook"
    assert req.headers["Content-Type"].startswith("application/json")
    assert req.json == EXPECTED_BODIES[fmt]
    assert alerter.stats()[f"{kind}#0"].sent == 1


def test_resolved_message_per_format() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(3)
        clock.now += 90
        assert alerter.resolve("mirror_down:https://goproxy.io", text="answering again")
        await rx.wait_for(6)

    rx, _ = run([{"type": "dingtalk"}, {"type": "feishu"}, {"type": "webhook", "name": "w"}], body)
    resolved = [r.json for r in rx.requests[3:]]
    by_shape = {("msgtype" in b, "msg_type" in b): b for b in resolved}
    ding, feishu, hook = by_shape[(True, False)], by_shape[(False, True)], by_shape[(False, False)]
    assert ding["markdown"]["title"] == "[RESOLVED] https://goproxy.io is down"
    assert ding["markdown"]["text"].startswith(
        "#### ✅ [RESOLVED] https://goproxy.io is down\n\nanswering again\n"
    )
    assert "- **duration**: `90.0`" in ding["markdown"]["text"]
    assert feishu["card"]["header"]["template"] == "green"
    assert hook["state"] == "resolved" and hook["time"] == T0 + 90
    assert hook["details"] == {"failures": 5, "fired_at": T0, "duration": 90.0}


def test_mirror_values_cannot_inject_markdown_or_slack_markup() -> None:
    evil = Alert(
        key="tamper:x",
        kind="tamper",
        severity="critical",
        title="tamper",
        module="example.com/`x`\n[click](https://evil)",
        details={"got": "<!channel> & <https://evil|x>"},
    )

    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(evil)
        await rx.wait_for(2)

    rx, _ = run([{"type": "dingtalk"}, {"type": "slack"}], body)
    texts = {("msgtype" in r.json): r.json for r in rx.requests}
    ding = texts[True]["markdown"]["text"]
    assert "- **module**: `example.com/'x' [click](https://evil)`" in ding
    slack = json.dumps(texts[False])
    assert "<!channel>" not in slack and "<https://evil" not in slack
    assert "&lt;!channel&gt; &amp; &lt;https://evil|x&gt;" in slack


# --- signing -----------------------------------------------------------------------------------


def test_dingtalk_signature_in_query() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(1)

    rx, _ = run([{"type": "dingtalk", "secret": "SECabc"}], body)
    q = rx.requests[0].query
    assert q["access_token"] == "tok123456"
    assert q["timestamp"] == str(int(T0 * 1000))
    mac = hmac.new(b"SECabc", f"{int(T0 * 1000)}\nSECabc".encode(), hashlib.sha256).digest()
    assert q["sign"] == base64.b64encode(mac).decode()


def test_feishu_signature_in_body() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(1)

    rx, _ = run([{"type": "feishu", "secret": "fsecret"}], body)
    b = rx.requests[0].json
    assert b["timestamp"] == str(int(T0))
    mac = hmac.new(f"{int(T0)}\nfsecret".encode(), b"", hashlib.sha256).digest()
    assert b["sign"] == base64.b64encode(mac).decode()
    assert b["msg_type"] == "interactive"


def test_generic_webhook_signature_header_and_custom_headers() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(1)

    rx, _ = run(
        [{"type": "webhook", "secret": "whsec", "headers": {"Authorization": "Bearer zz"}}], body
    )
    req = rx.requests[0]
    want = "sha256=" + hmac.new(b"whsec", req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Gomirror-Signature-256"] == want
    assert req.headers["Authorization"] == "Bearer zz"


# --- de-duplication and filtering ----------------------------------------------------------------


def test_deduplication_and_resolve_only_after_fire() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        assert not alerter.resolve("mirror_down:https://never.example")
        assert alerter.fire(down())
        clock.now += 10
        assert not alerter.fire(down())  # still firing: nothing new
        assert not alerter.fire(down(severity="warning"))  # lower severity is no news either
        assert [a.key for a in alerter.firing()] == ["mirror_down:https://goproxy.io"]
        assert alerter.resolve("mirror_down:https://goproxy.io")
        assert not alerter.resolve("mirror_down:https://goproxy.io")  # already resolved
        assert alerter.firing() == []
        clock.now += 10
        assert alerter.fire(down())  # a new outage fires again
        await rx.wait_for(3)

    rx, alerter = run([{"type": "webhook"}], body)
    assert [(r.json["state"], r.json["time"]) for r in rx.requests] == [
        ("firing", T0),
        ("resolved", T0 + 10),
        ("firing", T0 + 20),
    ]
    assert alerter.stats()["webhook#0"].sent == 3


def test_severity_rise_is_sent_again() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        assert alerter.fire(down(severity="warning"))
        assert alerter.fire(down(severity="critical"))
        await rx.wait_for(2)

    rx, _ = run([{"type": "webhook"}], body)
    assert [r.json["severity"] for r in rx.requests] == ["warning", "critical"]


def test_min_severity_and_kinds_filter_per_sink() -> None:
    lag = Alert(key="lag:m", kind="lag", severity="warning", title="lag")
    info = Alert(key="new:m", kind="new_version", severity="info", title="new")

    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        for a in (down(), lag, info):
            alerter.fire(a)
        alerter.resolve("lag:m")
        await rx.wait_for(5)

    sinks: list[dict[str, Any]] = [
        {"type": "webhook", "name": "all", "min_severity": "info"},
        {"type": "webhook", "name": "crit", "min_severity": "critical"},
        {"type": "webhook", "name": "lag", "kinds": ["lag"]},
    ]
    rx, alerter = run(sinks, body)
    stats = alerter.stats()
    # all: down, lag, info, lag resolved; crit: down; lag: lag + its resolve
    assert (stats["all"].sent, stats["crit"].sent, stats["lag"].sent) == (4, 1, 2)
    assert len(rx.requests) == 7


# --- rate limit ----------------------------------------------------------------------------------


def mirror(i: int) -> Alert:
    return down(f"https://m{i}.example")


def test_rate_limit_counts_excess_and_reports_it_with_the_next_message() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        for i in range(5):
            alerter.fire(mirror(i))
        await rx.wait_for(2)
        assert alerter.stats()["webhook#0"].suppressed == 3
        clock.now += 61  # the window has room again
        alerter.fire(mirror(9))
        await rx.wait_for(3)

    rx, alerter = run([{"type": "webhook", "max_per_minute": 2}], body)
    assert [r.json["mirror"] for r in rx.requests] == [
        "https://m0.example",
        "https://m1.example",
        "https://m9.example",
    ]
    assert [r.json["suppressed"] for r in rx.requests] == [0, 0, 3]
    assert alerter.stats()["webhook#0"].sent == 3


def test_rate_limit_summary_when_no_new_alert_comes() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        for i in range(3):
            alerter.fire(mirror(i))
        alerter.resolve("mirror_down:https://m2.example")  # its firing was never shown: dropped
        await rx.wait_for(1)
        alerter.tick()  # window still full: nothing yet
        clock.now += 61
        alerter.tick()
        await rx.wait_for(2)

    rx, _ = run([{"type": "dingtalk", "max_per_minute": 1}], body)
    assert len(rx.requests) == 2
    summary = rx.requests[1].json["markdown"]
    assert summary["title"] == "[FIRING] 2 alert(s) suppressed by the rate limit"
    assert "- **suppressed**: `2`" in summary["text"]


# --- delivery: retries, failures, never blocking -------------------------------------------------


def test_retry_after_500_then_success() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(3)

    script = [Reply(500, "oops"), Reply(429, "slow down", {"Retry-After": "0"})]
    rx, alerter = run([{"type": "wecom"}], body, script=script)
    assert len(rx.requests) == 3
    assert rx.requests[0].body == rx.requests[1].body == rx.requests[2].body
    st = alerter.stats()["wecom#0"]
    assert (st.sent, st.retries, st.failed) == (1, 2, 0)


def test_attempts_are_bounded() -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(3)

    rx, alerter = run([{"type": "slack", "attempts": 3}], body, default=Reply(503, "down"))
    assert len(rx.requests) == 3
    st = alerter.stats()["slack#0"]
    assert (st.sent, st.retries, st.failed) == (0, 2, 1)


@pytest.mark.parametrize(
    ("reply", "requests", "sent"),
    [
        (Reply(400, "bad"), 1, 0),  # a client error is not retried
        (Reply(200, '{"errcode":310000,"errmsg":"keywords not in content"}'), 1, 0),
        (Reply(200, '{"errcode":130101,"errmsg":"send too fast"}'), 2, 1),  # rate limit: retried
    ],
)
def test_service_errors_inside_200(reply: Reply, requests: int, sent: int) -> None:
    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(requests)

    rx, alerter = run([{"type": "dingtalk"}], body, script=[reply])
    assert len(rx.requests) == requests
    assert alerter.stats()["dingtalk#0"].sent == sent


def test_fire_never_blocks_while_the_receiver_hangs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "gomirror.monitor.alerts")

    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(mirror(0))
        await rx.wait_for(1)  # the sink is now stuck on its first POST
        started = time.monotonic()
        for i in range(1, 6):
            assert alerter.fire(mirror(i))
        elapsed = time.monotonic() - started
        assert elapsed < 0.5, elapsed
        assert alerter.stats()["hang"].dropped == 2  # queue of 3 is full: counted, not blocking

    rx, _ = run(
        [{"type": "webhook", "name": "hang", "timeout": 30}],
        body,
        default=Reply(hang=True),
        queue_size=3,
        grace=0.2,
    )
    assert len(rx.requests) == 1
    assert "alerts not drained" in caplog.text
    assert "alert queue full" in caplog.text


def test_slow_sink_does_not_delay_another() -> None:
    async def main() -> None:
        async with (
            WebhookReceiver(default=Reply(hang=True)) as slow,
            WebhookReceiver() as fast,
            aiohttp.ClientSession() as session,
        ):
            cfg = parse_sinks(
                [
                    {"type": "webhook", "name": "slow", "url": slow.url, "timeout": 30},
                    {"type": "webhook", "name": "fast", "url": fast.url},
                ]
            )
            alerter = Alerter(cfg, session, clock=Clock())
            alerter.start()
            alerter.fire(mirror(0))
            alerter.fire(mirror(1))
            await slow.wait_for(1)
            await fast.wait_for(2)
            await alerter.close(0.1)
            assert alerter.stats()["fast"].sent == 2 and alerter.stats()["slow"].sent == 0

    asyncio.run(main())


def test_secrets_and_tokens_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "gomirror.monitor.alerts")
    echo = '{"errcode":310000,"errmsg":"sign not match for access_token=tok123456"}'

    async def body(alerter: Alerter, rx: WebhookReceiver, clock: Clock) -> None:
        alerter.fire(down())
        await rx.wait_for(2)

    port = free_port()
    dead = f"http://user:pw12345678@127.0.0.1:{port}/robot/send?access_token=tok123456"
    sinks = [
        {"type": "dingtalk", "secret": "SECverysecret", "attempts": 2},
        {"type": "webhook", "name": "dead", "url": dead, "secret": "whsecret", "attempts": 2},
    ]
    _, alerter = run(sinks, body, script=[Reply(500, "x"), Reply(200, echo)])
    assert alerter.stats()["dingtalk#0"].failed == 1 and alerter.stats()["dead"].failed == 1
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert "alert not delivered" in caplog.text
    for secret in ("SECverysecret", "tok123456", "whsecret", "pw12345678"):
        assert secret not in logged
    targets = {getattr(r, "target", None) for r in caplog.records}
    assert f"http://127.0.0.1:{port}/…" in targets  # the redacted form is what is logged


def test_log_sink_logs_every_alert(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gomirror.monitor.alerts")

    async def main() -> Alerter:
        alerter = Alerter(
            parse_sinks([{"type": "log", "min_severity": "info"}]), None, clock=Clock()
        )
        async with alerter:
            alerter.fire(
                Alert(
                    key="tamper:m@v1",
                    kind="tamper",
                    severity="critical",
                    title="t",
                    module="m",
                    version="v1",
                )
            )
            alerter.resolve("tamper:m@v1")
        return alerter

    alerter = asyncio.run(main())
    msgs = [(r.getMessage(), r.levelno, getattr(r, "mod", None)) for r in caplog.records]
    assert msgs == [("alert firing", logging.WARNING, "m"), ("alert resolved", logging.INFO, "m")]
    assert alerter.stats()["log#0"].sent == 2


def test_http_sink_needs_a_session() -> None:
    with pytest.raises(ValueError, match="session"):
        Alerter([SinkConfig(type="slack", name="s", url="https://hooks.slack.com/x")], None)


def test_fire_after_close_is_ignored() -> None:
    async def main() -> bool:
        alerter = Alerter([], None)
        await alerter.close()
        return alerter.fire(down())

    assert asyncio.run(main()) is False
