"""logs configures logging so every record is an event: a fixed message plus key=value fields.

Call sites use ``logging.getLogger(__name__)`` and pass fields with ``extra=``;
the formatter appends them in a stable order. Values are quoted when they
contain spaces. Secrets are never passed as fields.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


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
        return line


def _quote(v: object) -> str:
    s = str(v)
    if not s or any(c.isspace() or c in '"=' for c in s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


def setup_logging(level: str, *, access_log: bool = True) -> None:
    """Route gomirror's logs to stderr in key=value form."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("gomirror.access").setLevel(logging.INFO if access_log else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
