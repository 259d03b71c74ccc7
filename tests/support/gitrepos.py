"""gitrepos builds local git repositories for direct-mode tests and runs the real go command.

How the go command reaches a local repository offline (what works, checked
with go1.27.3 and git 2.39): module paths are ``github.com/<owner>/<repo>``,
which the go command resolves *without network* (github.com is a well-known
host: repository ``https://github.com/<owner>/<repo>``). A git config file
passed as ``GIT_CONFIG_GLOBAL`` rewrites that URL with
``url.file://<root>/.insteadOf=https://github.com/`` and allows the ``file``
protocol; git then clones from ``<root>/<owner>/<repo>``. gomirror's
``DirectUpstream`` is given the same config file, so both sides see the same
repository under the same Origin URL. (The alternative, go-get pages pointing
at ``file://`` URLs, does not work: the go command refuses ``file`` repository
roots in go-import tags, and an https go-get server would need a trusted
certificate.)

:class:`RepoBuilder` makes commits with fixed author and committer dates
(``GIT_AUTHOR_DATE``/``GIT_COMMITTER_DATE``) so pseudo-versions are
deterministic. :class:`GoCommand` runs ``go`` in an isolated environment
(temp ``HOME``/``GOPATH``/``GOMODCACHE``/``GOCACHE``, ``GOENV=off``,
``GOTOOLCHAIN=local``, ``GOPROXY=direct``, ``GOSUMDB=off``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GO = shutil.which("go") or "go"
GIT = shutil.which("git") or "git"
BASE_TIME = 1_700_000_000  # 2023-11-14T22:13:20Z


@dataclasses.dataclass(frozen=True)
class Symlink:
    """A symbolic link to create in a commit (target is the link text)."""

    target: str


FileSpec = str | bytes | Symlink | None  # None deletes the file


class RepoBuilder:
    """A non-bare git repository with deterministic commits."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self._clock = BASE_TIME
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", branch, ".")

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git in the work tree and return stdout."""
        full_env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "Tester",
            "GIT_AUTHOR_EMAIL": "tester@example.test",
            "GIT_COMMITTER_NAME": "Tester",
            "GIT_COMMITTER_EMAIL": "tester@example.test",
            **(env or {}),
        }
        proc = subprocess.run(
            [GIT, *args], cwd=self.path, env=full_env, capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"git {args}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode()

    def commit(self, files: Mapping[str, FileSpec], message: str = "change") -> str:
        """Write files (None deletes), commit at the next fixed time; return the hash."""
        for name, content in files.items():
            p = self.path / name
            if content is None:
                self.git("rm", "-q", "-r", "--", name)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink() or p.exists():
                p.unlink()
            if isinstance(content, Symlink):
                p.symlink_to(content.target)
            else:
                p.write_bytes(content.encode() if isinstance(content, str) else content)
            self.git("add", "-f", "--", name)
        self._clock += 3600
        stamp = f"@{self._clock} +0000"
        self.git(
            "commit", "-q", "--allow-empty", "-m", message,
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )  # fmt: skip
        return self.head()

    def head(self) -> str:
        """The full hash of HEAD."""
        return self.git("rev-parse", "HEAD").strip()

    def tag(self, name: str, rev: str = "HEAD", annotated: bool = False) -> None:
        """Create a lightweight (or annotated) tag."""
        if annotated:
            stamp = f"@{self._clock} +0000"
            self.git("tag", "-a", "-m", name, name, rev, env={"GIT_COMMITTER_DATE": stamp})
        else:
            self.git("tag", name, rev)

    def checkout(self, branch: str, create: bool = False, start: str = "") -> None:
        """Switch to (or create) a branch."""
        args = ["checkout", "-q"] + (["-b", branch] if create else [branch])
        self.git(*args, *([start] if start else []))


class GitWorld:
    """A directory of repositories reachable as ``https://github.com/<owner>/<repo>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repos = root / "repos"
        self.repos.mkdir(parents=True, exist_ok=True)
        self.git_config = root / "gitconfig"
        self.git_config.write_text(
            f'[url "file://{self.repos}/"]\n'
            "\tinsteadOf = https://github.com/\n"
            '[protocol "file"]\n'
            "\tallow = always\n"
            "[safe]\n"
            "\tdirectory = *\n",
            encoding="utf-8",
        )

    def repo(self, owner_repo: str, branch: str = "main") -> RepoBuilder:
        """Create the repository behind module path ``github.com/<owner_repo>``."""
        return RepoBuilder(self.repos / owner_repo, branch)


class GoCommand:
    """The real go command in an isolated direct-mode environment."""

    def __init__(self, home: Path, git_config: Path) -> None:
        self.home = home
        for d in ("home", "gopath", "gocache", "work"):
            (home / d).mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home / "home"),
            "GOPATH": str(home / "gopath"),
            "GOMODCACHE": str(home / "gopath" / "mod"),
            "GOCACHE": str(home / "gocache"),
            "GOENV": "off",
            "GOTOOLCHAIN": "local",
            "GOFLAGS": "-modcacherw",
            "GOPROXY": "direct",
            "GOSUMDB": "off",
            "GOPRIVATE": "",
            "GIT_CONFIG_GLOBAL": str(git_config),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run go with args in an empty work directory."""
        return subprocess.run(
            [GO, *args], cwd=self.home / "work", env=self.env, capture_output=True, check=False
        )

    def download(self, *targets: str) -> list[dict[str, Any]]:
        """``go mod download -json`` for module@query targets; one JSON object each."""
        proc = self.run("mod", "download", "-json", *targets)
        return _json_stream(proc.stdout.decode())

    def list_module(self, *args: str) -> dict[str, Any]:
        """``go list -m -json <args>``; the object (with an ``Error`` on failure)."""
        proc = self.run("list", "-m", "-json", "-e", *args)
        objs = _json_stream(proc.stdout.decode())
        if not objs:
            return {"Error": {"Err": proc.stderr.decode(errors="replace")}}
        return objs[0]


def _json_stream(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
