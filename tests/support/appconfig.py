"""appconfig builds the config most in-process test servers use.

Contract: ``quiet_config(cache_dir, upstream, **more)`` is gomirror's own loader
(``load_config``) fed no environment and these overrides: the cache directory,
the upstream list, the checksum database off, port 0 on loopback and no access
log; ``more`` adds or replaces any setting by its flat name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gomirror.config import Config, load_config


def quiet_config(cache_dir: Path, upstream: str, **more: Any) -> Config:
    overrides: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "upstream": upstream,
        "sumdb": "off",
        "listen": "127.0.0.1:0",
        "access_log": "false",
        **more,
    }
    return load_config(env={}, overrides=overrides)
