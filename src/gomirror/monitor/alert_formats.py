"""monitor.alert_formats turns one alert into the JSON body (and URL) each chat service expects.

Contract: ``build_request(kind, alert, url, secret, now, suppressed, format)`` returns the
``(url, body)`` of one POST for that service — the generic webhook (the alert as JSON),
DingTalk, WeCom (企业微信), Feishu/Lark and Slack robots — signing it when a secret is
given (DingTalk: ``timestamp``/``sign`` query parameters; Feishu: ``timestamp``/``sign``
body fields; generic webhook: an ``X-Gomirror-Signature-256`` header, see
``signature_header``). ``app_error(kind, body)`` reads a service's 200 answer: those
services report failures (bad signature, rate limit) inside a 200. ``redact_url`` is the
only form of a webhook URL that may be logged: robot tokens live in the path and query.

Values that come from mirrors (module paths, versions, mirror names) are shown as code
spans with backticks and line breaks removed, so they cannot inject links or formatting
into the chat message; Slack's ``&``, ``<`` and ``>`` are always escaped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from gomirror.monitor.alerts import Alert

SinkType = Literal["webhook", "dingtalk", "wecom", "feishu", "slack", "log"]
SINK_TYPES: tuple[SinkType, ...] = ("webhook", "dingtalk", "wecom", "feishu", "slack", "log")
SIGNED_TYPES: tuple[SinkType, ...] = ("webhook", "dingtalk", "feishu")
SIGNATURE_HEADER = "X-Gomirror-Signature-256"

# Service error codes that mean "too many messages": worth retrying after a pause.
RATE_LIMIT_CODES: Mapping[str, frozenset[int]] = {
    "dingtalk": frozenset({130101, 130102}),
    "wecom": frozenset({45009}),
    "feishu": frozenset({11232, 9499}),
}
WECOM_MAX_BYTES = 4096  # WeCom rejects markdown content longer than this
FIELD_MAX = 300  # longest value shown from a field or details entry

_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
_RESOLVED_ICON = "✅"
_FEISHU_TEMPLATE = {"critical": "red", "warning": "orange", "info": "blue"}
_WECOM_COLOR = {"critical": "warning", "warning": "warning", "info": "comment"}


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: no userinfo, path, query or fragment (tokens live there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that may be credentials, to scrub from logged text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    out = [seg for seg in parts.path.split("/") if len(seg) >= 8]
    out += [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
    if parts.password:
        out.append(parts.password)
    return out


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by ``***`` (service answers may echo a token)."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _clean(value: object, limit: int = FIELD_MAX) -> str:
    """One line, no backticks, bounded: safe inside a Markdown code span."""
    s = " ".join(str(value).split()).replace("`", "'")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _code(value: object) -> str:
    return f"`{_clean(value)}`"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def headline(alert: Alert) -> str:
    """``[FIRING] title`` or ``[RESOLVED] title``: the one-line form of an alert."""
    return f"[{alert.state.upper()}] {_clean(alert.title, 200)}"


def _fields(alert: Alert) -> list[tuple[str, str]]:
    rows = [("severity", alert.severity), ("kind", alert.kind)]
    rows += [(k, v) for k, v in (("mirror", alert.mirror), ("module", alert.module)) if v]
    if alert.version:
        rows.append(("version", alert.version))
    rows += [(str(k), _json_value(v)) for k, v in sorted(alert.details.items())]
    return rows


def _json_value(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def _suppressed_line(suppressed: int) -> str:
    return f"{suppressed} more alert(s) were suppressed by the rate limit." if suppressed else ""


def markdown_body(alert: Alert, suppressed: int) -> str:
    """The alert's text and fields as Markdown; mirror-supplied values as code spans."""
    lines = [_clean(alert.text, 1000), ""] if alert.text else []
    lines += [f"- **{k}**: {_code(v)}" for k, v in _fields(alert)]
    lines += [f"- **time**: {_when(alert.time)}", f"- **key**: {_code(alert.key)}"]
    if suppressed:
        lines += ["", f"_{_suppressed_line(suppressed)}_"]
    return "\n".join(lines)


def markdown(alert: Alert, suppressed: int) -> str:
    """The alert as a Markdown message with a heading (DingTalk)."""
    icon = _RESOLVED_ICON if alert.state == "resolved" else _ICON.get(alert.severity, "")
    heading = " ".join(p for p in ("####", icon, headline(alert)) if p)
    return f"{heading}\n\n{markdown_body(alert, suppressed)}"


def plain(alert: Alert, suppressed: int) -> str:
    """The alert as plain text (Feishu text messages, the log)."""
    lines = [headline(alert)]
    if alert.text:
        lines.append(_clean(alert.text, 1000))
    lines += [f"{k}: {_clean(v)}" for k, v in _fields(alert)]
    lines += [f"time: {_when(alert.time)}", f"key: {_clean(alert.key)}"]
    if suppressed:
        lines.append(_suppressed_line(suppressed))
    return "\n".join(lines)


def _slack_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(alert: Alert, suppressed: int) -> dict[str, Any]:
    icon = _RESOLVED_ICON if alert.state == "resolved" else _ICON.get(alert.severity, "")
    head = _slack_escape(f"{icon} {headline(alert)}".strip())
    fields = "\n".join(f"*{k}*: `{_slack_escape(_clean(v))}`" for k, v in _fields(alert))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
    ]
    if alert.text:
        text = _slack_escape(_clean(alert.text, 1000))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": fields}})
    context = f"gomirror · {_when(alert.time)} · `{_slack_escape(_clean(alert.key))}`"
    if suppressed:
        context += " · " + _suppressed_line(suppressed)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": head, "blocks": blocks}


def wecom_body(alert: Alert, suppressed: int) -> dict[str, Any]:
    color = "info" if alert.state == "resolved" else _WECOM_COLOR.get(alert.severity, "comment")
    lines = [f'### <font color="{color}">{alert.state.upper()}</font> {_clean(alert.title, 200)}']
    if alert.text:
        lines.append(_clean(alert.text, 1000))
    lines += [f"> {k}: {_code(v)}" for k, v in _fields(alert)]
    lines += [f"> time: {_when(alert.time)}", f"> key: {_code(alert.key)}"]
    if suppressed:
        lines.append(f'<font color="comment">{_suppressed_line(suppressed)}</font>')
    content = "\n".join(lines)
    raw = content.encode()
    if len(raw) > WECOM_MAX_BYTES:
        content = raw[: WECOM_MAX_BYTES - 3].decode(errors="ignore") + "…"
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_body(alert: Alert, suppressed: int) -> dict[str, Any]:
    return {
        "msgtype": "markdown",
        "markdown": {"title": headline(alert), "text": markdown(alert, suppressed)},
    }


def feishu_body(alert: Alert, suppressed: int, fmt: str) -> dict[str, Any]:
    if fmt == "text":
        return {"msg_type": "text", "content": {"text": plain(alert, suppressed)}}
    template = (
        "green" if alert.state == "resolved" else _FEISHU_TEMPLATE.get(alert.severity, "blue")
    )
    body = markdown_body(alert, suppressed)
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "template": template,
                "title": {"tag": "plain_text", "content": headline(alert)},
            },
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": body}}],
        },
    }


def webhook_body(alert: Alert, suppressed: int) -> dict[str, Any]:
    return {"source": "gomirror", **alert.to_json(), "suppressed": suppressed}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: base64(HMAC-SHA256(key=secret, msg="<ms>\\n<secret>"))."""
    msg = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), msg, hashlib.sha256).digest()).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu: base64(HMAC-SHA256(key="<s>\\n<secret>", msg=empty))."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def signature_header(secret: str, body: bytes) -> str:
    """Generic webhook: ``sha256=<hex HMAC-SHA256(key=secret, msg=body)>``, as GitHub does."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in extra] + list(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def build_request(
    kind: SinkType,
    alert: Alert,
    url: str,
    secret: str,
    now: float,
    suppressed: int = 0,
    fmt: str = "card",
) -> tuple[str, bytes, dict[str, str]]:
    """The ``(url, body, extra headers)`` of the POST that delivers ``alert`` to a sink."""
    headers: dict[str, str] = {}
    body: dict[str, Any]
    if kind == "dingtalk":
        body = dingtalk_body(alert, suppressed)
        if secret:
            ts = int(now * 1000)
            url = _with_query(url, {"timestamp": str(ts), "sign": dingtalk_sign(secret, ts)})
    elif kind == "wecom":
        body = wecom_body(alert, suppressed)
    elif kind == "feishu":
        body = feishu_body(alert, suppressed, fmt)
        if secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
    elif kind == "slack":
        body = slack_body(alert, suppressed)
    elif kind == "webhook":
        body = webhook_body(alert, suppressed)
    else:
        raise ValueError(f"sink type {kind!r} is not sent over HTTP")
    raw = json.dumps(body, ensure_ascii=False, sort_keys=False).encode()
    if kind == "webhook" and secret:
        headers[SIGNATURE_HEADER] = signature_header(secret, raw)
    return url, raw, headers


def app_error(kind: SinkType, text: str) -> tuple[int, str] | None:
    """The ``(code, message)`` of a failure a service reported inside a 200, else None."""
    if kind not in ("dingtalk", "wecom", "feishu"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for code_key, msg_key in (
        ("errcode", "errmsg"),
        ("code", "msg"),
        ("StatusCode", "StatusMessage"),
    ):
        code = data.get(code_key)
        if isinstance(code, int) and not isinstance(code, bool):
            return None if code == 0 else (code, str(data.get(msg_key, ""))[:200])
    return None
