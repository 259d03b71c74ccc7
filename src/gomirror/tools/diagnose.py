"""diagnose checks the go command's module settings for syntax errors and the classic mistakes.

:func:`check_settings` takes a :class:`~gomirror.tools.goenv.GoEnv` (and,
when known, the project and the GOPROXY value doctor recommends after its
probes) and returns :class:`~gomirror.tools.findings.Finding` objects, each
with the exact fix line. The rules are the go command's own
(cmd/go/internal/modfetch/proxy.go, sumdb.go; protocol.md §1.6, §1.9, §4.8):

- modules matching GONOPROXY (default GOPRIVATE) are fetched direct through
  an implicit first ``noproxy`` entry, so GOPROXY needs no ``direct`` for
  them; what breaks is a private module GONOPROXY does not match, sent to a
  public mirror, and one GONOSUMDB does not match, looked up in the database;
- after ``,`` only 404/410 fall through, after ``|`` every error does;
- ``GOSUMDB=sum.golang.google.cn`` becomes an explicit URL that bypasses
  GOPROXY; ``GONOSUMCHECK`` does not exist; ``-insecure`` is gone and never
  disabled verification; GOINSECURE only affects direct fetches;
- the go command never proxies loopback addresses, so HTTP(S)_PROXY matters
  for a gomirror on another host of the private network.

:func:`recommend_goproxy` builds the corrected GOPROXY value: bad mirrors
dropped, slow ones moved last, ``|`` between mirrors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path

from gomirror.errors import ConfigError
from gomirror.module.paths import match_prefix_patterns
from gomirror.sumdb.verifier import parse_sumdb_spec
from gomirror.tools.findings import Finding, Severity
from gomirror.tools.goenv import (
    DEFAULTS,
    GoEnv,
    ProxyEntry,
    go_env_u_line,
    go_env_w_line,
    http_proxy_for,
    is_loopback_host,
    parse_proxy_list,
    proxy_list_error,
)
from gomirror.tools.hosts import (
    PUBLIC_GOPROXY,
    PUBLIC_HOSTS,
    is_private_network_host,
    is_public_mirror,
    looks_private,
    module_host,
)
from gomirror.tools.project import Project

PATTERN_VARS = ("GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GOINSECURE")
_BOOLEAN_LIKE = frozenset({"1", "0", "true", "false", "on", "off", "yes", "no"})
_TOOLCHAIN = re.compile(r"^(local|auto|path|go1(\.\d+)*(rc\d+|beta\d+)?(\+(auto|path))?)$")
_PUBLIC_SAMPLES = tuple(f"{h}/a/b/c" for h in sorted(PUBLIC_HOSTS))


def recommend_goproxy(value: str, drop: Collection[str] = (), demote: Collection[str] = ()) -> str:
    """GOPROXY with the ``drop`` URLs removed, ``demote`` URLs last, ``|`` between mirrors.

    The keyword that ends the list (``direct``/``off``) is kept with the
    separator written before it; entries the go command ignores are dropped.
    """
    live = [e for e in parse_proxy_list(value) if not e.ignored]
    urls = [e for e in live if e.is_url and e.url not in drop]
    urls = [e for e in urls if e.url not in demote] + [e for e in urls if e.url in demote]
    tail = next((e for e in live if e.is_keyword), None)
    out = "|".join(e.url for e in urls)
    if tail is not None:
        before = [e for e in live if e.is_url]
        sep = before[-1].sep if before else ","
        out = f"{out}{sep}{tail.url}" if out else tail.url
    return out or DEFAULTS["GOPROXY"]


def _patterns(value: str) -> list[str]:
    return [p for p in value.split(",") if p.strip()]


def _add_pattern(value: str, pattern: str) -> str:
    items = [p for p in _patterns(value) if p.strip() != "none"]
    if pattern not in items:
        items.append(pattern)
    return ",".join(items)


def _cover(value: str, host: str) -> str:
    """``value`` made to match ``host``: a parent-domain pattern becomes ``*.domain``, else add it."""
    items = [p for p in _patterns(value) if p.strip() != "none"]
    for i, p in enumerate(items):
        if host.endswith("." + p.strip()):
            items[i] = "*." + p.strip()
            return ",".join(items)
    return _add_pattern(value, host)


# --------------------------------------------------------------------------- GOPROXY


def _check_goproxy(env: GoEnv, recommended: str) -> list[Finding]:
    out: list[Finding] = []
    entries = parse_proxy_list(env.goproxy)
    fix = (go_env_w_line("GOPROXY", recommended),)
    err = proxy_list_error(entries)
    if err is not None:
        return [
            Finding(
                "goproxy-syntax",
                "error",
                f"GOPROXY is invalid: {err}",
                "Every module download fails with this message before any request is made.",
                (go_env_w_line("GOPROXY", PUBLIC_GOPROXY),),
                "GOPROXY",
            )
        ]
    live = [e for e in entries if not e.ignored]
    if live and live[0].url == "off":
        out.append(
            Finding(
                "goproxy-off",
                "error",
                "GOPROXY=off: every module download fails",
                "The go command answers 'module lookup disabled by GOPROXY=off' for every module "
                "that GONOPROXY/GOPRIVATE does not match. Only the module cache is used.",
                (go_env_w_line("GOPROXY", PUBLIC_GOPROXY),),
                "GOPROXY",
            )
        )
    ignored = [e for e in entries if e.ignored]
    if ignored:
        keyword = next(e.url for e in entries if e.is_keyword)
        out.append(
            Finding(
                "goproxy-ignored-entries",
                "warning",
                f"GOPROXY entries after {keyword} are never used: "
                + ", ".join(e.raw for e in ignored),
                f"The go command stops reading the list at {keyword!r}.",
                fix,
                "GOPROXY",
            )
        )
    out.extend(_check_schemes(live))
    mirrors = [e for e in live if e.is_url]
    commas = [e for e in mirrors[:-1] if e.sep == ","]
    if commas:
        names = ", ".join(e.url for e in commas)
        out.append(
            Finding(
                "goproxy-comma",
                "warning",
                f"GOPROXY uses ',' after {names}: when it is down the next mirror is never tried",
                "After ',' the go command moves on only for 404/410. A mirror that is down, "
                "times out or answers 5xx stops the download with its error. Use '|' between "
                "mirrors so any error falls through to the next one.",
                fix,
                "GOPROXY",
            )
        )
    return out


def _check_schemes(live: Iterable[ProxyEntry]) -> list[Finding]:
    out: list[Finding] = []
    for e in live:
        if e.is_keyword or "://" in e.raw or e.raw.startswith("/"):
            continue
        hostport = e.raw.split("/", 1)[0]
        host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
        if ":" in hostport or is_loopback_host(host) or re.fullmatch(r"[\d.]+", host):
            out.append(
                Finding(
                    "goproxy-no-scheme",
                    "warning",
                    f"GOPROXY entry {e.raw} has no scheme: the go command uses https://{e.raw}",
                    "A gomirror or other server speaking plain HTTP then fails with "
                    "'server gave HTTP response to HTTPS client'. Write the scheme.",
                    (go_env_w_line("GOPROXY", f"http://{e.raw}"),),
                    "GOPROXY",
                )
            )
    return out


# --------------------------------------------------------------------------- GOSUMDB


def _check_gosumdb(env: GoEnv) -> list[Finding]:
    value = env.get("GOSUMDB")
    fix = (go_env_w_line("GOSUMDB", "sum.golang.org"),)
    if value == "off":
        return [
            Finding(
                "gosumdb-off",
                "error",
                "GOSUMDB=off: downloads are not checked against the checksum database",
                "A mirror can serve altered code and the go command records its hash in go.sum "
                "as if it were right. Keep verification on; exempt only private modules with "
                "GONOSUMDB or GOPRIVATE.",
                fix,
                "GOSUMDB",
            )
        ]
    if value.strip() == "sum.golang.google.cn":
        return [
            Finding(
                "gosumdb-google-cn",
                "warning",
                "GOSUMDB=sum.golang.google.cn bypasses GOPROXY",
                "The go command rewrites it to 'sum.golang.org https://sum.golang.google.cn', an "
                "explicit URL: every lookup goes straight to sum.golang.google.cn instead of "
                "through the proxy's /sumdb/ route, and fails where that host is slow or "
                "unreachable. It is the same database as sum.golang.org; name that one and let "
                "the proxy carry it.",
                fix,
                "GOSUMDB",
            )
        ]
    try:
        spec = parse_sumdb_spec(value.strip() or "sum.golang.org")
    except ConfigError as e:
        return [
            Finding(
                "gosumdb-syntax",
                "error",
                f"GOSUMDB is invalid: {e}",
                "Every download that needs a checksum lookup fails with this message.",
                fix,
                "GOSUMDB",
            )
        ]
    if spec is not None and spec.url is not None:
        return [
            Finding(
                "gosumdb-explicit-url",
                "info",
                f"GOSUMDB names an explicit URL ({spec.url}): GOPROXY is not used for lookups",
                "With an explicit URL the go command never asks proxies for /sumdb/.",
                (),
                "GOSUMDB",
            )
        ]
    return []


# --------------------------------------------------------------------------- patterns


def _check_pattern_syntax(env: GoEnv) -> list[Finding]:
    out: list[Finding] = []
    for var in PATTERN_VARS:
        value = env.get(var)
        if not value:
            continue
        if value.strip().lower() in _BOOLEAN_LIKE - {"off"}:
            out.append(
                Finding(
                    "pattern-boolean",
                    "warning",
                    f"{var}={value} is not a switch: it is a list of module path patterns",
                    f"{var}={value!r} matches no module. Name the module path prefixes, "
                    f"e.g. {var}=git.corp.example,*.internal.",
                    (go_env_u_line(var),),
                    var,
                )
            )
            continue
        bad = [p for p in value.split(",") if p != p.strip() or "://" in p]
        if bad:
            fixed = ",".join(p.strip().split("://", 1)[-1] for p in _patterns(value))
            out.append(
                Finding(
                    "pattern-syntax",
                    "warning",
                    f"{var} has patterns that never match: " + ", ".join(repr(p) for p in bad),
                    "Patterns are module path prefixes: no scheme, and the go command does not "
                    "trim spaces around them.",
                    (go_env_w_line(var, fixed),),
                    var,
                )
            )
    return out


def _public_patterns(value: str) -> list[str]:
    return [
        p
        for p in _patterns(value)
        if any(match_prefix_patterns(p, s) for s in _PUBLIC_SAMPLES)
        or module_host(p) in PUBLIC_HOSTS
    ]


def _check_public_patterns(env: GoEnv) -> list[Finding]:
    out: list[Finding] = []
    texts = {
        "GOINSECURE": (
            "goinsecure-public",
            "lets the go command fetch these public modules over plain HTTP and accept any TLS "
            "certificate when it fetches them direct. It does not affect proxies or checksum "
            "verification (nothing there needs it).",
        ),
        "GONOSUMDB": (
            "gonosumdb-public",
            "turns checksum verification off for these public modules: a mirror could serve "
            "altered code unnoticed. List only private module paths.",
        ),
        "GOPRIVATE": (
            "goprivate-public",
            "makes the go command fetch these public modules direct from their repositories "
            "(slow, no mirror) and skip checksum verification. List only private module paths.",
        ),
    }
    for var, (code, why) in texts.items():
        value = env.get(var)
        public = _public_patterns(value)
        if not public:
            continue
        rest = ",".join(p for p in _patterns(value) if p not in public)
        out.append(
            Finding(
                code,
                "warning",
                f"{var} covers public modules: " + ", ".join(public),
                f"{var}={value} {why}",
                (go_env_w_line(var, rest) if rest else go_env_u_line(var),),
                var,
            )
        )
    return out


def _requirement_paths(project: Project) -> list[str]:
    paths: list[str] = []
    for r in project.gomod.require:
        rep = project.gomod.replacement_for(r.path, r.version)
        if rep is not None and rep.is_local:
            continue
        paths.append(r.path if rep is None else rep.new_path)
    return paths


def _check_private(env: GoEnv, project: Project, mirrors: list[str]) -> list[Finding]:
    out: list[Finding] = []
    paths = _requirement_paths(project)
    private = [p for p in paths if looks_private(p)]
    public_mirrors = [m for m in mirrors if is_public_mirror(m)]
    sumdb_on = env.get("GOSUMDB").strip() != "off"
    hosts: dict[str, list[str]] = {}
    for p in private:
        hosts.setdefault(module_host(p), []).append(p)
    uncovered: list[str] = []
    for host, mods in hosts.items():
        no_sumdb = [m for m in mods if sumdb_on and not match_prefix_patterns(env.nosumdb, m)]
        leaked = [m for m in mods if public_mirrors and not match_prefix_patterns(env.noproxy, m)]
        if not no_sumdb and not leaked:
            continue
        uncovered.append(host)
        fix: list[str] = []
        why: list[str] = []
        if leaked:
            var = "GONOPROXY" if env.explicit("GONOPROXY") else "GOPRIVATE"
            fix.append(go_env_w_line(var, _cover(env.get(var), host)))
            why.append(
                f"they are requested from public mirrors ({', '.join(public_mirrors)}), which "
                "learn the private paths and cannot fetch them (404/410, 'unknown revision')"
            )
        if no_sumdb:
            var = "GONOSUMDB" if env.explicit("GONOSUMDB") else "GOPRIVATE"
            line = go_env_w_line(var, _cover(env.get(var), host))
            if line not in fix:
                fix.append(line)
            why.append(
                "the go command looks them up in the public checksum database, which does not "
                "know them: 'verifying module: ... 404 Not Found' (and the path leaks)"
            )
        out.append(
            Finding(
                "private-not-covered",
                "error",
                f"{host} looks private but GOPRIVATE does not cover it ({len(mods)} module"
                + ("s" if len(mods) != 1 else "")
                + ")",
                "This project requires " + ", ".join(mods) + "; " + "; and ".join(why) + ".",
                tuple(fix),
                host,
            )
        )
    known = paths + [project.gomod.module] + [s.path for s in project.sums]
    for var in ("GOPRIVATE", "GONOPROXY", "GONOSUMDB"):
        if var != "GOPRIVATE" and not env.explicit(var):
            continue  # go env shows GOPRIVATE's value here: reported once, as GOPRIVATE
        for pat in _patterns(env.get(var)):
            if pat.strip() == "none" or any(match_prefix_patterns(pat, k) for k in known if k):
                continue
            near = [h for h in uncovered if h.endswith("." + pat.strip())]
            severity: Severity = "warning" if uncovered else "info"
            out.append(
                Finding(
                    "pattern-unused",
                    severity,
                    f"{var} pattern {pat!r} matches none of this project's modules",
                    "A pattern matches whole leading path elements: 'corp.example' matches "
                    "corp.example/x but not git.corp.example/x; write '*.corp.example' for "
                    "subdomains."
                    + (
                        f" It was probably meant for {', '.join(near)} (fixed above)."
                        if near
                        else ""
                    ),
                    (),
                    var,
                )
            )
    return out


# --------------------------------------------------------------------------- other variables


def _check_goflags(env: GoEnv) -> list[Finding]:
    flags = env.get("GOFLAGS").split()
    out: list[Finding] = []
    bad = [f for f in flags if not f.startswith("-")]
    if bad:
        out.append(
            Finding(
                "goflags-syntax",
                "error",
                f"GOFLAGS has non-flag values: {' '.join(bad)}",
                "The go command fails with 'go: parsing $GOFLAGS: non-flag'.",
                (go_env_w_line("GOFLAGS", " ".join(f for f in flags if f.startswith("-"))),),
                "GOFLAGS",
            )
        )
    insecure = [f for f in flags if f.split("=", 1)[0].lstrip("-") == "insecure"]
    if insecure:
        rest = " ".join(f for f in flags if f not in insecure)
        out.append(
            Finding(
                "goflags-insecure",
                "warning",
                "GOFLAGS=-insecure: the flag was removed",
                "'go get' fails with '-insecure flag is no longer supported; use GOINSECURE "
                "instead', other commands ignore it, and it never disabled checksum verification. "
                "For private hosts without TLS use GOINSECURE=<their module patterns>.",
                (go_env_w_line("GOFLAGS", rest) if rest else go_env_u_line("GOFLAGS"),),
                "GOFLAGS",
            )
        )
    return out


def _check_gonosumcheck(env: GoEnv) -> list[Finding]:
    in_env = bool(env.get("GONOSUMCHECK"))
    in_file = "GONOSUMCHECK" in env.env_file
    if not in_env and not in_file:
        return []
    fix = []
    if in_env:
        fix.append("unset GONOSUMCHECK")
    if in_file:
        fix.append(f"sed -i '/^GONOSUMCHECK=/d' {env.get('GOENV') or '$(go env GOENV)'}")
    return [
        Finding(
            "gonosumcheck",
            "warning",
            "GONOSUMCHECK is set, but the go command has no such variable",
            "It has no effect at all. To skip the checksum database for private modules list "
            "them in GONOSUMDB (or GOPRIVATE): go env -w GONOSUMDB=<patterns>.",
            tuple(fix),
            "GONOSUMCHECK",
        )
    ]


def _check_http_proxy(env: GoEnv, mirrors: list[str]) -> list[Finding]:
    out: list[Finding] = []
    for url in mirrors:
        host = (url.split("://", 1)[-1].split("/", 1)[0]).rsplit(":", 1)[0].strip("[]").lower()
        if not host or not url.startswith(("http://", "https://")):
            continue
        var = "HTTPS_PROXY" if url.startswith("https://") else "HTTP_PROXY"
        if is_loopback_host(host):
            if env.get(var):
                out.append(
                    Finding(
                        "http-proxy-loopback",
                        "info",
                        f"{var} is set; the go command never proxies {url} (loopback)",
                        "Other clients (curl, scripts) may still send it through the proxy; "
                        "add it to NO_PROXY for them.",
                        (),
                        url,
                    )
                )
            continue
        proxy = http_proxy_for(url, env.values)
        if proxy is None or not is_private_network_host(host):
            continue
        out.append(
            Finding(
                "http-proxy-private-mirror",
                "warning",
                f"requests to {url} go through {var}={proxy}",
                f"{host} is on the private network, but NO_PROXY does not list it, so the go "
                "command sends every module request through the HTTP proxy, which usually "
                "cannot reach it (or adds a hop to every request).",
                (f"export NO_PROXY={host}${{NO_PROXY:+,$NO_PROXY}}",),
                url,
            )
        )
    return out


def _version_tuple(v: str) -> tuple[int, ...]:
    m = re.match(r"^(?:go)?(\d+(?:\.\d+)*)", v)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def _check_toolchain(env: GoEnv, project: Project | None) -> list[Finding]:
    value = env.get("GOTOOLCHAIN").strip()
    if value and not _TOOLCHAIN.match(value):
        return [
            Finding(
                "gotoolchain-syntax",
                "error",
                f"GOTOOLCHAIN={value} is invalid",
                "Valid values: local, auto, path, goVERSION, goVERSION+auto, goVERSION+path.",
                (go_env_w_line("GOTOOLCHAIN", "auto"),),
                "GOTOOLCHAIN",
            )
        ]
    if project is None:
        return []
    need = max((project.gomod.go, project.gomod.toolchain.removeprefix("go")), key=_version_tuple)
    have = env.get("GOVERSION")
    if not need or not have or _version_tuple(need) <= _version_tuple(have):
        return []
    if value.startswith("local") or value.endswith("+path") or value == "path":
        return [
            Finding(
                "toolchain-too-old",
                "error",
                f"go.mod needs go {need}, the go command is {have} and GOTOOLCHAIN={value}",
                f"The go command stops with 'go.mod requires go >= {need}' because "
                f"GOTOOLCHAIN={value} forbids downloading a newer toolchain.",
                (go_env_w_line("GOTOOLCHAIN", "auto"),),
                "GOTOOLCHAIN",
            )
        ]
    return [
        Finding(
            "toolchain-download",
            "info",
            f"go.mod needs go {need}: the go command will download that toolchain",
            "The toolchain is fetched as the module golang.org/toolchain through GOPROXY and is "
            "always checked against the checksum database.",
            (),
            "GOTOOLCHAIN",
        )
    ]


def _check_goauth(env: GoEnv) -> list[Finding]:
    items = [i.strip() for i in env.get("GOAUTH").split(";") if i.strip()]
    problems = []
    if "off" in items and len(items) > 1:
        problems.append("'off' cannot be combined with other authentication commands")
    for item in items:
        words = item.split()
        if words and words[0] == "git" and (len(words) != 2 or not Path(words[1]).is_absolute()):
            problems.append(f"'{item}': git needs exactly one absolute directory")
    if not problems:
        return []
    return [
        Finding(
            "goauth-syntax",
            "error",
            "GOAUTH is invalid: " + "; ".join(problems),
            "Authenticated (https) downloads fail with this error.",
            (go_env_w_line("GOAUTH", "netrc"),),
            "GOAUTH",
        )
    ]


def _check_modcache(env: GoEnv) -> list[Finding]:
    value = env.get("GOMODCACHE")
    if not value:
        return []
    p = Path(value)
    while not p.exists() and p.parent != p:
        p = p.parent
    if os.access(p, os.W_OK):
        return []
    return [
        Finding(
            "gomodcache-readonly",
            "error",
            f"GOMODCACHE={value} is not writable",
            "Every download fails with 'permission denied' when the go command extracts it.",
            (go_env_w_line("GOMODCACHE", str(Path.home() / "go" / "pkg" / "mod")),),
            "GOMODCACHE",
        )
    ]


def check_settings(
    env: GoEnv, project: Project | None = None, *, recommended_goproxy: str | None = None
) -> list[Finding]:
    """Every settings finding for ``env`` (see the module docstring)."""
    recommended = recommended_goproxy or recommend_goproxy(env.goproxy)
    live = [e for e in parse_proxy_list(env.goproxy) if not e.ignored]
    mirrors = [e.url for e in live if e.is_url]
    out: list[Finding] = []
    out += _check_goproxy(env, recommended)
    out += _check_gosumdb(env)
    out += _check_pattern_syntax(env)
    out += _check_public_patterns(env)
    out += _check_goflags(env)
    out += _check_gonosumcheck(env)
    out += _check_http_proxy(env, mirrors)
    out += _check_toolchain(env, project)
    out += _check_goauth(env)
    out += _check_modcache(env)
    if project is not None:
        out += _check_private(env, project, mirrors)
    return out
