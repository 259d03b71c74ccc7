"""config builds gomirror's one frozen, typed configuration tree from defaults, TOML, env and flags.

Precedence, lowest to highest: the embedded defaults, the TOML file
(``--config`` or ``GOMIRROR_CONFIG``), ``GOMIRROR_<KEY>`` environment variables,
then command-line flags. Every key is declared once in ``SETTINGS``: its section,
parser, target field(s), help text and command-line flag. The key is globally
unique; it is the env name suffix and the flag (``--key-with-dashes``). The
README's settings table is generated from the same table (``gomirror.configdoc``).

The tree is ``Config``, one frozen dataclass per section (``server``, ``cache``,
``upstream``, ``sumdb``, ``direct``). In TOML a key is written in its section
(``[server]`` / ``listen = ...``) or, for compatibility, at the top level.
Every value is parsed and validated when the config is loaded (upstream lists,
checksum-database specs, repository rules, git tokens), so later code never
sees raw text. An invalid value raises ``ConfigError``
``invalid setting KEY (from ORIGIN): reason``; an unknown key or section, or a
key in the wrong section, is an error naming it. Error texts never contain a
credential.

Adding a setting: one ``Setting`` line in ``SETTINGS`` plus a field in its
section's dataclass. Adding a section: a frozen dataclass with defaults and a
field of that type in ``Config``; ``SECTIONS`` is derived from ``Config``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from gomirror.errors import ConfigError, GomirrorError
from gomirror.module.paths import check_path
from gomirror.monitor.alerts import SinkConfig, parse_sinks
from gomirror.sumdb.verifier import SumdbSpec, parse_sumdb_spec
from gomirror.upstream.discovery import RepoRule
from gomirror.upstream.goproxy import Entry, parse_goproxy
from gomirror.upstream.redirects import MODES as REDIRECT_MODES

DEFAULT_UPSTREAM = "https://goproxy.cn|https://mirrors.aliyun.com/goproxy/|https://proxy.golang.org"
DEFAULT_SUMDB = "sum.golang.org"
POLICIES = ("go", "failover", "fastest", "hedged")
PREDICT_MODES = ("off", "mod", "mod+info", "mod+info+zip")
LOG_LEVELS = ("debug", "info", "warning", "error")
STORAGE_KINDS = ("disk", "s3")
S3_ADDRESSING = ("path", "virtual")
S3_SIGNATURES = ("v4", "v2")
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600.0  # the longest a SigV4 presigned URL may be valid
MIN_PART_SIZE = 5 << 20  # S3's smallest multipart part (all but the last)
SERVE = ("serve",)


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


# --- value parsers: each raises ValueError with a short reason ---------------
# A reason never quotes a value that may hold a secret (see _parse_tokens).


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


def _parse_path(v: Any) -> Path:
    s = _parse_str(v).strip()
    if not s:
        raise ValueError("expected a path, got an empty string")
    return Path(s).expanduser()


_SIZE = re.compile(r"^([0-9]+)\s*([kmg]i?b?|b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3}


def _parse_size(v: Any) -> int:
    """A byte count >= 0: an integer, or text such as ``65536``, ``64KiB``, ``8MiB``, ``1GB``."""
    if isinstance(v, bool):
        raise ValueError("expected a size in bytes")
    if isinstance(v, int):
        n = v
    else:
        m = _SIZE.match(_parse_str(v).strip())
        if m is None:
            raise ValueError(f"expected a size in bytes such as 1048576 or 8MiB, got {v!r}")
        unit = (m.group(2) or "").lower()
        scale = 1024 ** " kmg".index(unit[0]) if "i" in unit else _SIZE_UNITS[unit[:1]]
        n = int(m.group(1)) * scale
    if n < 0:
        raise ValueError(f"must not be negative, got {v!r}")
    return n


def _parse_part_size(v: Any) -> int:
    n = _parse_size(v)
    if not MIN_PART_SIZE <= n <= 5 << 30:
        raise ValueError("must be between 5MiB and 5GiB (S3's limits for one part)")
    return n


_REDIS_URL_FORM = "expected redis://[:PASSWORD@]HOST[:PORT][/DB], rediss://... or unix:///PATH"


def _parse_redis_url(v: Any) -> str:
    """A Redis URL; a reason never quotes it (it may hold a password)."""
    s = _parse_str(v).strip()
    if not s:
        return ""
    try:
        u = urlsplit(s)
        u.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(_REDIS_URL_FORM) from None
    if u.scheme == "unix":
        if not u.path:
            raise ValueError(_REDIS_URL_FORM)
    elif u.scheme in ("redis", "rediss"):
        if not u.hostname:
            raise ValueError(_REDIS_URL_FORM)
        if u.path not in ("", "/") and not u.path[1:].isdigit():
            raise ValueError("the database after HOST[:PORT]/ must be a number")
    else:
        raise ValueError(_REDIS_URL_FORM)
    return s


def _parse_instance(v: Any) -> str:
    s = _parse_str(v).strip()
    if len(s) > 128 or not re.fullmatch(r"[A-Za-z0-9._:\[\]-]*", s):
        raise ValueError("an instance name is up to 128 letters, digits and . _ : - [ ]")
    return s


def _parse_lock_ttl(v: Any) -> float:
    f = _parse_float(v)
    if not 0.1 <= f <= 3600:
        raise ValueError(f"must be between 0.1 and 3600 seconds, got {v!r}")
    return f


def _parse_expiry(v: Any) -> float:
    f = _parse_float(v)
    if not 1 <= f <= MAX_PRESIGN_EXPIRY:
        raise ValueError(f"must be between 1 and {MAX_PRESIGN_EXPIRY:.0f} seconds, got {v!r}")
    return f


_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_REGION = re.compile(r"^[A-Za-z0-9_-]*$")


def _parse_bucket(v: Any) -> str:
    s = _parse_str(v).strip()
    if s and not _BUCKET.match(s):
        raise ValueError(f"not a bucket name (letters, digits, '.', '-', '_'): {s[:64]!r}")
    return s


def _parse_region(v: Any) -> str:
    s = _parse_str(v).strip()
    if not _REGION.match(s):
        raise ValueError(f"not a region name: {s[:64]!r}")
    return s


def _parse_endpoint(v: Any) -> str:
    """``http(s)://host[:port]`` of an S3 API; credentials never go in the URL (never echoed)."""
    s = _parse_str(v).strip().rstrip("/")
    if not s:
        return ""
    scheme, sep, rest = s.partition("://")
    if "@" in rest.partition("/")[0]:
        raise ValueError("must not contain credentials; use s3_access_key and s3_secret_key")
    if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
        raise ValueError(f"expected http(s)://HOST[:PORT], got {s[:100]!r}")
    if "?" in rest or "#" in rest:
        raise ValueError("expected http(s)://HOST[:PORT] without a query")
    return s


def _parse_prefix(v: Any) -> str:
    """A key prefix inside the bucket: stored without leading and with one trailing ``/``."""
    s = _parse_str(v).strip().strip("/")
    if not s:
        return ""
    if "\\" in s or "\x00" in s or any(p in ("", ".", "..") for p in s.split("/")):
        raise ValueError(f"must be slash-separated names without '.', '..' or '//', got {s!r}")
    return s + "/"


def _parse_secret(v: Any) -> str:
    s = _parse_str(v).strip()
    if any(c.isspace() for c in s):
        raise ValueError("contains white space")
    return s


def _parse_ca_file(v: Any) -> Path:
    p = _parse_path(v)
    if not p.is_file():
        raise ValueError(f"no such file: {p}")
    return p


def _parse_git_config(v: Any) -> Path:
    p = _parse_path(v)
    # Checked now: git would otherwise fail on every direct fetch with its own words.
    if not p.is_file():
        raise ValueError(f"no such file: {p}")
    return p


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


def _parse_upstream(v: Any) -> tuple[str, tuple[Entry, ...]]:
    s = _parse_str(v).strip()
    try:
        entries = tuple(parse_goproxy(s))
    except ConfigError as e:
        # parse_goproxy names the key itself; _apply adds the key and the origin.
        raise ValueError(str(e).removeprefix("invalid setting upstream: ")) from None
    return s, entries


def _parse_alerts(v: Any) -> tuple[SinkConfig, ...]:
    """``[[alerts]]`` tables (TOML), or the same as a JSON array (environment)."""
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise ValueError("expected a JSON array of sink tables") from None
    try:
        return tuple(parse_sinks(v))
    except ConfigError as e:
        raise ValueError(str(e)) from None


def _parse_modules(v: Any) -> tuple[str, ...]:
    mods = _parse_str_list(v)
    for m in mods:
        try:
            check_path(m)
        except GomirrorError as e:
            raise ValueError(f"invalid module path {m!r}: {e}") from None
    return mods


def _parse_str_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        items = [p.strip() for p in v.split(";")]
    elif isinstance(v, list | tuple):
        items = [_parse_str(p).strip() for p in v]
    else:
        raise ValueError("expected a string or a list of strings")
    return tuple(p for p in items if p)


def _parse_sumdb(v: Any) -> tuple[SumdbSpec, ...]:
    values = _parse_str_list(v)
    if not values:
        raise ValueError("no checksum database given; use 'off' to disable verification")
    specs: list[SumdbSpec] = []
    for value in values:
        try:
            spec = parse_sumdb_spec(value)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if spec is None:
            if len(values) > 1:
                raise ValueError("'off' cannot be combined with databases")
            return ()
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("a checksum database is named twice")
    return tuple(specs)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = ("root", "host", "path")
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
_SCP_LIKE = re.compile(r"^[\w.+-]+@[\w.-]+:")


def _check_glob(pattern: str) -> None:
    """Reject what Go's path.Match would call a bad pattern (it would then never match)."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise ValueError(f"pattern {pattern!r} ends in a backslash")
            i += 2
        elif c == "[":
            start = i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1
            end = pattern.find("]", start)
            if end <= start:
                raise ValueError(f"pattern {pattern!r} has an unclosed or empty [")
            i = end + 1
        else:
            i += 1


def _rule(pattern: str, value: str) -> RepoRule:
    pattern = pattern.strip().rstrip("/")
    if not pattern or pattern.startswith("/") or any(c in pattern for c in ", \t"):
        raise ValueError(f"pattern {pattern!r} must be one module path glob (no commas or spaces)")
    _check_glob(pattern)
    fields = value.split()
    if len(fields) not in (1, 2):
        raise ValueError(f"rule for {pattern!r}: expected URL-TEMPLATE [SUBDIR]")
    url, subdir = fields[0], (fields[1] if len(fields) == 2 else "")
    for name in _PLACEHOLDER.findall(url):
        if name not in _PLACEHOLDERS:
            raise ValueError(f"rule for {pattern!r}: unknown placeholder {{{name}}} in the URL")
    scheme, sep, _ = url.partition("://")
    if not (sep and scheme.lower() in _GIT_SCHEMES) and not _SCP_LIKE.match(url):
        raise ValueError(
            f"rule for {pattern!r}: URL must use {', '.join(_GIT_SCHEMES)} or be user@host:path"
        )
    if subdir.startswith("/") or ".." in subdir.split("/"):
        raise ValueError(f"rule for {pattern!r}: subdirectory must be relative")
    return RepoRule(pattern, url, subdir)


def _parse_rules(v: Any) -> tuple[RepoRule, ...]:
    """Repository rules: a TOML table ``{pattern = url-template}`` or ``pat=url;pat=url``."""
    if isinstance(v, Mapping):
        return tuple(_rule(str(k), _parse_str(t)) for k, t in v.items())
    rules: list[RepoRule] = []
    for item in _parse_str_list(v):
        pat, sep, tmpl = item.partition("=")
        if not sep or not pat.strip() or not tmpl.strip():
            raise ValueError(f"expected PATTERN=URL-TEMPLATE, got {item!r}")
        rules.append(_rule(pat, tmpl))
    return tuple(rules)


_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]+)?$")


def _parse_tokens(v: Any) -> Mapping[str, str]:
    """``HOST=TOKEN`` entries (a TOML table, a list, or ``;``-separated): never echoed back."""
    pairs: list[tuple[str, str]] = []
    if isinstance(v, Mapping):
        for host, token in v.items():
            if not isinstance(token, str):
                raise ValueError(f"token for {host!r} must be a string")
            pairs.append((str(host).strip(), token.strip()))
    else:
        for n, item in enumerate(_parse_str_list(v), 1):
            host, sep, token = item.partition("=")
            if not sep:
                raise ValueError(f"entry {n} is not HOST=TOKEN")
            pairs.append((host.strip(), token.strip()))
    tokens: dict[str, str] = {}
    for host, token in pairs:
        if not _HOST.match(host):
            raise ValueError(f"entry for {host[:64]!r} does not name a host (HOST[:PORT])")
        if not token or any(c.isspace() for c in token):
            raise ValueError(f"token for {host} is empty or contains white space")
        if host.lower() in tokens:
            raise ValueError(f"host {host} is given twice")
        tokens[host.lower()] = token
    return MappingProxyType(tokens)


def _no_tokens() -> Mapping[str, str]:
    return MappingProxyType({})


def _default_entries() -> tuple[Entry, ...]:
    return tuple(parse_goproxy(DEFAULT_UPSTREAM))


def _default_sumdb() -> tuple[SumdbSpec, ...]:
    return _parse_sumdb(DEFAULT_SUMDB)


# --- the configuration tree ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSection:
    """How this process serves: address, processes, logging."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    workers: int = 1
    log_level: str = "info"
    access_log: bool = True
    idle_timeout: float = 15.0
    max_connections: int = 4096
    fast_path: bool = True
    instance: str = ""  # empty: hostname:port (see app.instance_name)
    # The admin endpoints' bearer token: left out of repr, never logged or shown.
    admin_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class CacheSection:
    """Where the module cache lives and how long mutable answers stay fresh."""

    cache_dir: Path = field(default_factory=default_cache_dir)
    mutable_ttl: float = 60.0
    negative_ttl: float = 30.0
    last_use_flush: float = 60.0
    predict: str = "mod+info+zip"
    predict_depth: int = 5
    predict_concurrency: int = 16
    predict_per_minute: int = 6000


@dataclass(frozen=True, slots=True)
class StorageSection:
    """Where module files are stored (the disk cache, or an S3-compatible bucket), redirects, Redis."""

    storage: str = "disk"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_region: str = ""
    s3_addressing: str = "virtual"
    s3_signature: str = "v4"
    # Credentials: left out of repr, so a printed config never shows them.
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    s3_tls_verify: bool = True
    s3_ca_file: Path | None = None
    s3_part_size: int = 8 << 20
    s3_read_cache_bytes: int = 32 << 20
    redirect_min_size: int = 0
    redirect_expiry: float = 900.0
    # May hold a password: left out of repr; logs show coordination.redis.safe_url.
    redis_url: str = field(default="", repr=False)
    redis_lock_ttl: float = 10.0

    def __post_init__(self) -> None:
        # Rules across keys: checked once all sources are merged.
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError('invalid setting s3_bucket: required when storage = "s3"')
        if bool(self.s3_access_key) != bool(self.s3_secret_key):
            raise ConfigError(
                "invalid setting s3_secret_key: s3_access_key and s3_secret_key go together"
                " (give both, or neither to use the environment's credential chain)"
            )


@dataclass(frozen=True, slots=True)
class UpstreamSection:
    """The upstream list (raw text for display, parsed entries to use) and its timeouts."""

    upstream: str = DEFAULT_UPSTREAM
    entries: tuple[Entry, ...] = field(default_factory=_default_entries)
    policy: str = "go"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    retry_after_max: float = 2.0
    timeout_park: float = 30.0
    down_after: int = 3
    slow_threshold: float = 0.5
    untrusted_for: float = 3600.0
    hedge_delay_min: float = 0.05
    hedge_delay_max: float = 2.0
    hedge_max_parallel: int = 2
    min_transfer_rate: float = 10240.0
    rate_grace: float = 10.0
    fetch_deadline: float = 1800.0
    small_fetch_deadline: float = 60.0
    follow_redirects: str = "safe"
    bad_answer_ttl: float = 10.0


@dataclass(frozen=True, slots=True)
class SumdbSection:
    """Checksum databases (empty: verification off; the first verifies) and exempt patterns."""

    sumdb: tuple[SumdbSpec, ...] = field(default_factory=_default_sumdb)
    nosumdb: str = ""


@dataclass(frozen=True, slots=True)
class MonitorSection:
    """The consistency monitor, readiness and alerts."""

    monitor: bool = True
    monitor_interval: float = 300.0
    watch: tuple[str, ...] = ()
    watch_top: int = 50
    probe_zips: bool = False
    lag_alert_after: float = 600.0
    alerts: tuple[SinkConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class DirectSection:
    """Direct mode (git): private patterns, repository rules, credentials, limits."""

    private: str = ""
    git_timeout: float = 300.0
    git_concurrency: int = 4
    direct_rules: tuple[RepoRule, ...] = ()
    goget_insecure: str = ""
    git_config: Path | None = None
    # Host -> token. Left out of repr (secrets never printed) and of the hash
    # (a mapping is unhashable; equal configs still hash equal).
    git_tokens: Mapping[str, str] = field(default_factory=_no_tokens, repr=False, hash=False)


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of a gomirror process, one section per field; see ``SETTINGS``."""

    server: ServerSection = field(default_factory=ServerSection)
    cache: CacheSection = field(default_factory=CacheSection)
    storage: StorageSection = field(default_factory=StorageSection)
    upstream: UpstreamSection = field(default_factory=UpstreamSection)
    sumdb: SumdbSection = field(default_factory=SumdbSection)
    direct: DirectSection = field(default_factory=DirectSection)
    monitor: MonitorSection = field(default_factory=MonitorSection)


def _sections() -> Mapping[str, type[Any]]:
    hints = typing.get_type_hints(Config)
    return MappingProxyType({f.name: hints[f.name] for f in dataclasses.fields(Config)})


SECTIONS: Mapping[str, type[Any]] = _sections()
"""Section name -> its dataclass, in ``Config`` order (also the README's order)."""


# --- the settings table ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flag:
    """A setting's command-line flag: short help, the commands it applies to (None: all)."""

    help: str
    commands: tuple[str, ...] | None = None
    repeatable: bool = False
    metavar: str | None = None

    def applies_to(self, command: str | None) -> bool:
        return self.commands is None or (command is not None and command in self.commands)


@dataclass(frozen=True, slots=True)
class Setting:
    """One configuration key: section, parser, target field(s), help, flag, shown default."""

    key: str
    section: str
    parse: Callable[[Any], Any]
    help: str
    fields: tuple[str, ...] = ()
    flag: Flag | None = None
    shown_default: str | None = None  # README text when the field default cannot say it

    @property
    def env(self) -> str:
        return "GOMIRROR_" + self.key.upper()

    @property
    def option(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def targets(self) -> tuple[str, ...]:
        return self.fields or (self.key,)


SETTINGS: tuple[Setting, ...] = (
    # server
    Setting(
        "listen",
        "server",
        _parse_listen,
        "address to serve on, HOST:PORT",
        fields=("listen_host", "listen_port"),
        flag=Flag("HOST:PORT to serve on (default 127.0.0.1:8080)", SERVE, metavar="HOST:PORT"),
        shown_default="`127.0.0.1:8080`",
    ),
    Setting(
        "workers",
        "server",
        _parse_int,
        "server processes sharing the listening port and the cache",
        flag=Flag("server processes sharing the port", SERVE, metavar="N"),
    ),
    Setting(
        "idle_timeout",
        "server",
        _parse_float,
        "seconds a client connection may stay open without completing a request (also the header timeout)",
    ),
    Setting(
        "max_connections",
        "server",
        _parse_int,
        "client connections per process; more are answered `503` with `Retry-After: 1` at once",
    ),
    Setting(
        "log_level",
        "server",
        _parse_choice(LOG_LEVELS),
        "log level",
        flag=Flag("debug | info | warning | error", metavar="LEVEL"),
    ),
    Setting("access_log", "server", _parse_bool, "write one log line per request"),
    Setting(
        "fast_path",
        "server",
        _parse_bool,
        "answer warm cache hits (`.info`, `.mod`, `.zip`, fresh `list`/`@latest`) from a lean HTTP/1.1 path below aiohttp, with the same bytes; every other request goes through the full server",
    ),
    Setting(
        "instance",
        "server",
        _parse_instance,
        "this instance's name: the `instance` label on every `/metrics` series and its name in shared state, so the metrics of several instances aggregate; empty: `HOSTNAME:PORT` when the instance shares storage with others (`s3` or `redis_url`), else no label (Prometheus adds its own)",
    ),
    Setting(
        "admin_token",
        "server",
        _parse_secret,
        "bearer token for the admin endpoints (`POST /-/admin/purge`); empty: they answer 404; never logged or shown",
    ),
    # cache
    Setting(
        "cache_dir",
        "cache",
        _parse_path,
        "disk cache directory",
        flag=Flag("cache directory (default: the user cache dir)", metavar="DIR"),
        shown_default="`~/.cache/gomirror` (XDG_CACHE_HOME)",
    ),
    Setting(
        "mutable_ttl",
        "cache",
        _parse_float,
        "seconds `list`, `@latest` and query answers stay fresh",
    ),
    Setting("negative_ttl", "cache", _parse_float, "seconds a not-found answer is remembered"),
    Setting(
        "last_use_flush",
        "cache",
        _parse_float,
        "seconds between two writes of the module versions read meanwhile (one small object under `_gomirror/lastuse/`), which `cache gc` uses as last access; `0`: only when the process stops",
    ),
    Setting(
        "predict",
        "cache",
        _parse_choice(PREDICT_MODES),
        "fetch in the background what the go command asks next: `mod`: the `.mod` of the requirements of each `.mod` served; `mod+info`: and their `.info`; `mod+info+zip`: and the `.zip` of each version whose `.info` was asked; `off`: nothing (private modules are never predicted)",
    ),
    Setting(
        "predict_depth",
        "cache",
        _parse_int,
        "levels of requirements predicted below a `.mod` a client asked for",
    ),
    Setting(
        "predict_concurrency",
        "cache",
        _parse_int,
        "predicted fetches run at once per process (a quarter of them kept for `.mod` files)",
    ),
    Setting(
        "predict_per_minute",
        "cache",
        _parse_int,
        "predicted fetches started per minute per process, at most; more are skipped",
    ),
    # storage
    Setting(
        "storage",
        "storage",
        _parse_choice(STORAGE_KINDS),
        "where module files are stored: `disk` (under `cache_dir`) or `s3` (an S3-compatible bucket; `cache_dir` then holds only temp files and local state)",
    ),
    Setting(
        "s3_endpoint",
        "storage",
        _parse_endpoint,
        "`http(s)://HOST[:PORT]` of the S3 API (MinIO, Ceph RGW, OSS, COS, OBS); empty: AWS S3 for `s3_region`",
    ),
    Setting("s3_bucket", "storage", _parse_bucket, "bucket holding the cache (required for `s3`)"),
    Setting(
        "s3_prefix",
        "storage",
        _parse_prefix,
        "key prefix inside the bucket, so several caches can share one bucket",
    ),
    Setting(
        "s3_region",
        "storage",
        _parse_region,
        "region the requests are signed for; empty: the AWS environment/profile's, else `us-east-1`",
    ),
    Setting(
        "s3_addressing",
        "storage",
        _parse_choice(S3_ADDRESSING),
        "`virtual`: `https://BUCKET.HOST/KEY` (AWS, OSS, COS, OBS); `path`: `https://HOST/BUCKET/KEY` (MinIO, Ceph RGW, an IP address)",
    ),
    Setting(
        "s3_signature",
        "storage",
        _parse_choice(S3_SIGNATURES),
        "request signing: `v4` (AWS Signature Version 4, every current provider); `v2` for old OSS/OBS/Ceph deployments",
    ),
    Setting(
        "s3_access_key",
        "storage",
        _parse_secret,
        "access key ID; empty: the usual chain (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE` and `~/.aws`, instance roles); never logged",
    ),
    Setting(
        "s3_secret_key",
        "storage",
        _parse_secret,
        "secret access key, given with `s3_access_key`; never logged or shown",
    ),
    Setting(
        "s3_tls_verify",
        "storage",
        _parse_bool,
        "check the S3 endpoint's TLS certificate",
    ),
    Setting(
        "s3_ca_file",
        "storage",
        _parse_ca_file,
        "PEM file of CA certificates trusted for the S3 endpoint (a private CA); empty: the system's",
    ),
    Setting(
        "s3_part_size",
        "storage",
        _parse_part_size,
        "bytes per part of a multipart upload: larger zips are uploaded in parts, two at a time, each sent straight from the temp file; `5MiB` to `5GiB`",
        shown_default="`8MiB`",
    ),
    Setting(
        "s3_read_cache_bytes",
        "storage",
        _parse_size,
        "memory for copies of small immutable objects (`.info`, `.mod`, checksum-database tiles) read from S3 (`0`: none)",
        shown_default="`32MiB`",
    ),
    Setting(
        "redirect_min_size",
        "storage",
        _parse_size,
        "zips of at least this many bytes are answered with a `302` to a presigned URL of the object, when storage can make one (`s3`), so the bytes flow from the object store; `0`: never",
    ),
    Setting(
        "redirect_expiry",
        "storage",
        _parse_expiry,
        "seconds a presigned redirect URL stays valid (at most 7 days)",
    ),
    Setting(
        "redis_url",
        "storage",
        _parse_redis_url,
        "Redis shared by several instances for locks, single-flight and short-lived shared state: `redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` (TLS) or `unix:///PATH`; empty: coordinate within this machine only; the password is never logged or shown",
    ),
    Setting(
        "redis_lock_ttl",
        "storage",
        _parse_lock_ttl,
        "seconds a Redis lock outlives its holder's last renewal (renewed every third of it while the fetch runs): a crashed instance holds up a file at most this long",
    ),
    # upstream
    Setting(
        "upstream",
        "upstream",
        _parse_upstream,
        "upstream list in GOPROXY syntax (`,` and `|`, `off`, `direct`)",
        fields=("upstream", "entries"),
        flag=Flag("upstream list in GOPROXY syntax", metavar="LIST"),
    ),
    Setting(
        "policy",
        "upstream",
        _parse_choice(POLICIES),
        "`go`: Go's list semantics; `failover`: also fall through on 5xx, 429, timeouts and refused connections after a `,`; `fastest`: `failover` in order of mirror health; `hedged`: `fastest`, and start the next mirror when the first is slow to answer",
        flag=Flag("go | failover | fastest | hedged", metavar="POLICY"),
    ),
    Setting(
        "connect_timeout", "upstream", _parse_float, "seconds to wait for an upstream connection"
    ),
    Setting(
        "read_timeout",
        "upstream",
        _parse_float,
        "seconds an upstream may stay silent while sending",
    ),
    Setting(
        "retry_after_max",
        "upstream",
        _parse_float,
        "longest `Retry-After` (s) on a 429 that is waited out once; longer ones skip the upstream until then",
    ),
    Setting(
        "timeout_park",
        "upstream",
        _parse_float,
        "seconds a mirror that timed out (or failed `down_after` times in a row) is skipped before one probe request is let through; the wait doubles while it stays down, up to 10×",
    ),
    Setting(
        "down_after",
        "upstream",
        _parse_int,
        "failures in a row (refused, reset, 5xx) after which a mirror counts as down",
    ),
    Setting(
        "slow_threshold",
        "upstream",
        _parse_float,
        "seconds of median time to first byte above which a mirror counts as slow",
    ),
    Setting(
        "untrusted_for",
        "upstream",
        _parse_float,
        "seconds a mirror that served content the checksum database contradicts is asked only when no trusted mirror answers",
    ),
    Setting(
        "hedge_delay_min",
        "upstream",
        _parse_float,
        "`hedged`: the shortest wait (s) for a mirror's first byte before the next mirror is asked too",
    ),
    Setting(
        "hedge_delay_max",
        "upstream",
        _parse_float,
        "`hedged`: the longest such wait (s); in between, the mirror's own recent p90 is used",
    ),
    Setting(
        "hedge_max_parallel",
        "upstream",
        _parse_int,
        "`hedged`: mirrors asked at once for one request, at most",
    ),
    Setting(
        "min_transfer_rate",
        "upstream",
        _parse_float,
        "bytes/s an upstream answer must average over the last `rate_grace` seconds once it has run that long; slower is a timeout (`0`: no minimum)",
    ),
    Setting(
        "rate_grace",
        "upstream",
        _parse_float,
        "seconds before `min_transfer_rate` applies, and the window it is averaged over",
    ),
    Setting(
        "fetch_deadline",
        "upstream",
        _parse_float,
        "seconds one zip download may take from request to last byte, redirects included (1800 s lets a 500 MB zip through at 280 KB/s); longer is a timeout (`0`: none)",
    ),
    Setting(
        "small_fetch_deadline",
        "upstream",
        _parse_float,
        "seconds one `.info`, `.mod`, `list` or `@latest` answer may take in all (`0`: none)",
    ),
    Setting(
        "follow_redirects",
        "upstream",
        _parse_choice(REDIRECT_MODES),
        "redirects from a mirror that are followed (at most 3 in a row): `safe`: to any host, but never from https to http, and never to a loopback, link-local or private address (IP or name) unless the mirror itself is on one; `same-host`: only to the mirror's own scheme, host and port; `none`: never",
    ),
    Setting(
        "bad_answer_ttl",
        "upstream",
        _parse_float,
        "seconds an answer no upstream could serve correctly (invalid content, checksum mismatch) is remembered and repeated without asking again (`0`: not remembered)",
    ),
    # sumdb
    Setting(
        "sumdb",
        "sumdb",
        _parse_sumdb,
        "checksum databases in GOSUMDB syntax (`name+key [URL]`, `sum.golang.org`, or `off`); the first verifies downloads, all are served under `/sumdb/`; `;`-separated in env",
        flag=Flag(
            "checksum database in GOSUMDB syntax, repeatable; 'off' disables verification",
            repeatable=True,
            metavar="SPEC",
        ),
        shown_default="`sum.golang.org`",
    ),
    Setting(
        "nosumdb",
        "sumdb",
        _parse_str,
        "module path patterns (GONOSUMDB syntax) never looked up in the checksum database",
        flag=Flag(
            "module patterns never checked against the checksum database", metavar="PATTERNS"
        ),
    ),
    # direct
    Setting(
        "private",
        "direct",
        _parse_str,
        "module path patterns (GOPRIVATE syntax) fetched only with `direct`, never from mirrors or the checksum database",
        flag=Flag(
            "module patterns fetched only with direct (GOPRIVATE syntax)", metavar="PATTERNS"
        ),
    ),
    Setting(
        "git_timeout", "direct", _parse_float, "seconds one git command may run in direct mode"
    ),
    Setting(
        "git_concurrency",
        "direct",
        _parse_int,
        "git processes run at once in direct mode, shared round robin between repositories; one repository gets at most all but one of them",
    ),
    Setting(
        "direct_rules",
        "direct",
        _parse_rules,
        "repository rules for direct mode: `PATTERN=URL-TEMPLATE [SUBDIR]`; the elements the pattern matches are the repository root, and the template may use `{root}` (that root), `{host}` (its first element) and `{path}` (the rest); `;`-separated in env, a table in TOML",
    ),
    Setting(
        "goget_insecure",
        "direct",
        _parse_str,
        "module path patterns whose `?go-get=1` discovery may use plain http (GOINSECURE syntax)",
    ),
    Setting(
        "git_config",
        "direct",
        _parse_git_config,
        "git config file for direct mode (`url.<base>.insteadOf`, `core.sshCommand`, credential helpers); the user's own git config is never read",
    ),
    Setting(
        "git_tokens",
        "direct",
        _parse_tokens,
        "`HOST=TOKEN` (or `HOST=USER:SECRET`) credentials for https git hosts, `;`-separated in env, a table in TOML; sent to git through its environment, never logged",
    ),  # monitor
    Setting(
        "monitor",
        "monitor",
        _parse_bool,
        "run the consistency monitor: probe every mirror, compare them with each other and the checksum database",
    ),
    Setting("monitor_interval", "monitor", _parse_float, "seconds between two probe rounds"),
    Setting(
        "watch",
        "monitor",
        _parse_modules,
        "modules the monitor always probes (`;`-separated in env), besides the most requested ones",
    ),
    Setting(
        "watch_top",
        "monitor",
        _parse_int,
        "how many of the most requested modules the monitor also probes",
    ),
    Setting(
        "probe_zips",
        "monitor",
        _parse_bool,
        "also download and check the zips of the newest versions (costs mirror bandwidth)",
    ),
    Setting(
        "lag_alert_after",
        "monitor",
        _parse_float,
        "seconds a mirror may lack a version other mirrors have before an alert fires",
    ),
    Setting(
        "alerts",
        "monitor",
        _parse_alerts,
        "alert sinks: `[[alerts]]` tables with `type` (`webhook`, `dingtalk`, `wecom`, `feishu`, `slack`, `log`), `url`, optional `secret`, `min_severity`, `kinds`, `max_per_minute`; a JSON array in env",
        shown_default="(none)",
    ),
)
BY_KEY: Mapping[str, Setting] = MappingProxyType({s.key: s for s in SETTINGS})


def _apply(values: dict[str, dict[str, Any]], setting: Setting, raw: Any, origin: str) -> None:
    try:
        parsed = setting.parse(raw)
    except ValueError as e:
        raise ConfigError(f"invalid setting {setting.key} (from {origin}): {e}") from None
    section = values.setdefault(setting.section, {})
    if len(setting.targets) == 1:
        section[setting.targets[0]] = parsed
    else:
        section.update(zip(setting.targets, parsed, strict=True))


def _toml_items(data: Mapping[str, Any], origin: str) -> list[tuple[Setting, Any]]:
    """The file's (setting, raw value) pairs, from sections and (compat) the top level."""
    items: dict[str, tuple[Setting, Any, str]] = {}

    def add(setting: Setting, raw: Any, where: str) -> None:
        if setting.key in items:
            raise ConfigError(
                f"setting {setting.key} is given twice in {origin}"
                f" ({items[setting.key][2]} and {where})"
            )
        items[setting.key] = (setting, raw, where)

    for name, raw in data.items():
        # A table named like a section is that section; `upstream = "..."` at the
        # top level is the key (no key that shares a section's name takes a table).
        if name in SECTIONS and (isinstance(raw, Mapping) or name not in BY_KEY):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"[{name}] in {origin} must be a table of settings")
            for key, value in raw.items():
                setting = BY_KEY.get(key)
                if setting is None:
                    raise ConfigError(f"unknown setting {name}.{key} in {origin}")
                if setting.section != name:
                    raise ConfigError(
                        f"setting {key} belongs in section [{setting.section}], not [{name}]"
                        f" (in {origin})"
                    )
                add(setting, value, f"[{name}]")
            continue
        setting = BY_KEY.get(name)
        if setting is None:
            raise ConfigError(f"unknown setting {name} in {origin}")
        add(setting, raw, "the top level")
    return [(s, raw) for s, raw, _ in items.values()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build a Config; ``overrides`` are command-line values keyed like ``SETTINGS`` (None: unset)."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {}
    if config_file is None and env.get("GOMIRROR_CONFIG"):
        config_file = Path(env["GOMIRROR_CONFIG"])
    if config_file is not None:
        for setting, raw in _toml_items(_read_toml(config_file), str(config_file)):
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
        flagged = BY_KEY.get(key)
        if flagged is None:
            raise ConfigError(f"unknown setting {key}")
        _apply(values, flagged, raw, flagged.option)
    return Config(**{name: cls(**values.get(name, {})) for name, cls in SECTIONS.items()})
