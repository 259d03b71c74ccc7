"""wiring builds the optional parts of the composition root: direct mode and the sumdb.

Kept apart from ``app`` so the composition root reads as a list of steps.
Private modules (``private`` patterns) are added to the no-sumdb patterns, and
the ``/sumdb/`` pass-through refuses lookups of them, so their names never
reach a checksum database, even from a misconfigured client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp

from gomirror.config import Config
from gomirror.errors import ConfigError, GomirrorError
from gomirror.module.paths import match_prefix_patterns, unescape_path
from gomirror.server.http import RawAnswer, SumdbHandler
from gomirror.service import Verifier
from gomirror.storage.base import Storage
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.transport import HttpSumdbTransport
from gomirror.sumdb.verifier import NoVerifier, SumdbSpec, SumdbVerifier, parse_sumdb_spec
from gomirror.upstream.base import Upstream
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.discovery import RepoRule
from gomirror.upstream.goproxy import parse_goproxy

log = logging.getLogger(__name__)


def join_patterns(*lists: str) -> str:
    return ",".join(p for p in lists if p)


def build_direct(cfg: Config) -> Upstream:
    tokens: dict[str, str] = {}
    for item in cfg.git_tokens:
        host, sep, token = item.partition("=")
        if not sep or not host.strip() or not token.strip():
            raise ConfigError("invalid setting git_tokens: expected HOST=TOKEN entries")
        tokens[host.strip()] = token.strip()
    return DirectUpstream(
        DirectConfig(
            cache_dir=cfg.cache_dir / "_gomirror" / "direct",
            rules=tuple(RepoRule(pat, url) for pat, url in cfg.direct_rules),
            insecure=cfg.goget_insecure,
            tokens=tokens,
            git_config=cfg.git_config,
            git_timeout=cfg.git_timeout,
            max_git_processes=cfg.git_concurrency,
        )
    )


def sumdb_routes(spec: SumdbSpec, upstream: str) -> list[str]:
    """Where to reach a database: its explicit URL, else every mirror's pass-through, then direct."""
    if spec.url:
        return [spec.url]
    mirrors = [f"{e.target}/sumdb/{spec.name}" for e in parse_goproxy(upstream) if not e.is_keyword]
    return [*mirrors, f"https://{spec.name}"]


class PrivateGuard:
    """Wraps the pass-through: lookups of private modules are refused, never forwarded."""

    def __init__(self, inner: SumdbPassThrough, private: str) -> None:
        self._inner = inner
        self._private = private

    async def handle_path(self, rest: str) -> RawAnswer:
        parts = self._inner.split(rest)
        if parts is not None and parts[1].startswith("lookup/") and self._private:
            escaped = parts[1].removeprefix("lookup/").rpartition("@")[0]
            try:
                module = unescape_path(escaped)
            except GomirrorError:
                module = ""
            if module and match_prefix_patterns(self._private, module):
                return RawAnswer(
                    404,
                    "text/plain; charset=utf-8",
                    b"not found: private module paths are never sent to a checksum database\n",
                    "no-store",
                )
        r = await self._inner.handle_path(rest)
        return RawAnswer(r.status, r.content_type, r.body, r.cache_control)


def parse_specs(values: Sequence[str]) -> list[SumdbSpec]:
    specs: list[SumdbSpec] = []
    for value in values:
        try:
            spec = parse_sumdb_spec(value.strip())
        except ConfigError as e:
            raise ConfigError(f"invalid setting sumdb: {e}") from None
        if spec is None:
            if len(values) > 1:
                raise ConfigError("invalid setting sumdb: 'off' cannot be combined with databases")
            return []
        specs.append(spec)
    return specs


def build_sumdb(
    cfg: Config, storage: Storage, session: aiohttp.ClientSession
) -> tuple[Verifier, SumdbHandler | None]:
    specs = parse_specs(cfg.sumdb)
    if not specs:
        log.warning("checksum database verification is off: upstream content is not verified")
        return NoVerifier(), None
    transports = {s.name: HttpSumdbTransport(sumdb_routes(s, cfg.upstream), session) for s in specs}
    primary = specs[0]
    client = SumdbClient(primary.verifier_key, transports[primary.name], storage)
    verifier = SumdbVerifier(client, nosumdb=join_patterns(cfg.nosumdb, cfg.private))
    passthrough = SumdbPassThrough(
        transports, storage, verifier_keys={s.name: s.verifier_key for s in specs}
    )
    return verifier, PrivateGuard(passthrough, cfg.private)
