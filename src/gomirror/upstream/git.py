"""upstream.git runs the ``git`` CLI for direct mode: one bare cache repository per remote URL.

Contract: :class:`GitRunner` starts every git process (at most
``max_processes`` at once, shared fairly between repositories by
``git_slots.FairSlots``; a timeout that kills the whole process group; an
isolated environment that reads no system or user configuration except an
explicitly configured global config file; credentials passed through the
environment only; stderr scrubbed of URL userinfo). :class:`GitRepo` keeps
one bare repository per remote under the cache directory (the directory name
is a hash of the URL), fetches into it only what a question needs (see its
docstring: refs by ``ls-remote``, single commits shallow, full history only
for ancestry), serialised by ``git_lock.RepoLock`` across tasks and
processes, and answers the questions the version resolver asks: the remote's
refs, what a revision is, whether one commit descends from a tag, the tags
merged into a commit, a file's bytes at a commit, and a ``git archive`` zip.

Remote failures become domain errors: a repository that does not exist raises
``NotFound``; an authentication failure raises ``UpstreamError`` naming only
the host and path; anything else raises ``UpstreamError`` with sanitized text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
import shutil
import signal
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import BinaryIO, TypeVar

from gomirror.coordination.singleflight import SingleFlight
from gomirror.errors import NotFound, UpstreamError
from gomirror.upstream.git_lock import RepoLock
from gomirror.upstream.git_slots import FairSlots

log = logging.getLogger(__name__)
T = TypeVar("T")

_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/@\s]*@")
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_MIN_HASH_DIGITS = 7
_ATTRIBUTES = "\n* -export-subst -export-ignore\n"
_STDERR_LIMIT = 4096
_MAX_WATCHED = 8
_SPECULATION_HEAD_START = 0.05  # seconds ls-remote waits for a speculative fetch to start
# Written once every branch and tag has been fetched with full history; from
# then on single-ref fetches are incremental instead of shallow.
_COMPLETE_MARKER = "gomirror-complete"
# protocol v2: v1 can miss tags pointing at a fetched commit (go.dev/issue/56881);
# packs are kept whole (atomic) rather than exploded into loose objects, and an
# automatic gc runs inside the fetch (under the repository lock), never detached.
_FETCH_CONFIG = (
    "-c", "protocol.version=2", "-c", "fetch.unpackLimit=1", "-c", "gc.autoDetach=false",
)  # fmt: skip

_NOT_FOUND_MARKERS = (
    "repository not found",
    "does not appear to be a git repository",
    "not found",
    "no such file or directory",
)
_AUTH_MARKERS = (
    "authentication failed",
    "could not read username",
    "could not read password",
    "permission denied",
    "terminal prompts disabled",
)
_AUTH_STATUS_RE = re.compile(r"\b40[13]\b")
_NOT_FOUND_STATUS_RE = re.compile(r"\b404\b")
# URLs in git's messages are left out when they are classified: a port such
# as 44013 or a path must not read as an HTTP status or a marker.
_URL_RE = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s'\"]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return url without any userinfo (``https://user:tok@h/p`` -> ``https://h/p``)."""
    return _USERINFO_RE.sub(r"\1", url)


def url_label(url: str) -> str:
    """Return ``host/path`` of a remote URL, secret-free, for error messages."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    path = parsed.path.strip("/")
    return f"{host}/{path}" if host else path


def _config_quote(value: str) -> str | None:
    """value as a double-quoted git config value, or None if it needs ``git config`` itself."""
    if any(c in value for c in "\n\r\x00") or not value.isprintable():
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _has_password(url: str) -> bool:
    userinfo, at, _ = urllib.parse.urlsplit(url).netloc.rpartition("@")
    return bool(at) and ":" in userinfo


def is_hex(s: str) -> bool:
    """Report whether s is non-empty lowercase hexadecimal."""
    return bool(_HEX_RE.match(s))


@dataclasses.dataclass(frozen=True)
class GitSettings:
    """How to run git: limits, timeouts and the environment it sees."""

    timeout: float = 300.0
    max_processes: int = 8
    git_config: Path | None = None
    tokens: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    git_binary: str = "git"


class GitError(Exception):
    """A git process exited non-zero; stderr has been sanitized."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"git {' '.join(args[:2])}: exit {returncode}: {stderr.strip()}")


@dataclasses.dataclass(frozen=True)
class RefSnapshot:
    """The remote's refs at one moment (``taken`` is a monotonic timestamp)."""

    refs: Mapping[str, str]
    raw: Mapping[str, str]
    taken: float

    @property
    def head(self) -> str:
        """The commit the remote's ``HEAD`` (default branch) points at, or ""."""
        return self.refs.get("HEAD", "")

    @property
    def sha256(self) -> bool:
        """Whether the repository uses 64-digit SHA-256 object names."""
        return any(len(h) == 64 for h in self.refs.values())

    def raw_heads_and_tags(self) -> dict[str, str]:
        """The unpeeled branch and tag refs, as ``git for-each-ref`` shows them locally."""
        return {k: v for k, v in self.raw.items() if k.startswith(("refs/heads/", "refs/tags/"))}

    def tags(self, prefix: str = "") -> list[tuple[str, str]]:
        """(tag name, commit) pairs whose name starts with prefix, sorted by name."""
        out = [
            (ref[len("refs/tags/") :], h)
            for ref, h in self.refs.items()
            if ref.startswith("refs/tags/" + prefix)
        ]
        out.sort()
        return out


def parse_ls_remote(text: str, taken: float) -> RefSnapshot:
    """Parse ``git ls-remote`` output (``<hash>\\t<ref>`` lines) into a snapshot."""
    refs: dict[str, str] = {}
    raw: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        h, ref = fields
        base = ref.removesuffix("^{}")
        if base != "HEAD" and not base.startswith(("refs/heads/", "refs/tags/")):
            continue
        if ref.endswith("^{}"):
            refs[base] = h  # the peeled commit wins over the tag object, in any order
        else:
            raw[ref] = h
            refs.setdefault(ref, h)
    return RefSnapshot(refs=refs, raw=raw, taken=taken)


@dataclasses.dataclass(frozen=True)
class RevInfo:
    """One commit as the version resolver sees it."""

    name: str  # full commit hash
    short: str  # 12-digit prefix used in pseudo-versions
    time: int  # committer time, Unix seconds
    tags: tuple[str, ...]  # tags pointing at this commit, sorted
    version: str  # the queried tag if it is one of tags, else the full hash
    ref: str = ""  # the ref the query resolved through (refs/tags/..., refs/heads/..., HEAD)

    @property
    def datetime(self) -> dt.datetime:
        """The committer time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time, tz=dt.UTC)


class GitRunner:
    """Starts git processes with bounded concurrency, timeouts and a clean environment."""

    def __init__(self, settings: GitSettings) -> None:
        self.settings = settings
        self.slots = FairSlots(settings.max_processes)
        self._secrets: list[str] = []
        self._env = self._build_env()

    def _build_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "SSH_AUTH_SOCK") if k in os.environ}
        env.update(
            {
                "LANG": "C",
                "LC_ALL": "C",
                "GIT_TERMINAL_PROMPT": "0",
                "GCM_INTERACTIVE": "never",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": str(self.settings.git_config or os.devnull),
                "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
                "GIT_ASKPASS": "",
                "SSH_ASKPASS": "",
            }
        )
        count = 0
        for host, cred in sorted(self.settings.tokens.items()):
            user, sep, secret = cred.partition(":")
            if not sep:
                user, secret = "x-access-token", cred
            basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
            self._secrets += [x for x in (secret, basic) if x]
            env[f"GIT_CONFIG_KEY_{count}"] = f"http.https://{host}/.extraHeader"
            env[f"GIT_CONFIG_VALUE_{count}"] = f"Authorization: Basic {basic}"
            count += 1
        if count:
            env["GIT_CONFIG_COUNT"] = str(count)
        env.update(self.settings.extra_env)
        return env

    def sanitize(self, text: str) -> str:
        """Strip URL userinfo and any configured secret from text."""
        text = redact_url(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[-_STDERR_LIMIT:]

    async def run(
        self,
        args: Sequence[str],
        *,
        git_dir: Path | None = None,
        cwd: Path | None = None,
        stdout_path: Path | None = None,
        stdout_fd: int | None = None,
        on_spawn: Callable[[], None] | None = None,
        ok_codes: tuple[int, ...] = (0,),
        key: str = "",
        stdin: bytes | None = None,
    ) -> tuple[int, bytes]:
        """Run ``git args``; return (exit code, stdout) or raise GitError / UpstreamError.

        key names the repository the command works for: process slots are
        shared fairly between keys (``git_slots.FairSlots``). stdout_fd, when
        given, is where the child writes its output (a pipe's write end, say);
        it is closed here once the child has it, or on any failure to start.
        on_spawn is called once the child runs (it then holds a slot).
        stdin, when given, is written to the child's standard input.
        """
        env = dict(self._env)
        if git_dir is not None:
            env["GIT_DIR"] = str(git_dir)
        out_fd = stdout_fd
        try:
            async with self.slots.slot(key):
                started = time.monotonic()
                if stdout_path is not None:
                    out_fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    proc = await asyncio.create_subprocess_exec(
                        self.settings.git_binary,
                        *args,
                        stdin=asyncio.subprocess.DEVNULL
                        if stdin is None
                        else asyncio.subprocess.PIPE,
                        stdout=out_fd if out_fd is not None else asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env=env,
                        cwd=str(cwd) if cwd else None,
                        start_new_session=True,
                    )
                except OSError as exc:
                    raise UpstreamError(f"cannot run git: {exc.strerror}") from None
                finally:
                    if out_fd is not None:
                        os.close(out_fd)  # the child has its own copy
                        out_fd = None
                if on_spawn is not None:
                    on_spawn()
                code, out, err = await self._wait(proc, args, stdin)
                log.debug(
                    "git run",
                    extra={"cmd": args[0], "code": code, "duration": time.monotonic() - started},
                )
        finally:
            if out_fd is not None:  # never started (cancelled waiting for a slot)
                os.close(out_fd)
        if code not in ok_codes:
            raise GitError(args, code, self.sanitize((err or b"").decode("utf-8", "replace")))
        return code, out or b""

    async def _wait(
        self, proc: asyncio.subprocess.Process, args: Sequence[str], stdin: bytes | None
    ) -> tuple[int, bytes | None, bytes | None]:
        """Wait for proc within the timeout; kill its process group on timeout or cancellation."""
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.settings.timeout)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, asyncio.CancelledError):
                await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("git timeout", extra={"cmd": args[0], "timeout": self.settings.timeout})
            raise UpstreamError(
                f"git {args[0]} timed out after {self.settings.timeout:g}s"
            ) from None
        code = proc.returncode if proc.returncode is not None else -1
        return code, out, err


async def _reader_outcome(started: list[asyncio.Future[T]], read_fd: int) -> BaseException | None:
    """Wait for an archive reader to end (git is gone); its exception, if any."""
    if not started:
        os.close(read_fd)  # git never ran: nobody reads
        return None
    [outcome] = await asyncio.gather(asyncio.shield(started[0]), return_exceptions=True)
    return outcome if isinstance(outcome, BaseException) else None


class StopReading(Exception):
    """Raised by an :meth:`GitRepo.archive_to` consumer that stops reading on purpose."""


def _archive_error(exc: GitError, commit: str, subdir: str) -> Exception:
    if "did not match any files" in exc.stderr:
        return NotFound(f"directory {subdir} not found at {commit[:12]}")
    return UpstreamError(f"git archive failed: {exc.stderr.strip()[:200]}")


def _classify_remote_error(exc: GitError, url: str) -> Exception:
    """Map a failed network git command to NotFound / auth UpstreamError / UpstreamError."""
    low = _URL_RE.sub("", exc.stderr.lower())
    label = url_label(url)
    if any(m in low for m in _AUTH_MARKERS) or _AUTH_STATUS_RE.search(low):
        return UpstreamError(f"authentication failed for {label}")
    if any(m in low for m in _NOT_FOUND_MARKERS) or _NOT_FOUND_STATUS_RE.search(low):
        return NotFound(f"repository {label} not found")
    first = exc.stderr.strip().splitlines()[-1:] or ["git failed"]
    return UpstreamError(f"git error for {label}: {first[0]}")


def _parse_batch(out: bytes, count: int) -> list[tuple[str, str, bytes] | None]:
    """The objects of ``git cat-file --batch`` output: (hash, type, content), None if missing.

    Output that does not parse ends the list early: callers treat what is
    absent as missing.
    """
    objects: list[tuple[str, str, bytes] | None] = []
    pos = 0
    while len(objects) < count:
        end = out.find(b"\n", pos)
        if end < 0:
            break
        header = out[pos:end].decode("ascii", "replace").split(" ")
        pos = end + 1
        if len(header) != 3 or not header[2].isdigit() or not is_hex(header[0]):
            objects.append(None)  # "<name> missing" / "<name> ambiguous"
            continue
        size = int(header[2])
        if pos + size > len(out):
            break  # cut short: not an answer
        objects.append((header[0], header[1], out[pos : pos + size]))
        pos += size + 1
    return objects


def _committer_time(commit: bytes) -> int | None:
    """The committer timestamp (``%ct``) from a raw commit object's header, or None."""
    for line in commit.split(b"\n\n", 1)[0].split(b"\n"):
        if line.startswith(b"committer "):
            fields = line.rsplit(b" ", 2)
            if len(fields) == 3 and fields[1].isdigit():
                return int(fields[1])
            return None
    return None


def _write_bare_layout(repo: Path, quoted_url: str | None) -> None:
    """Write an empty bare repository at repo, as ``git init --bare --template=`` would.

    What git needs to recognise a repository (gitrepository-layout(5)):
    ``HEAD``, ``objects/`` and ``refs/``, plus a version-0 (SHA-1) config. The
    remote goes into the config when its URL can be quoted safely, and the
    attributes every archive needs (``_ATTRIBUTES``) into ``info/attributes``.
    """
    for sub in ("objects/info", "objects/pack", "refs/heads", "refs/tags", "info"):
        (repo / sub).mkdir(parents=True)
    (repo / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    config = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
    if quoted_url is not None:
        config += f'[remote "origin"]\n\turl = {quoted_url}\n'
    (repo / "config").write_text(config, encoding="utf-8")
    (repo / "info" / "attributes").write_text(_ATTRIBUTES, encoding="utf-8")


class GitRepo:
    """A bare cache repository of one remote, filled on demand: shallow first, history when needed.

    What is fetched follows the go command's rules: ``git ls-remote`` answers
    ref questions without fetching objects; a commit that is needed and is
    the tip of a known ref is fetched alone (``--depth=1`` while the repository
    has no history yet, an incremental fetch once it has); only a commit no
    ref points at, a pseudo-version's base-tag ancestry check or a search for
    the highest merged tag fetches every branch and tag with full history
    ("complete"). The repository persists under the cache directory and is
    reused by later requests and processes; :class:`RepoLock` serialises every
    change to it, and every git process holds one of the runner's fair slots
    under this repository's key.
    """

    def __init__(self, runner: GitRunner, cache_dir: Path, url: str, refs_ttl: float) -> None:
        self.runner = runner
        self.url = url
        self.public_url = redact_url(url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:32]
        self.key = digest
        self.dir = cache_dir / digest
        self.lock = RepoLock(cache_dir / f"{digest}.lock", 3 * runner.settings.timeout)
        self._refs_ttl = refs_ttl
        self._refs_lock = asyncio.Lock()
        self._ready = False
        self._attributes_ok = False
        self._snapshot: RefSnapshot | None = None
        self._complete_for: RefSnapshot | None = None
        self._stat_cache: dict[str, RevInfo] = {}
        self._stat_flights = SingleFlight()
        self._file_flights = SingleFlight()
        # Commits never change: a full hash once seen locally stays (hash, commit time).
        self._commits: dict[str, tuple[str, int]] = {}
        self._file_cache: dict[tuple[str, str], bytes | None] = {}
        self._watched: list[str] = []  # files read with every commit lookup (watch_file)
        self._created: tuple[int, int] | None = None  # objects signature when this made it
        self._speculation: asyncio.Task[None] | None = None
        # Set once the speculative fetch runs (or will not): ls-remote starts after it.
        self._speculation_spawned = asyncio.Event()

    async def _git(
        self,
        *args: str,
        ok_codes: tuple[int, ...] = (0,),
        stdin: bytes | None = None,
        on_spawn: Callable[[], None] | None = None,
    ) -> tuple[int, bytes]:
        return await self.runner.run(
            args, git_dir=self.dir, ok_codes=ok_codes, key=self.key, stdin=stdin, on_spawn=on_spawn
        )

    # -- the repository on disk ------------------------------------------------------

    async def _init(self) -> None:
        if self._ready:
            return
        if not (self.dir / "objects").is_dir():
            async with self.lock.hold():
                if not (self.dir / "objects").is_dir():
                    await self._create()
        self._ready = True

    async def _create(self) -> None:
        """Create the bare repository beside its final name and rename it into place.

        The layout is written directly (``_write_bare_layout``) rather than by
        ``git init``: a handful of directories and three small files, written
        on the loop without a thread hop, since the first fetch into a new
        repository waits for them. A crash half-way leaves only a temp
        directory, never a repository without its remote; the lock is held,
        so leftovers are ours to remove.
        """
        for stale in self._leftovers():
            await asyncio.to_thread(shutil.rmtree, stale, True)
        tmp = self.dir.parent / f"{self.dir.name}.init-{os.getpid()}"
        quoted = _config_quote(self.url)
        _write_bare_layout(tmp, quoted)
        if quoted is None:  # a URL only git itself can write into the config
            await self.runner.run(
                ["config", "remote.origin.url", self.url], git_dir=tmp, key=self.key
            )
        self._created = self._objects_signature_of(tmp)
        tmp.rename(self.dir)
        self._attributes_ok = True

    def _leftovers(self) -> list[Path]:
        """Earlier attempts' temp directories and a repository without objects."""
        parent = self.dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        found = [*parent.glob(f"{self.dir.name}.init-*"), self.dir]
        return [p for p in found if p.is_symlink() or p.exists()]

    def _complete(self) -> bool:
        return (self.dir / _COMPLETE_MARKER).exists()

    # -- refs ------------------------------------------------------------------------

    async def refs(self, *, fresh: bool = False) -> RefSnapshot:
        """Return the remote's refs (``git ls-remote``, no objects fetched); re-list when stale."""
        async with self._refs_lock:
            snap = self._snapshot
            now = time.monotonic()
            if snap is not None and not fresh and now - snap.taken < self._refs_ttl:
                return snap
            try:
                out = await self._ls_remote()
            except GitError as exc:
                raise _classify_remote_error(exc, self.url) from None
            snap = parse_ls_remote(out.decode("utf-8", "replace"), now)
            self._snapshot = snap
            self._stat_cache = {}
            return snap

    async def _ls_remote(self) -> bytes:
        """``git ls-remote`` of the remote; a new repository is created meanwhile.

        The first question about a repository would otherwise wait for ``init``
        and ``config`` before listing: with no repository yet the URL itself is
        listed while they run, unless it carries a password (never on a command line).
        """
        if self._ready or (self.dir / "objects").is_dir() or _has_password(self.url):
            await self._init()
            _, out = await self._git("ls-remote", "-q", "--end-of-options", "origin")
            return out
        if self._speculation is not None:
            # Starting git blocks the loop for a moment: the speculative fetch,
            # the longer of the two, goes first, unless it cannot start at once
            # (another process holds the repository).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._speculation_spawned.wait(), _SPECULATION_HEAD_START)
        creating = asyncio.ensure_future(self._init())
        try:
            # GIT_DIR names the repository being created: git must not go looking
            # for one above the working directory (it lists a URL fine without).
            _, out = await self.runner.run(
                ["ls-remote", "-q", "--end-of-options", self.url], git_dir=self.dir, key=self.key
            )
        finally:
            await asyncio.shield(creating)
        return out

    async def _local_refs(self) -> dict[str, str]:
        _, out = await self._git(
            "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"
        )
        result: dict[str, str] = {}
        for line in out.decode("utf-8", "replace").splitlines():
            h, _, ref = line.partition(" ")
            if ref:
                result[ref] = h
        return result

    # -- fetching --------------------------------------------------------------------

    def _objects_signature(self) -> tuple[int, int]:
        """What changes whenever a fetch lands: the pack directory's and shallow file's mtimes."""
        return self._objects_signature_of(self.dir)

    @staticmethod
    def _objects_signature_of(repo: Path) -> tuple[int, int]:
        sig = []
        for path in (repo / "objects" / "pack", repo / "shallow"):
            try:
                sig.append(path.stat().st_mtime_ns)
            except FileNotFoundError:
                sig.append(0)
        return sig[0], sig[1]

    async def _fetch_commit(
        self, snap: RefSnapshot, ref: str, full: str, target: str, seen: tuple[int, int]
    ) -> bool:
        """Make target's commit local: fetch its ref alone, else everything. Report success.

        seen is the objects signature taken before target was found missing:
        when it is unchanged under the lock, no fetch landed meanwhile and the
        commit need not be looked up again (a coarse clock can hide a fetch:
        the cost is one redundant fetch, never a wrong answer).
        """
        async with self.lock.hold():
            if self._objects_signature() != seen and await self._commit_of(target) is not None:
                return True  # another task or process fetched it while we waited
            if ref and full:
                # A ref the remote advertises, never a bare hash: commits that no
                # branch or tag reaches (rejected pull requests) must not become
                # versions. HEAD gets a private local name outside heads and tags.
                spec = "+HEAD:refs/gomirror/HEAD" if ref == "HEAD" else f"+{ref}:{ref}"
                depth = () if self._complete() else ("--depth=1",)
                try:
                    await self._git(
                        *_FETCH_CONFIG, "fetch", "-q", "-f", *depth, "--end-of-options",
                        "origin", spec,
                    )  # fmt: skip
                except GitError as exc:
                    # Servers differ too much to parse why; fall back to fetching everything.
                    log.info(
                        "git ref fetch failed",
                        extra={"url": self.public_url, "ref": ref, "error": exc.stderr[-200:]},
                    )
                else:
                    if await self._commit_of(full) is not None:
                        return True
            await self._fetch_all_locked(snap)
            return await self._commit_of(target) is not None

    def speculate_tag(self, tag: str) -> None:
        """Start fetching ``refs/tags/<tag>`` before ``ls-remote`` answers, for a new repository.

        The first question about a repository that is not on disk yet is
        nearly always for a tag: fetching it shallow while the refs are
        listed saves a round trip to the remote. Nothing trusts the result:
        the question is still answered from the listing, and a tag the remote
        does not have just fails this fetch quietly.
        """
        if self._speculation is not None or self._ready or (self.dir / "objects").is_dir():
            return
        self._speculation = asyncio.ensure_future(self._speculate(tag))

    async def _speculate(self, tag: str) -> None:
        ref = f"refs/tags/{tag}"
        try:
            await self._init()
            async with self.lock.hold():
                if self._objects_signature() != self._created:
                    return  # someone fetched already
                code, _ = await self._git(
                    *_FETCH_CONFIG, "fetch", "-q", "-f", "--depth=1", "--end-of-options",
                    "origin", f"+{ref}:{ref}", ok_codes=(0, 1, 128),
                    on_spawn=self._speculation_spawned.set,
                )  # fmt: skip
            log.debug("git speculative fetch", extra={"url": self.public_url, "code": code})
        except (GitError, UpstreamError, OSError) as exc:
            log.debug("git speculative fetch failed", extra={"url": self.public_url, "error": exc})
        finally:
            self._speculation_spawned.set()  # never leave ls-remote waiting

    async def close(self) -> None:
        """Stop a speculative fetch still running."""
        task, self._speculation = self._speculation, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ensure_complete(self, snap: RefSnapshot) -> None:
        """Fetch every branch and tag with full history, unless the repository has them."""
        if self._complete_for is snap:
            return
        async with self.lock.hold():
            await self._fetch_all_locked(snap)

    async def _fetch_all_locked(self, snap: RefSnapshot) -> None:
        if self._complete_for is snap:
            return
        if self._complete() and await self._local_refs() == snap.raw_heads_and_tags():
            self._complete_for = snap
            return
        specs = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]
        if snap.head:
            specs.append("+HEAD:refs/gomirror/HEAD")
        log.info("git full fetch", extra={"url": self.public_url})
        try:
            await self._git(
                *_FETCH_CONFIG, "fetch", "-q", "-f", "--prune", "--no-tags", "--end-of-options",
                "origin", *specs,
            )  # fmt: skip
            # Deepening is a separate fetch: older git loses refs when both happen at once.
            if (self.dir / "shallow").exists():
                await self._git(
                    *_FETCH_CONFIG, "fetch", "-q", "--unshallow", "-f", "--no-tags",
                    "--end-of-options", "origin", *specs,
                )  # fmt: skip
        except GitError as exc:
            raise _classify_remote_error(exc, self.url) from None
        (self.dir / _COMPLETE_MARKER).touch()
        self._complete_for = snap

    # -- questions ---------------------------------------------------------------------

    def watch_file(self, file: str) -> None:
        """Read file (a path from the repository root) with every commit looked up from now on.

        The version resolver reads a module's go.mod at nearly every commit
        it resolves: read together with the commit, it costs no git process
        of its own. At most ``_MAX_WATCHED`` paths are kept.
        """
        if file not in self._watched and len(self._watched) < _MAX_WATCHED:
            self._watched.append(file)

    async def _commit_of(self, rev: str) -> tuple[str, int] | None:
        """(full hash, commit time) of rev's commit if it is local, else None.

        One ``git cat-file --batch`` reads the commit and the watched files at
        it (those land in the file cache). rev is a hash or hash prefix here.
        """
        known = self._commits.get(rev)
        if known is not None:
            return known
        watched = list(self._watched)
        names = [f"{rev}^{{commit}}", *(f"{rev}^{{commit}}:{f}" for f in watched)]
        _, out = await self._git(
            "cat-file", "--batch", stdin="".join(n + "\n" for n in names).encode()
        )
        objects = _parse_batch(out, len(names))
        commit = objects[0] if objects else None
        if commit is None or commit[1] != "commit":
            return None
        when = _committer_time(commit[2])
        found = (commit[0], when) if when is not None else await self._commit_by_log(commit[0])
        if found is None:
            return None
        if len(self._commits) > 4096:
            self._commits.clear()
        self._commits[found[0]] = found
        # Only what the output answered is remembered: a missing file as None.
        for file, obj in zip(watched, objects[1:], strict=False):
            self._remember_file(
                found[0], file, obj[2] if obj is not None and obj[1] == "blob" else None
            )
        return found

    async def _commit_by_log(self, rev: str) -> tuple[str, int] | None:
        """``git log``'s answer for a commit whose header does not parse (its own date rules)."""
        code, out = await self._git(
            "-c", "log.showsignature=false", "log", "--no-decorate", "-n1",
            "--format=format:%H %ct", "--end-of-options", rev, "--",
            ok_codes=(0, 128, 129),
        )  # fmt: skip
        fields = out.decode("ascii", "replace").split()
        if code != 0 or len(fields) < 2 or not is_hex(fields[0]):
            return None
        return fields[0], int(fields[1])

    async def stat(self, rev: str) -> RevInfo:
        """Resolve a tag, branch, ``HEAD`` or hash prefix to a commit (``git.go``'s stat).

        Concurrent questions about one revision share one resolution.
        """
        snap = await self.refs()
        cached = self._stat_cache.get(rev)
        if cached is not None:
            return cached
        return await self._stat_flights.do(rev, lambda: self._stat(snap, rev))

    async def _stat(self, snap: RefSnapshot, rev: str) -> RevInfo:
        ref = ""
        target = rev
        hexlen = 64 if snap.sha256 else 40
        looks_hash = _MIN_HASH_DIGITS <= len(rev) <= hexlen and is_hex(rev)
        if snap.refs.get("refs/tags/" + rev):
            ref, target = "refs/tags/" + rev, snap.refs["refs/tags/" + rev]
        elif snap.refs.get("refs/heads/" + rev):
            ref, target = "refs/heads/" + rev, snap.refs["refs/heads/" + rev]
        elif rev == "HEAD" and snap.head:
            ref, target = "HEAD", snap.head
        elif looks_hash:
            found = ""
            for name, h in sorted(snap.refs.items()):
                if h.startswith(rev):
                    if found and found != h:
                        raise NotFound(f"ambiguous revision {rev}")
                    found = h
                    ref = ref or name
            target = found or rev
        else:
            raise NotFound(f"unknown revision {rev}")
        full = target if len(target) == hexlen else ""
        seen = self._objects_signature()
        # A repository this process created and nothing fetched into yet has no commits.
        logged = None if seen == self._created else await self._commit_of(target)
        if logged is None and await self._fetch_commit(snap, ref, full, target, seen):
            logged = await self._commit_of(target)
        if logged is None:
            raise NotFound(f"unknown revision {rev}")
        full, ctime = logged
        tags = sorted(
            {
                n[len("refs/tags/") :]
                for n, h in snap.refs.items()
                if h == full and n.startswith("refs/tags/")
            }
        )
        info = RevInfo(
            name=full,
            short=full[:12],
            time=ctime,
            tags=tuple(tags),
            version=rev if rev in tags else full,
            ref=ref if ref != full else "",
        )
        self._stat_cache[rev] = info
        return info

    async def read_file(self, commit: str, file: str) -> bytes | None:
        """Return the bytes of file at commit (a full hash, already local), or None if absent."""
        key = (commit, file)
        if key in self._file_cache:
            return self._file_cache[key]
        return await self._file_flights.do(
            f"{commit}:{file}", lambda: self._read_file(commit, file)
        )

    async def _read_file(self, commit: str, file: str) -> bytes | None:
        code, out = await self._git(
            "cat-file", "--end-of-options", "blob", f"{commit}:{file}", ok_codes=(0, 128)
        )
        data = out if code == 0 else None
        self._remember_file(commit, file, data)
        return data

    def _remember_file(self, commit: str, file: str, data: bytes | None) -> None:
        if len(self._file_cache) > 4096:
            self._file_cache.clear()
        self._file_cache[(commit, file)] = data

    async def merged_tags(self, commit: str, prefix: str) -> list[str]:
        """Tag names starting with prefix whose commits are ancestors of (or equal to) commit.

        Needs history: the repository is completed first, unless the remote
        has no tag with the prefix at all.
        """
        snap = await self.refs()
        if not snap.tags(prefix):
            return []
        await self._ensure_complete(snap)
        _, out = await self._git(
            "for-each-ref", "--format=%(refname)", f"--merged={commit}", "refs/tags"
        )
        names = (
            line.strip().removeprefix("refs/tags/")
            for line in out.decode("utf-8", "replace").splitlines()
        )
        return [n for n in names if n.startswith(prefix)]

    async def descends_from(self, commit: str, tag_ref: str) -> bool:
        """Report whether the remote's tag_ref (``refs/tags/X``) is an ancestor of (or is) commit.

        A shallow repository can answer "no" falsely, so only "yes" is
        trusted before the repository has been completed.
        """
        snap = await self.refs()
        tagged = snap.refs.get(tag_ref, "")
        if not tagged:
            return False
        for attempt in range(2):
            code, _ = await self._git(
                "merge-base", "--is-ancestor", "--", tagged, commit, ok_codes=(0, 1, 128)
            )
            if code == 0:
                return True
            if attempt == 0:
                await self._ensure_complete(snap)
        return False

    async def archive(self, commit: str, subdir: str, dst: Path) -> None:
        """Write ``git archive --format=zip -0 --prefix=prefix/ commit [subdir]`` into dst."""
        args = await self._archive_args(commit, subdir)
        try:
            await self.runner.run(args, git_dir=self.dir, stdout_path=dst, key=self.key)
        except GitError as exc:
            raise _archive_error(exc, commit, subdir) from None

    async def archive_to(
        self,
        commit: str,
        subdir: str,
        consume: Callable[[BinaryIO], T],
        executor: Executor | None = None,
    ) -> T:
        """Run ``consume`` on a worker thread over the archive's bytes as git writes them.

        The same archive as :meth:`archive`, read from a pipe: whoever reads it
        can work while git is still writing. consume runs on executor (the
        loop's default when None; it blocks on the pipe, so give it threads of
        its own), and only once git runs, so a git waiting for a slot holds no
        thread. A consumer that stops early on purpose raises
        :class:`StopReading`: the pipe closes, git stops on the broken pipe,
        and that exception is raised. A failing git raises as in :meth:`archive`.
        """
        args = await self._archive_args(commit, subdir)
        read_fd, write_fd = os.pipe()
        loop = asyncio.get_running_loop()
        started: list[asyncio.Future[T]] = []

        def work() -> T:
            with open(read_fd, "rb", buffering=1 << 20) as reader:
                return consume(reader)

        def spawned() -> None:  # a reader thread only for a git that runs: never one waiting
            started.append(loop.run_in_executor(executor, work))

        try:
            await self.runner.run(
                args, git_dir=self.dir, stdout_fd=write_fd, on_spawn=spawned, key=self.key
            )
        except GitError as exc:
            # A consumer that gave up closed the pipe, and git died of it: its reason wins.
            reason = await _reader_outcome(started, read_fd)
            if isinstance(reason, StopReading):
                raise reason from None
            raise _archive_error(exc, commit, subdir) from None
        except BaseException:
            await _reader_outcome(started, read_fd)  # never leave the worker behind
            raise
        return await started[0]

    async def _archive_args(self, commit: str, subdir: str) -> list[str]:
        if not self._attributes_ok:
            async with self.lock.hold():
                await asyncio.to_thread(self._ensure_attributes)
            self._attributes_ok = True
        # -0: entries are stored, not deflated. The archive is only read back to
        # build the module zip, so compressing it would be work thrown away.
        args = [
            "-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=zip", "-0",
            "--prefix=prefix/", "--end-of-options", commit,
        ]  # fmt: skip
        if subdir:
            args.append(subdir)
        return args

    def _ensure_attributes(self) -> None:
        info = self.dir / "info"
        info.mkdir(parents=True, exist_ok=True)
        path = info / "attributes"
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if not current.endswith(_ATTRIBUTES):
            with path.open("a", encoding="utf-8") as f:
                f.write(_ATTRIBUTES)
