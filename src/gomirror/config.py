"""config builds gomirror's one frozen, typed configuration from defaults, TOML, env and flags.

Precedence, lowest to highest: the embedded defaults, the TOML file
(``--config`` or ``GOMIRROR_CONFIG``), ``GOMIRROR_<KEY>`` environment variables,
then command-line flags. Every key is declared once in ``SETTINGS``; the README's
configuration reference is generated from the same table. An invalid value
raises ``ConfigError`` naming the key and where the value came from.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gomirror.errors import ConfigError

DEFAULT_UPSTREAM = "https://goproxy.cn|https://mirrors.aliyun.com/goproxy/|https://proxy.golang.org"
POLICIES = ("go", "failover")
LOG_LEVELS = ("debug", "info", "warning", "error")


def default_cache_dir() -> Path:
    """The per-user cache directory (XDG on Linux, ~/Library/Caches on macOS)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "gomirror"
    home = Path.home()
    mac = home / "Library" / "Caches"
    if mac.is_dir():
        return mac / "gomirror"
    return home / ".cache" / "gomirror"


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a gomirror process; see ``SETTINGS`` for meaning and defaults."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    cache_dir: Path = field(default_factory=default_cache_dir)
    upstream: str = DEFAULT_UPSTREAM
    policy: str = "go"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retry_after_max: float = 2.0
    timeout_park: float = 30.0
    mutable_ttl: float = 60.0
    negative_ttl: float = 30.0
    sumdb: tuple[str, ...] = ("sum.golang.org",)
    nosumdb: str = ""
    private: str = ""
    git_timeout: float = 300.0
    git_concurrency: int = 4
    direct_rules: tuple[tuple[str, str], ...] = ()
    goget_insecure: str = ""
    git_config: Path | None = None
    git_tokens: tuple[str, ...] = ()
    log_level: str = "info"
    access_log: bool = True
    workers: int = 1


# --- value parsers: each raises ValueError with a short reason ---------------


def _parse_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type(v).__name__}")
    return v


def _parse_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {v!r}") from None
    if f < 0 or f != f:
        raise ValueError(f"must be a non-negative number, got {v!r}")
    return f


def _parse_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("expected an integer")
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected an integer, got {v!r}") from None
    if i < 1:
        raise ValueError(f"must be at least 1, got {v!r}")
    return i


def _parse_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _parse_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = _parse_str(v).strip().lower()
        if s not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {v!r}")
        return s

    return parse


def _parse_listen(v: Any) -> tuple[str, int]:
    s = _parse_str(v).strip()
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port out of range in {v!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, p


def _parse_upstream(v: Any) -> str:
    s = _parse_str(v)
    # Full syntax checks live in gomirror.upstream.goproxy; here only emptiness.
    if not s.replace(",", "").replace("|", "").strip():
        raise ValueError("GOPROXY list is empty")
    return s.strip()


def _parse_str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        items = [p.strip() for p in v.split(";")]
    elif isinstance(v, list | tuple):
        items = [_parse_str(p).strip() for p in v]
    else:
        raise ValueError("expected a string or a list of strings")
    return tuple(p for p in items if p)


def _parse_rules(v: Any) -> tuple[tuple[str, str], ...]:
    """Repository rules: a TOML table ``{pattern = url-template}`` or ``pat=url;pat=url``."""
    pairs: list[tuple[str, str]] = []
    if isinstance(v, Mapping):
        for k, t in v.items():
            pairs.append((str(k), _parse_str(t)))
    else:
        for item in _parse_str_list(v):
            pat, sep, tmpl = item.partition("=")
            if not sep or not pat.strip() or not tmpl.strip():
                raise ValueError(f"expected PATTERN=URL, got {item!r}")
            pairs.append((pat.strip(), tmpl.strip()))
    return tuple(pairs)


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: its TOML/env name, parser, target field(s) and help text."""

    key: str
    parse: Callable[[Any], Any]
    help: str
    fields: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return "GOMIRROR_" + self.key.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "listen", _parse_listen, "address to serve on, HOST:PORT", ("listen_host", "listen_port")
    ),
    Setting("cache_dir", lambda v: Path(_parse_str(v)).expanduser(), "disk cache directory"),
    Setting(
        "upstream",
        _parse_upstream,
        "upstream list in GOPROXY syntax (`,` and `|`, `off`, `direct`)",
    ),
    Setting(
        "policy",
        _parse_choice(POLICIES),
        "`go`: Go's list semantics; `failover`: also fall through on 5xx, 429, timeouts and refused connections after a `,`",
    ),
    Setting("connect_timeout", _parse_float, "seconds to wait for an upstream connection"),
    Setting("read_timeout", _parse_float, "seconds an upstream may stay silent while sending"),
    Setting(
        "retry_after_max",
        _parse_float,
        "longest `Retry-After` (s) on a 429 that is waited out once; longer ones skip the upstream until then",
    ),
    Setting(
        "timeout_park",
        _parse_float,
        "seconds an upstream that timed out is skipped (fails at once), so a hanging mirror costs one timeout, not one per request",
    ),
    Setting("mutable_ttl", _parse_float, "seconds `list`, `@latest` and query answers stay fresh"),
    Setting("negative_ttl", _parse_float, "seconds a not-found answer is remembered"),
    Setting(
        "sumdb",
        _parse_str_list,
        "checksum databases in GOSUMDB syntax (`name+key [URL]`, `sum.golang.org`, or `off`); `;`-separated in env",
    ),
    Setting(
        "nosumdb",
        _parse_str,
        "module path patterns (GONOSUMDB syntax) never looked up in the checksum database",
    ),
    Setting(
        "private",
        _parse_str,
        "module path patterns (GOPRIVATE syntax) fetched only with `direct`, never from mirrors or the checksum database",
    ),
    Setting("git_timeout", _parse_float, "seconds one git command may run in direct mode"),
    Setting("git_concurrency", _parse_int, "git processes run at once in direct mode"),
    Setting(
        "direct_rules",
        _parse_rules,
        "repository rules for direct mode: `PATTERN=URL-TEMPLATE`; the elements the pattern matches are the repository root, and the template may use `{root}` (that root), `{host}` (its first element) and `{path}` (the rest); `;`-separated in env, a table in TOML",
    ),
    Setting(
        "goget_insecure",
        _parse_str,
        "module path patterns whose `?go-get=1` discovery may use plain http (GOINSECURE syntax)",
    ),
    Setting(
        "git_config",
        lambda v: Path(_parse_str(v)).expanduser(),
        "git config file for direct mode (`url.<base>.insteadOf`, `core.sshCommand`, credential helpers); the user's own git config is never read",
    ),
    Setting(
        "git_tokens",
        _parse_str_list,
        "`HOST=TOKEN` (or `HOST=USER:SECRET`) credentials for https git hosts, `;`-separated in env; sent to git through its environment, never logged",
    ),
    Setting("log_level", _parse_choice(LOG_LEVELS), "log level"),
    Setting("access_log", _parse_bool, "write one log line per request"),
    Setting("workers", _parse_int, "server processes sharing the listening port and the cache"),
)
_BY_KEY = {s.key: s for s in SETTINGS}


def _apply(values: dict[str, Any], setting: Setting, raw: Any, origin: str) -> None:
    try:
        parsed = setting.parse(raw)
    except ValueError as e:
        raise ConfigError(f"invalid setting {setting.key} (from {origin}): {e}") from None
    targets = setting.fields or (setting.key,)
    if len(targets) == 1:
        values[targets[0]] = parsed
    else:
        values.update(zip(targets, parsed, strict=True))


def load_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build a Config; ``overrides`` are command-line values keyed like ``SETTINGS``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    if config_file is None and env.get("GOMIRROR_CONFIG"):
        config_file = Path(env["GOMIRROR_CONFIG"])
    if config_file is not None:
        try:
            with config_file.open("rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config file {config_file}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {config_file} is not valid TOML: {e}") from None
        for key, raw in data.items():
            setting = _BY_KEY.get(key)
            if setting is None:
                raise ConfigError(f"unknown setting {key} in {config_file}")
            _apply(values, setting, raw, str(config_file))
    known_env = {s.env for s in SETTINGS} | {"GOMIRROR_CONFIG"}
    for name in env:
        if name.startswith("GOMIRROR_") and name not in known_env:
            raise ConfigError(f"unknown setting {name} in the environment")
    for setting in SETTINGS:
        if setting.env in env:
            _apply(values, setting, env[setting.env], setting.env)
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        setting = _BY_KEY.get(key)
        if setting is None:
            raise ConfigError(f"unknown setting {key}")
        _apply(values, setting, raw, "--" + key.replace("_", "-"))
    return dataclasses.replace(Config(), **values)
