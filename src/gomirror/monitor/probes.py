"""monitor.probes reads one mirror's answer for the consistency monitor and asks the database about it.

The parsers turn a ``Fetched`` into the value the comparisons need and raise
``InvalidContent`` for an answer that breaks the protocol's rules: the
``@v/list`` versions, the ``@latest`` ``Info`` (a canonical version valid for
the module), any ``.info`` (its ``Version`` is compared across mirrors, not
required to match, so a different one is a mismatch finding rather than a
broken answer), and the ``h1:`` of a ``.mod`` that parses and names the module.

``sum_check`` asks the checksum database about one ``h1:`` and never raises:
a contradiction is ``mismatch`` (with the database's ``h1:``); a database that
says it has no such version is ``unknown``; one that cannot be reached is
``unreachable``; one that misbehaves (bad signature, fork, bad proof) is
``inconsistent``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gomirror.errors import (
    ChecksumMismatch,
    NotFound,
    SumdbError,
    UpstreamError,
    VerificationError,
)
from gomirror.module.dirhash import hash_gomod
from gomirror.module.gomod import check_gomod_module
from gomirror.module.info import Info, check_info_body, check_list_body, parse_info, parse_list
from gomirror.monitor.drift import SumCheck
from gomirror.sumdb.routes import SumdbUnavailable
from gomirror.upstream.base import Fetched
from gomirror.upstream.verified import Kind, Verifier


def first_line(e: BaseException) -> str:
    """The first line of an error, bounded, for findings and logs."""
    return str(e).split("\n", 1)[0][:300] or type(e).__name__


async def parse_list_answer(f: Fetched) -> list[str]:
    check_list_body(f.body)
    return parse_list(f.body)


def latest_parser(module: str) -> Callable[[Fetched], Awaitable[Info]]:
    async def parse(f: Fetched) -> Info:
        return check_info_body(f.body, module, None)

    return parse


async def any_info(f: Fetched) -> Info:
    return parse_info(f.body)


def mod_parser(module: str, version: str) -> Callable[[Fetched], Awaitable[str]]:
    async def parse(f: Fetched) -> str:
        check_gomod_module(f.body, module, version)
        return hash_gomod(f.body)

    return parse


async def sum_check(verifier: Verifier, module: str, version: str, kind: Kind, h1: str) -> SumCheck:
    """The database's word on h1 (see the module docstring); never raises."""
    try:
        verdict = await verifier.check(module, version, kind, h1)
    except ChecksumMismatch as e:
        return SumCheck("mismatch", h1, first_line(e), e.expected)
    except SumdbUnavailable as e:
        return SumCheck("unreachable", h1, first_line(e))
    except SumdbError as e:
        return SumCheck("inconsistent", h1, first_line(e))
    except VerificationError as e:
        if isinstance(e.__cause__, NotFound):
            return SumCheck("unknown", h1, first_line(e))
        return SumCheck("unreachable", h1, first_line(e))
    except (NotFound, UpstreamError, OSError) as e:
        return SumCheck("unreachable", h1, first_line(e))
    return SumCheck("verified" if verdict.verified else "skipped", h1)
