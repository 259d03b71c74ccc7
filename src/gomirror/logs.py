"""logs configures logging so every record is an event: a fixed message plus key=value fields.

Call sites use ``logging.getLogger(__name__)`` and pass fields with ``extra=``;
the formatter appends them in a stable order. Values are quoted when they
contain spaces. Secrets are never passed as fields, and any URL userinfo
that slips into a message is masked by the formatter anyway.

Two filters keep a hostile client from filling the disk with logs:
``ClientErrorFilter`` turns aiohttp's "Error handling request" tracebacks
(malformed requests) into one ``info`` line without a traceback, and
``RateLimitFilter`` lets through at most ``burst`` records of one kind
(logger + message) per ``period`` seconds, then one line saying how many
were suppressed.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@")


def redact(text: str) -> str:
    """Mask ``user:secret@`` in any URL inside text."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


class KeyValueFormatter(logging.Formatter):
    """``time level logger message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname.lower()} {record.name} {record.getMessage()}"
        fields = [
            f"{k}={_quote(v)}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_")
        ]
        line = base + (" " + " ".join(fields) if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def _quote(v: object) -> str:
    s = str(v)
    if not s or any(c.isspace() or c in '"=' for c in s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class ClientErrorFilter(logging.Filter):
    """Malformed client requests are the client's problem: one info line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Error handling request from %s" or str(record.msg).startswith(
            "Error handling request"
        ):
            exc = record.exc_info[1] if record.exc_info else None
            record.msg = "bad client request"
            record.args = ()
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.__dict__["reason"] = (type(exc).__name__ + ": " + str(exc))[:200] if exc else ""
            record.exc_info = None
            record.exc_text = None
            return logging.getLogger().getEffectiveLevel() <= logging.INFO
        return True


class RateLimitFilter(logging.Filter):
    """At most ``burst`` records per (logger, message) per ``period`` seconds."""

    def __init__(
        self, burst: int = 5, period: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.period = period
        self._clock = clock
        self._windows: dict[tuple[str, str], list[float]] = {}  # key -> [start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gomirror.access":
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        w = self._windows.get(key)
        if w is None or now - w[0] >= self.period:
            dropped = int(w[2]) if w is not None else 0
            if len(self._windows) > 10_000:
                self._windows.clear()  # bounded memory whatever the messages
            self._windows[key] = [now, 1.0, 0.0]
            if dropped:
                record.__dict__["suppressed"] = dropped
            return True
        w[1] += 1
        if w[1] <= self.burst:
            return True
        w[2] += 1
        return False


def setup_logging(level: str, *, access_log: bool = True) -> None:
    """Route gomirror's logs to stderr in key=value form, filtered against floods."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    handler.addFilter(ClientErrorFilter())
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("gomirror.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for noisy in ("botocore", "aiobotocore", "urllib3"):  # every signed request at debug
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
