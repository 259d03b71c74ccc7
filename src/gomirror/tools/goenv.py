"""goenv reads the go command's own settings and writes them with ``go env -w``.

:func:`read_goenv` asks the real ``go`` (``go env -json NAME...``) when it is
on PATH, so the answer includes the GOENV file and ``$GOROOT/go.env`` exactly
as the go command sees them; without ``go`` it falls back to the environment,
then the GOENV file (``$XDG_CONFIG_HOME/go/env`` by default), then Go's
defaults. Variables the go command does not report (``HTTP(S)_PROXY``,
``NO_PROXY``, the non-existent ``GONOSUMCHECK``) always come from the
environment. :func:`parse_proxy_list` splits GOPROXY with the go command's
rules (cmd/go/internal/modfetch/proxy.go) and keeps what it ignores, so
checks can explain it. :func:`http_proxy_for` is the go command's HTTP proxy
choice for a URL (x/net/http/httpproxy: loopback and ``localhost`` are never
proxied). :func:`go_env_w` runs ``go env -w`` and raises
:class:`GoEnvError` with the go command's message when it refuses.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

GO_VARS: tuple[str, ...] = (
    "GOPROXY",
    "GOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOINSECURE",
    "GOFLAGS",
    "GOTOOLCHAIN",
    "GOAUTH",
    "GOMODCACHE",
    "GOVCS",
    "GOENV",
    "GOROOT",
    "GOPATH",
    "GOVERSION",
)
"""The go command variables doctor reads (``go env -json`` answers each)."""

ENV_ONLY: tuple[str, ...] = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "GONOSUMCHECK",
)
"""Variables the go command does not report but that matter (read from the environment)."""

DEFAULTS: Mapping[str, str] = {
    "GOPROXY": "https://proxy.golang.org,direct",
    "GOSUMDB": "sum.golang.org",
    "GOTOOLCHAIN": "auto",
    "GOAUTH": "netrc",
}
"""Go's defaults ($GOROOT/go.env and cmd/go/internal/cfg), used only without a go command."""

GO_ENV_TIMEOUT = 60.0

Source = Literal["go env -json", "environment"]


class GoEnvError(Exception):
    """The go command could not be run or refused a setting; the message is its own."""


@dataclass(frozen=True, slots=True)
class GoEnv:
    """The go command's effective settings and where they were read from."""

    values: Mapping[str, str]
    source: Source
    go: str | None = None
    env_file: dict[str, str] = field(default_factory=dict)  # the GOENV file, as written
    environ: frozenset[str] = frozenset()  # variables set (non-empty) in the environment

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def explicit(self, name: str) -> bool:
        """True when ``name`` is set by the user, not defaulted (``go env`` shows defaults)."""
        return name in self.environ or bool(self.env_file.get(name))

    @property
    def goproxy(self) -> str:
        return self.get("GOPROXY")

    @property
    def noproxy(self) -> str:
        """GONOPROXY as the go command applies it (defaults to GOPRIVATE)."""
        return self.get("GONOPROXY") or self.get("GOPRIVATE")

    @property
    def nosumdb(self) -> str:
        """GONOSUMDB as the go command applies it (defaults to GOPRIVATE)."""
        return self.get("GONOSUMDB") or self.get("GOPRIVATE")


def find_go(env: Mapping[str, str] | None = None) -> str | None:
    """The go command on PATH (of ``env``), or None."""
    path = (env if env is not None else os.environ).get("PATH")
    return shutil.which("go", path=path)


def _env_only(env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ENV_ONLY:
        # The go command's HTTP client takes the upper-case name first, then the lower-case one.
        value = env.get(name) or env.get(name.lower()) or ""
        out[name] = value
    return out


def run_go_env_json(go: str, env: Mapping[str, str], names: Sequence[str] = ()) -> dict[str, str]:
    """Run ``go env -json [names]`` and return its object; raises GoEnvError on failure."""
    try:
        proc = subprocess.run(
            [go, "env", "-json", *names],
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=GO_ENV_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise GoEnvError(f"running {go} env -json: {e}") from None
    if proc.returncode != 0:
        raise GoEnvError(proc.stderr.strip() or f"go env -json exited {proc.returncode}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise GoEnvError("go env -json printed something that is not JSON") from None
    if not isinstance(data, dict):
        raise GoEnvError("go env -json printed something that is not an object")
    return {str(k): str(v) for k, v in data.items()}


def goenv_file_path(env: Mapping[str, str]) -> Path | None:
    """The GOENV file the go command would use, or None for ``GOENV=off``/no config dir."""
    value = env.get("GOENV")
    if value == "off":
        return None
    if value:
        return Path(value)
    base = env.get("XDG_CONFIG_HOME") or (
        str(Path(env["HOME"]) / ".config") if env.get("HOME") else ""
    )
    return Path(base) / "go" / "env" if base else None


def read_env_file(path: Path | None) -> dict[str, str]:
    """Parse a GOENV file (``NAME=VALUE`` lines); a missing file is empty."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() and not name.lstrip().startswith("#"):
            out[name.strip()] = value
    return out


def read_goenv(env: Mapping[str, str] | None = None, *, go: str | None = None) -> GoEnv:
    """Read the go command's settings (see the module docstring).

    ``go`` names the go binary; by default it is looked up on PATH. Raises
    GoEnvError when ``go`` exists but ``go env`` fails.
    """
    env = dict(os.environ if env is None else env)
    go = go or find_go(env)
    env_file = read_env_file(goenv_file_path(env))
    environ = frozenset(k for k in (*GO_VARS, *ENV_ONLY) if env.get(k))
    if go is not None:
        values = run_go_env_json(go, env, GO_VARS)
        values.update(_env_only(env))
        return GoEnv(values, "go env -json", go, env_file, environ)
    values = {}
    for name in GO_VARS:
        # An empty environment value means "use the default", as in the go command.
        values[name] = env.get(name) or env_file.get(name) or DEFAULTS.get(name, "")
    values.update(_env_only(env))
    return GoEnv(values, "environment", None, env_file, environ)


# --------------------------------------------------------------------------- GOPROXY


@dataclass(frozen=True, slots=True)
class ProxyEntry:
    """One GOPROXY element as the go command sees it."""

    raw: str  # as written (trimmed)
    url: str  # the URL the go command uses (``https://`` added), or the keyword
    sep: str  # the separator written after it: ``,``, ``|`` or ``""`` at the end
    ignored: bool = False  # after ``direct``/``off``: the go command never reaches it

    @property
    def is_keyword(self) -> bool:
        return self.url in ("direct", "off")

    @property
    def is_url(self) -> bool:
        return not self.is_keyword

    @property
    def fallback_on_error(self) -> bool:
        return self.sep == "|"


def _implied_url(item: str) -> str:
    # Go adds https:// to entries with ".", ":" or "/" but no ":/" that are not absolute paths.
    if any(c in item for c in ".:/") and ":/" not in item and not item.startswith("/"):
        return "https://" + item
    return item


def parse_proxy_list(value: str) -> list[ProxyEntry]:
    """Split a GOPROXY value with the go command's rules; later entries after a keyword are kept
    but marked ``ignored``. An empty value is Go's default list."""
    if value == "":
        value = DEFAULTS["GOPROXY"]
    parts = re.split(r"([,|])", value)
    entries: list[ProxyEntry] = []
    ended = False
    for i in range(0, len(parts), 2):
        item = parts[i].strip()
        sep = parts[i + 1] if i + 1 < len(parts) else ""
        if not item:
            continue
        url = item if item in ("direct", "off") else _implied_url(item)
        entries.append(ProxyEntry(item, url, sep, ended))
        if item in ("direct", "off"):
            ended = True
    return entries


def proxy_list_error(entries: Sequence[ProxyEntry]) -> str | None:
    """The go command's error for a GOPROXY list, or None when it accepts it."""
    if not entries:
        return "GOPROXY list is not the empty string, but contains no entries"
    for e in entries:
        if e.is_keyword or e.ignored:
            continue
        u = urlsplit(e.url)
        if u.scheme not in ("https", "http", "file"):
            return f"invalid proxy URL scheme (must be https, http, file): {e.raw}"
        if u.scheme != "file" and not u.netloc:
            return f"proxy URL is missing a host: {e.raw}"
    return None


def format_proxy_list(entries: Sequence[ProxyEntry]) -> str:
    """Join entries back into a GOPROXY value (ignored entries dropped)."""
    live = [e for e in entries if not e.ignored]
    out = ""
    for i, e in enumerate(live):
        out += e.url
        if i < len(live) - 1:
            out += e.sep or ","
    return out


# --------------------------------------------------------------------------- HTTP proxies


def _host_port(url: str) -> tuple[str, int | None, str]:
    u = urlsplit(url)
    return (u.hostname or "").lower(), u.port, u.scheme


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (never proxied by the go command)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_proxy_matches(no_proxy: str, host: str, port: int | None) -> bool:
    for raw in no_proxy.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "*":
            return True
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            net = None
        if net is not None:
            try:
                if ipaddress.ip_address(host) in net:
                    return True
            except ValueError:
                pass
            continue
        name, _, want_port = item.rpartition(":") if re.search(r":\d+$", item) else (item, "", "")
        if want_port and port is not None and int(want_port) != port:
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name) or host == name[1:]:
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def http_proxy_for(url: str, values: Mapping[str, str]) -> str | None:
    """The HTTP proxy the go command would use for ``url``, or None (direct connection)."""
    host, port, scheme = _host_port(url)
    if scheme not in ("http", "https") or not host or is_loopback_host(host):
        return None
    proxy = values.get("HTTPS_PROXY") if scheme == "https" else values.get("HTTP_PROXY")
    if not proxy:
        return None
    if _no_proxy_matches(values.get("NO_PROXY", ""), host, port):
        return None
    return proxy if "://" in proxy else "http://" + proxy


# --------------------------------------------------------------------------- writing


def go_env_w_line(name: str, value: str) -> str:
    """The shell line ``go env -w NAME=VALUE``, quoted so ``|`` and spaces survive a shell."""
    return f"go env -w {shlex.quote(f'{name}={value}')}"


def go_env_u_line(name: str) -> str:
    return f"go env -u {name}"


def go_env_w(go: str, settings: Mapping[str, str], env: Mapping[str, str]) -> str:
    """Run ``go env -w`` for ``settings`` (empty values are unset with ``-u``); return stderr.

    Raises GoEnvError with the go command's message when it refuses (for
    example ``GOENV=off``, or an unknown variable).
    """
    to_set = [f"{k}={v}" for k, v in settings.items() if v != ""]
    to_unset = [k for k, v in settings.items() if v == ""]
    messages: list[str] = []
    for args in (["-w", *to_set] if to_set else None, ["-u", *to_unset] if to_unset else None):
        if args is None:
            continue
        try:
            proc = subprocess.run(
                [go, "env", *args],
                env=dict(env),
                capture_output=True,
                text=True,
                timeout=GO_ENV_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise GoEnvError(f"running go env {args[0]}: {e}") from None
        if proc.returncode != 0:
            raise GoEnvError(proc.stderr.strip() or f"go env {args[0]} exited {proc.returncode}")
        if proc.stderr.strip():
            messages.append(proc.stderr.strip())
        log.info("go env written", extra={"names": ",".join(sorted(settings))})
    return "\n".join(messages)


def diff_env(before: Mapping[str, str], after: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(name, before, after) for every variable whose value changed, sorted by name."""
    names = sorted(set(before) | set(after))
    return [
        (n, before.get(n, ""), after.get(n, ""))
        for n in names
        if before.get(n, "") != after.get(n, "")
    ]
