"""wiring builds the optional parts of the composition root: direct mode and the checksum database.

Kept apart from ``app`` so the composition root reads as a list of steps.
Private modules (``private`` patterns) are added to the no-sumdb patterns, and
the ``/sumdb/`` pass-through is wrapped in ``PrivateGuard``, which refuses
lookups of them, so their names never reach a checksum database, even from a
misconfigured client. Settings arrive parsed and validated by ``config``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp

from gomirror.config import Config
from gomirror.storage.base import Storage
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.events import RouteEvents
from gomirror.sumdb.guard import PrivateGuard
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.transport import HttpSumdbTransport, database_routes
from gomirror.sumdb.verifier import NoVerifier, SumdbVerifier
from gomirror.upstream.base import Upstream
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.transfer import TransferLimits
from gomirror.upstream.verified import Verifier

log = logging.getLogger(__name__)


def join_patterns(*lists: str) -> str:
    return ",".join(p for p in lists if p)


def build_direct(cfg: Config) -> Upstream:
    d = cfg.direct
    return DirectUpstream(
        DirectConfig(
            cache_dir=cfg.cache.cache_dir / "_gomirror" / "direct",
            rules=d.direct_rules,
            insecure=d.goget_insecure,
            tokens=dict(d.git_tokens),
            git_config=d.git_config,
            git_timeout=d.git_timeout,
            max_git_processes=d.git_concurrency,
        )
    )


@dataclass(frozen=True, slots=True)
class SumdbParts:
    """The verifier for downloads, the ``/sumdb/`` handler for clients, and the clients behind both."""

    verifier: Verifier
    handler: PrivateGuard | None
    clients: tuple[SumdbClient, ...]


def build_sumdb(
    cfg: Config,
    storage: Storage,
    session: aiohttp.ClientSession,
    events: RouteEvents | None = None,
) -> SumdbParts:
    specs = cfg.sumdb.sumdb
    if not specs:
        log.warning("checksum database verification is off: upstream content is not verified")
        return SumdbParts(NoVerifier(), None, ())
    mirrors = [e.target for e in cfg.upstream.entries if not e.is_keyword]
    clients = [
        SumdbClient(
            s.verifier_key,
            HttpSumdbTransport(
                database_routes(s.name, s.url, mirrors),
                session,
                name=s.name,
                # A route is a third party like a mirror: the same redirect and rate rules.
                limits=TransferLimits(cfg.upstream.min_transfer_rate, cfg.upstream.rate_grace),
                follow_redirects=cfg.upstream.follow_redirects,
            ),
            storage,
            events=events,
        )
        for s in specs
    ]
    verifier = SumdbVerifier(
        clients[0], nosumdb=join_patterns(cfg.sumdb.nosumdb, cfg.direct.private)
    )
    guard = PrivateGuard(SumdbPassThrough(clients), cfg.direct.private)
    return SumdbParts(verifier, guard, tuple(clients))
