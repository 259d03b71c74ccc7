"""test_redirect_targets: a mirror redirecting to a URL that is not http(s) is a bad mirror, not a 500.

A redirect's ``Location`` may name any scheme (``file:``, ``ftp:``, ``data:``),
no host at all, or a port out of range. Each must be refused as that mirror's
failure (a short ``502`` with the mirror alone) and, with ``A|B``, mean asking
B, for every file kind; nothing may surface as an unexpected exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gomirror import app
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/redirects/mod", "v1.0.0"
LOCATIONS = ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,x", "http://h:99999/x", "http:"]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def mirrors(corpus: Corpus) -> Iterator[tuple[UpstreamSimulator, UpstreamSimulator]]:
    with UpstreamSimulator(corpus, name="a") as a, UpstreamSimulator(corpus, name="b") as b:
        yield a, b


@pytest.mark.parametrize("location", LOCATIONS)
def test_a_redirect_to_an_unsupported_url_fails_that_mirror_only(
    mirrors: tuple[UpstreamSimulator, UpstreamSimulator],
    corpus: Corpus,
    tmp_path: Path,
    location: str,
) -> None:
    a, b = mirrors
    a.fail("*", 302, headers={"Location": location})
    mv = corpus[M, V]

    async def main() -> None:
        for upstream, want in ((a.url, 502), (f"{a.url}|{b.url}", 200)):
            cfg = quiet_config(tmp_path / str(want), upstream, monitor="false")
            async with app.build(cfg) as parts, app.serve(parts) as port:
                base = f"http://127.0.0.1:{port}/{M}/@v"
                async with aiohttp.ClientSession() as s:
                    for suffix, body in (("list", None), (f"{V}.mod", mv.mod), (f"{V}.zip", None)):
                        async with s.get(f"{base}/{suffix}") as r:
                            got = await r.read()
                            assert r.status == want, (upstream, suffix, r.status, got[:200])
                            if want == 200 and body is not None:
                                assert got == body
                            if want != 200:
                                assert b"internal error" not in got

    asyncio.run(main())
