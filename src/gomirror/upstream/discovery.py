"""upstream.discovery finds the repository holding a module path, as go's direct mode does.

Contract: :meth:`Discoverer.find` maps a module path to a :class:`RepoRoot`
(repository root import path, VCS, URL, optional subdirectory) by trying, in
order:

1. explicit :class:`RepoRule` rules from the configuration. A rule's pattern
   uses ``GOPRIVATE`` glob semantics (``module.MatchPrefixPatterns``); the
   elements the pattern matches form the repository root, so a rule
   ``git.corp.example/group/sub/*`` makes ``git.corp.example/group/sub/r`` the
   root of ``git.corp.example/group/sub/r/pkg/v2``. The rule whose pattern has
   the most elements wins, ties go to the first;
2. the hosts the go command knows natively (github.com, bitbucket.org,
   hub.jazz.net, git.apache.org, git.openstack.org);
3. a ``.git`` qualifier in the path (``host/repo.git/sub``);
4. ``https://<path>?go-get=1`` and ``<meta name="go-import">`` tags (plain
   http only for paths matching the insecure patterns), longest matching
   prefix, verified against the prefix's own page as the go command does.
   gitlab.com, gitee.com and every other host go through this step.

A module that nothing resolves raises ``NotFound``. A ``mod`` go-import entry
(a GOPROXY URL rather than a repository) is returned with ``vcs == "mod"``;
``DirectUpstream`` reports such modules as not found and names the proxy URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import html.parser
import re
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from gomirror.errors import ConfigError, NotFound, UpstreamError
from gomirror.module import paths

_GITHUB = re.compile(r"^(?P<root>github\.com/[\w.\-]+/[\w.\-]+)(/[\w.\-]+)*$", re.ASCII)
_BITBUCKET = re.compile(r"^(?P<root>bitbucket\.org/[\w.\-]+/[\w.\-]+)(/[\w.\-]+)*$", re.ASCII)
_JAZZ = re.compile(r"^(?P<root>hub\.jazz\.net/git/[a-z0-9]+/[\w.\-]+)(/[\w.\-]+)*$", re.ASCII)
_APACHE = re.compile(r"^(?P<root>git\.apache\.org/[a-z0-9_.\-]+\.git)(/[\w.\-]+)*$", re.ASCII)
_OPENSTACK = re.compile(
    r"^(?P<root>git\.openstack\.org/[\w.\-]+/[\w.\-]+)(\.git)?(/[\w.\-]+)*$", re.ASCII
)
_KNOWN: tuple[tuple[str, re.Pattern[str], bool], ...] = (
    ("github.com", _GITHUB, True),
    ("bitbucket.org", _BITBUCKET, True),
    ("hub.jazz.net/git", _JAZZ, True),
    ("git.apache.org", _APACHE, False),
    ("git.openstack.org", _OPENSTACK, False),
)
_QUALIFIED = re.compile(
    r"(?P<root>(?P<repo>([a-z0-9.\-]+\.)+[a-z0-9.\-]+(:[0-9]+)?(/~?[\w.\-]+)+?)"
    r"\.(?P<vcs>fossil|git|hg|svn))(/~?[\w.\-]+)*$",
    re.ASCII,
)
_VCS_SUFFIXES = (".git", ".hg", ".svn", ".bzr", ".fossil")


@dataclasses.dataclass(frozen=True)
class RepoRoot:
    """Where a module's code lives: root import path, VCS, URL, subdirectory."""

    root: str
    vcs: str
    url: str
    subdir: str = ""


@dataclasses.dataclass(frozen=True)
class RepoRule:
    """An explicit mapping: module paths matching pattern live in the repo at url.

    url is a template: ``{root}`` is the matched repository root import path,
    ``{host}`` its first element and ``{path}`` the rest, e.g.
    ``ssh://git@git.corp.example/{path}.git`` or ``file:///srv/git/{root}``.
    subdir (optional) is a directory inside that repository holding the root.
    """

    pattern: str
    url: str
    subdir: str = ""

    @classmethod
    def parse(cls, text: str) -> RepoRule:
        """Parse ``"<pattern> <url template> [subdir]"``."""
        fields = text.split()
        if len(fields) not in (2, 3):
            raise ConfigError(f"direct rule {text!r}: want '<pattern> <url> [subdir]'")
        return cls(fields[0], fields[1], fields[2] if len(fields) == 3 else "")

    def root_for(self, module: str) -> str | None:
        """The repository root for module if the pattern matches it, else None."""
        pattern = self.pattern.rstrip("/")
        if not pattern or not paths.match_prefix_patterns(pattern, module):
            return None
        n = pattern.count("/") + 1
        return "/".join(module.split("/")[:n])

    def repo_root(self, root: str) -> RepoRoot:
        """Expand the URL template for a matched root."""
        host, _, rest = root.partition("/")
        url = self.url.replace("{root}", root).replace("{host}", host).replace("{path}", rest)
        return RepoRoot(root=root, vcs="git", url=url, subdir=self.subdir.strip("/"))


@dataclasses.dataclass(frozen=True)
class MetaImport:
    """One ``<meta name="go-import" content="prefix vcs url [subdir]">`` entry."""

    prefix: str
    vcs: str
    url: str
    subdir: str = ""


class _MetaParser(html.parser.HTMLParser):
    """Collects go-import metas until ``<body>`` or ``</head>``, as the go command does."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imports: list[MetaImport] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag.lower() == "body":
            self.done = True
            return
        if tag.lower() != "meta":
            return
        values = {k.lower(): v or "" for k, v in reversed(attrs)}
        if values.get("name") != "go-import":
            return
        fields = values.get("content", "").split()
        if len(fields) in (3, 4):
            sub = fields[3] if len(fields) == 4 else ""
            self.imports.append(MetaImport(fields[0], fields[1], fields[2], sub))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag.lower() == "head":
            self.done = True


def parse_meta_go_imports(text: str) -> list[MetaImport]:
    """Parse go-import metas; ``mod`` entries first, superseding same-prefix VCS entries."""
    parser = _MetaParser()
    parser.feed(text)
    parser.close()
    imports = parser.imports
    mods = [m for m in imports if m.vcs == "mod"]
    have = {m.prefix for m in mods}
    return mods + [m for m in imports if m.vcs != "mod" and m.prefix not in have]


def _has_path_prefix(s: str, prefix: str) -> bool:
    return s == prefix or (s.startswith(prefix) and (prefix.endswith("/") or s[len(prefix)] == "/"))


def match_go_import(imports: list[MetaImport], path: str) -> MetaImport:
    """Pick the entry whose prefix covers path; raise NotFound on none or ambiguity."""
    match: MetaImport | None = None
    for im in imports:
        if not _has_path_prefix(path, im.prefix):
            continue
        if match is not None:
            if match.vcs == "mod" and im.vcs != "mod":
                break
            raise NotFound(f"multiple meta tags match import path {path!r}")
        match = im
    if match is None:
        raise NotFound(f"no go-import meta tags match {path}")
    return match


class _OverrideResolver(AbstractResolver):
    """Sends chosen host names to fixed ``ip:port`` addresses (like curl --resolve)."""

    def __init__(self, overrides: Mapping[str, str], fallback: AbstractResolver) -> None:
        self._overrides = dict(overrides)
        self._fallback = fallback

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self._overrides.get(host)
        if target is None:
            return await self._fallback.resolve(host, port, family)
        ip, _, p = target.rpartition(":")
        return [
            ResolveResult(
                hostname=host, host=ip, port=int(p), family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        await self._fallback.close()


@dataclasses.dataclass(frozen=True)
class DiscoverySettings:
    """Knobs of :class:`Discoverer`; see ``DirectConfig`` for their meaning."""

    rules: tuple[RepoRule, ...] = ()
    known_hosts: bool = True
    go_get: bool = True
    insecure: str = ""
    timeout: float = 30.0
    cache_ttl: float = 300.0
    resolve: Mapping[str, str] = dataclasses.field(default_factory=dict)


class Discoverer:
    """Resolves module paths to repositories (see the module docstring for the order)."""

    def __init__(self, settings: DiscoverySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._pages: dict[str, tuple[float, list[MetaImport] | Exception]] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def find(self, module: str) -> RepoRoot:
        """Return the repository holding module, or raise NotFound / UpstreamError."""
        best: tuple[int, RepoRule, str] | None = None
        for rule in self.settings.rules:
            root = rule.root_for(module)
            if root is not None:
                n = root.count("/")
                if best is None or n > best[0]:
                    best = (n, rule, root)
        if best is not None:
            return best[1].repo_root(best[2])
        if self.settings.known_hosts:
            found = self._known_host(module)
            if found is not None:
                return found
        if self.settings.go_get:
            return await self._go_get(module)
        raise NotFound(f"no repository rule matches {module}")

    def _known_host(self, module: str) -> RepoRoot | None:
        for prefix, regexp, no_suffix in _KNOWN:
            if not _has_path_prefix(module, prefix):
                continue
            m = regexp.match(module)
            if m is None:
                raise NotFound(f"invalid {prefix} import path {module!r}")
            root = m.group("root")
            if no_suffix and root.endswith(_VCS_SUFFIXES):
                raise NotFound(f"invalid version control suffix in {prefix}/ path")
            return RepoRoot(root=root, vcs="git", url=f"https://{root}")
        m = _QUALIFIED.search(module)
        if m is None:
            return None
        if m.group("vcs") != "git":
            raise NotFound(f"{module}: version control system {m.group('vcs')} is not supported")
        scheme = "http" if self._insecure(module) else "https"
        return RepoRoot(root=m.group("root"), vcs="git", url=f"{scheme}://{m.group('repo')}")

    def _insecure(self, module: str) -> bool:
        return bool(self.settings.insecure) and paths.match_prefix_patterns(
            self.settings.insecure, module
        )

    async def _go_get(self, module: str) -> RepoRoot:
        imports, page = await self._imports(module)
        mi = match_go_import(imports, module)
        if mi.prefix != module:
            imports2, page2 = await self._imports(mi.prefix)
            try:
                again = match_go_import(imports2, module)
            except NotFound:
                again = None
            if again != mi:
                raise NotFound(f"{page} and {page2} disagree about go-import for {mi.prefix}")
        if mi.subdir.startswith(("/", "-")):
            raise NotFound(f"{page}: invalid subdirectory {mi.subdir!r}")
        scheme = urllib.parse.urlsplit(mi.url).scheme
        if not scheme:
            raise NotFound(f"{page}: invalid repo root {mi.url!r}: no scheme")
        if scheme == "file":
            raise NotFound(f"{page}: invalid repo root {mi.url!r}: file scheme disallowed")
        if mi.vcs not in ("git", "mod"):
            raise NotFound(f"{page}: version control system {mi.vcs} is not supported")
        return RepoRoot(root=mi.prefix, vcs=mi.vcs, url=mi.url, subdir=mi.subdir)

    async def _imports(self, path: str) -> tuple[list[MetaImport], str]:
        host, _, rest = path.partition("/")
        if "." not in host:
            raise NotFound(f"{path}: import path does not begin with hostname")
        page = f"{host}/{rest}?go-get=1"
        now = time.monotonic()
        cached = self._pages.get(path)
        if cached is not None and now - cached[0] < self.settings.cache_ttl:
            result = cached[1]
        else:
            try:
                result = await self._fetch_imports(host, "/" + rest, path)
            except (NotFound, UpstreamError) as exc:
                result = exc
            if len(self._pages) > 1024:
                self._pages.clear()
            self._pages[path] = (now, result)
        if isinstance(result, Exception):
            raise result
        return result, page

    async def _client(self) -> aiohttp.ClientSession:
        async with self._lock:
            if self._session is None:
                resolver: AbstractResolver = aiohttp.ThreadedResolver()
                if self.settings.resolve:
                    resolver = _OverrideResolver(self.settings.resolve, resolver)
                connector = aiohttp.TCPConnector(resolver=resolver)
                self._session = aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                    headers={"User-Agent": "gomirror (+go-get)"},
                )
            return self._session

    async def _fetch_imports(self, host: str, path: str, module: str) -> list[MetaImport]:
        session = await self._client()
        insecure = self._insecure(module)
        schemes = ("https", "http") if insecure else ("https",)
        last: Exception | None = None
        for scheme in schemes:
            url = f"{scheme}://{host}{path}?go-get=1"
            kwargs: dict[str, Any] = {"ssl": False} if insecure and scheme == "https" else {}
            try:
                async with session.get(url, **kwargs) as resp:
                    body = await resp.content.read(1 << 20)
                    imports = parse_meta_go_imports(body.decode("utf-8", "replace"))
                    if not imports:
                        if resp.status in (404, 410):
                            raise NotFound(f"reading {url}: {resp.status} {resp.reason}")
                        if resp.status != 200:
                            raise UpstreamError(f"reading {url}: {resp.status} {resp.reason}")
                        raise NotFound(f"no go-import meta tag found in {url}")
                    return imports
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = exc
        what = "http/https" if insecure else "https"
        raise UpstreamError(f"{what} fetch {host}{path}?go-get=1 failed: {type(last).__name__}")
