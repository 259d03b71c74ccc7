"""cli.setup is ``gomirror setup --profile dev|ci|prod``: the right configuration, written for you.

- ``dev`` prints the ``go env -w`` lines for a gomirror (``--server URL``,
  default ``http://127.0.0.1:8080``) or the public mirrors (``--public``),
  with GOPRIVATE/GONOSUMDB from ``--private``; ``--apply`` runs them with the
  real go command (which honours GOENV) and shows the ``go env`` diff.
- ``ci`` renders GitHub Actions, GitLab CI and Jenkins pipelines.
- ``prod`` renders gomirror.toml, a systemd unit, a Dockerfile and a compose file.

``--out DIR`` writes the ci/prod files (never over existing ones without
``--force``), otherwise they are printed; ``--json`` prints one JSON object.
Exit status: 0 done, 1 when ``--apply`` could not make a setting take effect
(an environment variable overrides it), 2 for usage errors or when the go
command refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from gomirror.config import DEFAULT_UPSTREAM
from gomirror.errors import ConfigError
from gomirror.tools.goenv import (
    GoEnvError,
    diff_env,
    find_go,
    go_env_w,
    go_env_w_line,
    run_go_env_json,
)
from gomirror.tools.templates import DEFAULT_SERVER, ProdOptions, ci_files, dev_settings, prod_files


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "setup",
        help="generate go env settings, CI snippets or deployment files",
        description="Write the right configuration for a developer machine (dev), CI (ci) or "
        "a gomirror server (prod).",
    )
    p.add_argument("--profile", required=True, choices=("dev", "ci", "prod"))
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        help=f"URL of a gomirror (dev default {DEFAULT_SERVER}; ci default: none, "
        "prefetch into a cached local gomirror cache)",
    )
    where.add_argument("--public", action="store_true", help="use the public mirrors instead")
    p.add_argument("--private", default="", help="private module patterns (GOPRIVATE syntax)")
    p.add_argument("--apply", action="store_true", help="dev: run the go env -w lines")
    p.add_argument("--go", help="dev --apply: the go command to run (default: go on PATH)")
    p.add_argument("--out", type=Path, help="ci/prod: write the files into this directory")
    p.add_argument("--force", action="store_true", help="overwrite existing files in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--pip-spec", default="gomirror", help="ci: what pip installs for gomirror")
    prod = p.add_argument_group("prod")
    prod.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT to serve on")
    prod.add_argument("--cache-dir", default="/var/cache/gomirror", help="cache directory")
    prod.add_argument("--upstream", default=DEFAULT_UPSTREAM, help="upstream list (GOPROXY)")
    prod.add_argument("--policy", default="failover", choices=("go", "failover"))
    prod.add_argument("--workers", type=int, default=2, help="server processes")
    prod.add_argument("--config-path", default="/etc/gomirror/gomirror.toml")
    prod.add_argument("--bin", default="/usr/local/bin/gomirror", help="gomirror command line")
    prod.add_argument("--user", default="gomirror", help="system user running gomirror")
    prod.add_argument("--deploy-dir", default="deploy", help="files' folder in the source tree")
    p.set_defaults(run=run)


def _server(args: argparse.Namespace) -> str | None:
    """The gomirror to point at; None: public mirrors (ci: prefetch into a local cache)."""
    if args.public or (args.server is None and args.profile != "dev"):
        return None
    url = str(args.server or DEFAULT_SERVER)
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"--server {url}: expected http://HOST:PORT or https://HOST")
    return url.rstrip("/")


def run(args: argparse.Namespace) -> int:
    if args.apply and args.profile != "dev":
        raise ConfigError("--apply works with --profile dev only")
    if args.out is not None and args.profile == "dev":
        raise ConfigError("--out works with --profile ci or prod")
    server = _server(args)
    if args.profile == "dev":
        return _dev(args, server)
    if args.profile == "ci":
        files = ci_files(server, args.private, args.pip_spec)
    else:
        files = prod_files(
            ProdOptions(
                listen=args.listen,
                cache_dir=args.cache_dir,
                upstream=args.upstream,
                policy=args.policy,
                workers=args.workers,
                private=args.private,
                config_path=args.config_path,
                bin=args.bin,
                user=args.user,
                deploy_dir=args.deploy_dir,
            )
        )
    return _emit_files(args, files)


def _emit_files(args: argparse.Namespace, files: dict[str, str]) -> int:
    written: list[str] = []
    if args.out is not None:
        out: Path = args.out
        existing = [n for n in files if (out / n).exists()]
        if existing and not args.force:
            raise ConfigError(f"{out}: would overwrite {', '.join(existing)} (use --force)")
        out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
            written.append(str(out / name))
    if args.json:
        print(json.dumps({"profile": args.profile, "files": files, "written": written}, indent=2))
    elif written:
        for path in written:
            print(f"wrote {path}")
    else:
        for name, text in files.items():
            print(f"# ----- {name} -----")
            print(text, end="")
    return 0


def _dev(args: argparse.Namespace, server: str | None) -> int:
    settings = dev_settings(server, args.private)
    lines = [go_env_w_line(k, v) for k, v in settings.items()]
    if not args.apply:
        if args.json:
            print(json.dumps({"profile": "dev", "settings": settings, "commands": lines}, indent=2))
        else:
            print(
                "# Run these to point the go command at " + (server or "the public mirrors") + ":"
            )
            for line in lines:
                print(line)
        return 0
    env = dict(os.environ)
    go = args.go or find_go(env)
    if go is None:
        raise ConfigError("--apply needs the go command on PATH (or --go PATH)")
    try:
        before = run_go_env_json(go, env)
        if not before.get("GOENV"):
            # The go command accepts go env -w with GOENV=off and silently writes nothing.
            raise GoEnvError("GOENV=off: go env -w has no file to write; unset GOENV")
        messages = go_env_w(go, settings, env)
        after = run_go_env_json(go, env)
    except GoEnvError as e:
        print(f"gomirror setup: go env -w failed: {e}", file=sys.stderr)
        return 2
    # GOGCCFLAGS names a fresh temporary directory on every run: never a real change.
    diff = [d for d in diff_env(before, after) if d[0] != "GOGCCFLAGS"]
    overridden = {k: after.get(k, "") for k, v in settings.items() if after.get(k, "") != v}
    if args.json:
        print(
            json.dumps(
                {
                    "profile": "dev",
                    "settings": settings,
                    "commands": lines,
                    "applied": True,
                    "goenv": after.get("GOENV", ""),
                    "diff": [{"name": n, "before": b, "after": a} for n, b, a in diff],
                    "not_in_effect": overridden,
                },
                indent=2,
            )
        )
    else:
        _render_diff(diff, after.get("GOENV", ""), messages, overridden)
    return 1 if overridden else 0


def _render_diff(
    diff: list[tuple[str, str, str]], goenv: str, messages: str, overridden: dict[str, str]
) -> None:
    console = Console(highlight=False)
    console.print(f"wrote {goenv or 'the go env file'}", soft_wrap=True, markup=False)
    table = Table(title="go env changes", title_justify="left")
    table.add_column("variable")
    table.add_column("before", overflow="fold")
    table.add_column("after", overflow="fold")
    for name, before, after in diff:
        table.add_row(name, before, after)
    if diff:
        console.print(table)
    else:
        console.print("no change: the settings were already in effect")
    if messages:
        console.print(messages, soft_wrap=True, markup=False)
    for name, value in overridden.items():
        why = (
            f"because the environment variable {name} overrides go env -w; unset {name}"
            if os.environ.get(name)
            else "although go env -w succeeded"
        )
        console.print(f"not in effect: {name} is {value!r} {why}", soft_wrap=True, markup=False)
