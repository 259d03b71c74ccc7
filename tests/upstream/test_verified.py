"""Tests for upstream.verified: only checked content comes out of a VerifiedUpstream.

The mirror is a real ``HttpUpstream`` against an ``UpstreamSimulator`` on
loopback, whose ``replace_body``/``flip_byte`` faults tamper with what it
serves. The checksum database is ``FakeDatabase``, an in-process test double
implementing the ``Verifier`` protocol (``check``/``prefetch``) from a table
of known hashes; the real sumdb client and verifier are tested under tests/sumdb.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror.errors import (
    ChecksumMismatch,
    InvalidContent,
    NotFound,
    SumdbError,
    UpstreamTimeout,
    VerificationError,
)
from gomirror.upstream import verified as verified_module
from gomirror.upstream.base import Checked, Fetched
from gomirror.upstream.chain import Chain
from gomirror.upstream.policy import Link
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.verified import Kind, VerifiedUpstream, verdict_dict
from support.corpus import Corpus, build_zip, h1_mod, h1_zip
from support.simulator import UpstreamSimulator

M, V = "example.com/verified/mod", "v1.2.0"
BASE = f"/{M}/@v/{V}"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass(frozen=True)
class FakeVerdict:
    verified: bool
    db: str | None
    note: str


class FakeDatabase:
    """Checksum-database test double: knows the right hashes, or fails as told."""

    def __init__(self, known: dict[tuple[str, str, Kind], str]) -> None:
        self.known = known
        self.checks: list[tuple[str, str, Kind, str]] = []
        self.prefetches: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None
        self.prefetch_gate: asyncio.Event | None = None
        self.prefetch_cancelled = False

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> FakeVerdict:
        self.checks.append((module, version, kind, h1))
        if self.fail_with is not None:
            raise self.fail_with
        want = self.known.get((module, version, kind))
        if want is None:
            return FakeVerdict(False, None, "skipped: not in table")
        if want != h1:
            raise ChecksumMismatch(module, version, "go.mod" if kind == "mod" else kind, want, h1)
        return FakeVerdict(True, "test.db", "verified")

    async def prefetch(self, module: str, version: str) -> None:
        self.prefetches.append((module, version))
        if self.prefetch_gate is not None:
            try:
                await self.prefetch_gate.wait()
            except asyncio.CancelledError:
                self.prefetch_cancelled = True
                raise


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror") as s:
        yield s


@pytest.fixture
def db(corpus: Corpus) -> FakeDatabase:
    mv = corpus[M, V]
    return FakeDatabase({(M, V, "mod"): mv.gomod_h1, (M, V, "zip"): mv.h1})


def verified(
    session: aiohttp.ClientSession, sim: UpstreamSimulator, db: FakeDatabase
) -> VerifiedUpstream:
    http = HttpUpstream(sim.url, session, connect_timeout=2, read_timeout=5)
    return VerifiedUpstream(http, db)


def call(sim: UpstreamSimulator, db: FakeDatabase, op: str, *args: Any) -> Any:
    async def main() -> Any:
        async with aiohttp.ClientSession() as session:
            up = verified(session, sim, db)
            try:
                return await getattr(up, op)(*args)
            finally:
                await up.close()

    return run(main())


# --- .mod ----------------------------------------------------------------------------------


def test_good_mod_carries_its_h1_and_the_verdict(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus
) -> None:
    mv = corpus[M, V]
    got = call(sim, db, "mod", M, V)
    assert got.body == mv.mod
    assert got.source == sim.url
    assert got.checked == Checked(
        mv.gomod_h1, {"verified": True, "db": "test.db", "note": "verified"}
    )
    assert db.checks == [(M, V, "mod", mv.gomod_h1)]
    assert db.prefetches == [(M, V)]  # the lookup was started alongside the download


def test_tampered_mod_is_a_checksum_mismatch(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus
) -> None:
    evil = f"module {M}\n\nrequire example.com/evil v1.0.0\n".encode()
    sim.add_fault(f"{BASE}.mod", replace_body=evil)
    with pytest.raises(ChecksumMismatch) as info:
        call(sim, db, "mod", M, V)
    err = info.value
    assert err.expected == corpus[M, V].gomod_h1
    assert err.got == h1_mod(evil)
    assert str(err).startswith(f"checksum mismatch for {M}@{V}/go.mod: sumdb has h1:")


def test_mod_for_another_module_is_invalid_content(
    sim: UpstreamSimulator, db: FakeDatabase
) -> None:
    sim.add_fault(f"{BASE}.mod", replace_body=b"module example.com/other/v3\n")
    with pytest.raises(InvalidContent):
        call(sim, db, "mod", M, V)
    assert db.checks == []  # never asked the database about content that is broken anyway


def test_unknown_to_the_database_is_a_skipped_verdict_not_an_error(
    sim: UpstreamSimulator, corpus: Corpus
) -> None:
    db = FakeDatabase({})
    got = call(sim, db, "mod", M, V)
    assert got.checked is not None
    assert got.checked.verdict == {"verified": False, "db": None, "note": "skipped: not in table"}


# --- .zip ----------------------------------------------------------------------------------


def test_good_zip_is_checked_while_written(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus, tmp_path: Path
) -> None:
    mv = corpus[M, V]
    dst = tmp_path / "x.zip"
    first: list[int] = []
    got = call(sim, db, "zip", M, V, dst, lambda: first.append(1))
    assert dst.read_bytes() == mv.zip
    assert got.body == b""
    assert got.checked is not None
    assert got.checked.h1 == mv.h1
    assert got.checked.verdict["verified"] is True
    assert got.checked.size == len(mv.zip)  # the zip file's size
    assert got.checked.files == len(mv.files)
    assert first == [1]  # first_byte reaches the mirror and back
    assert db.checks == [(M, V, "zip", mv.h1)]


class BuiltZips:
    """An inner Upstream that writes zips itself and says what it wrote (as direct mode does)."""

    name = "builder"

    def __init__(self, body: bytes, built: Checked) -> None:
        self.body, self.built = body, built

    async def zip(self, module: str, version: str, dst: Path, first_byte: Any = None) -> Fetched:
        await asyncio.to_thread(dst.write_bytes, self.body)
        return Fetched(b"", self.name, built=self.built)

    async def close(self) -> None:
        pass


def test_a_zip_built_here_is_not_read_again_but_still_checked_against_the_database(
    db: FakeDatabase, corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mv = corpus[M, V]

    def no_reread(*args: Any) -> Any:
        raise AssertionError("the verifier read a zip it was told about")

    monkeypatch.setattr(verified_module, "check_zip", no_reread)

    async def fetch(h1: str) -> Fetched:
        inner = BuiltZips(mv.zip, Checked(h1, {}, len(mv.zip), len(mv.files)))
        up = VerifiedUpstream(inner, db)  # type: ignore[arg-type]  # zip is all it needs
        try:
            return await up.zip(M, V, tmp_path / "x.zip")
        finally:
            await up.close()

    got = run(fetch(mv.h1))
    assert got.checked is not None and got.built is None
    assert (got.checked.h1, got.checked.size, got.checked.files) == (
        mv.h1,
        len(mv.zip),
        len(mv.files),
    )
    assert got.checked.verdict["verified"] is True
    # What the build says is still held against the database.
    with pytest.raises(ChecksumMismatch):
        run(fetch("h1:" + "A" * 43 + "="))


def test_tampered_zip_is_a_checksum_mismatch(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus, tmp_path: Path
) -> None:
    # A well-formed zip for the same version with one file changed: only the database can tell.
    evil = build_zip(
        [(f"{M}@{V}/go.mod", corpus[M, V].mod or b""), (f"{M}@{V}/a.go", b"package evil\n")]
    )
    sim.add_fault(f"{BASE}.zip", replace_body=evil)
    with pytest.raises(ChecksumMismatch) as info:
        call(sim, db, "zip", M, V, tmp_path / "x.zip")
    assert info.value.expected == corpus[M, V].h1
    assert info.value.got == h1_zip(evil)
    assert info.value.kind == "zip"


@pytest.mark.parametrize("fault", ["garbage", "flip", "wrong-prefix"])
def test_broken_zip_is_invalid_content(
    sim: UpstreamSimulator, db: FakeDatabase, tmp_path: Path, fault: str
) -> None:
    if fault == "garbage":
        sim.add_fault(f"{BASE}.zip", replace_body=b"this is not a zip file at all")
    elif fault == "flip":
        sim.add_fault(f"{BASE}.zip", flip_byte=-10)  # inside the end-of-central-directory
    else:
        sim.add_fault(f"{BASE}.zip", replace_body=build_zip([("other@v1.0.0/a.go", b"x")]))
    with pytest.raises(InvalidContent):
        call(sim, db, "zip", M, V, tmp_path / "x.zip")
    assert db.checks == []


# --- .info, @latest, list -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"Version":"v1.3.0","Time":"2019-01-01T00:00:00Z"}',  # not the version asked for
        b'{"Version":"1.2.0","Time":"2019-01-01T00:00:00Z"}',  # not a canonical version
        b'{"Time":"2019-01-01T00:00:00Z"}',
    ],
)
def test_invalid_info_is_invalid_content(
    sim: UpstreamSimulator, db: FakeDatabase, body: bytes
) -> None:
    sim.add_fault(f"{BASE}.info", replace_body=body)
    with pytest.raises(InvalidContent):
        call(sim, db, "info", M, V)


def test_valid_info_passes_unchanged(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus
) -> None:
    got = call(sim, db, "info", M, V)
    assert got.body == corpus[M, V].info
    assert got.checked is None  # .info has no h1: nothing to verify against the database
    assert db.checks == []


def test_a_query_may_resolve_to_any_valid_version(sim: UpstreamSimulator, db: FakeDatabase) -> None:
    sim.add_query(M, "master", V)
    got = call(sim, db, "info", M, "master")
    assert b'"Version":"v1.2.0"' in got.body
    sim.add_fault(f"/{M}/@v/master.info", replace_body=b'{"Version":"master"}')
    with pytest.raises(InvalidContent):
        call(sim, db, "info", M, "master")


def test_latest_must_name_a_valid_version(sim: UpstreamSimulator, db: FakeDatabase) -> None:
    assert b"v1.2.0" in call(sim, db, "latest", M).body
    sim.add_fault(f"/{M}/@latest", replace_body=b'{"Version":"latest"}')
    with pytest.raises(InvalidContent):
        call(sim, db, "latest", M)


def test_list_must_be_text(sim: UpstreamSimulator, db: FakeDatabase) -> None:
    assert call(sim, db, "list", M).body == b"v1.2.0\n"
    sim.add_fault(f"/{M}/@v/list", replace_body=b"v1.0.0\n\x00v1.1.0\n")
    with pytest.raises(InvalidContent):
        call(sim, db, "list", M)
    sim.add_fault(f"/{M}/@v/list", replace_body=b"v1.0.0\n\xff\xfe\n")
    with pytest.raises(InvalidContent):
        call(sim, db, "list", M)


# --- the database failing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [NotFound("sum.golang.org: 404 not found"), UpstreamTimeout("sum.golang.org: timed out")],
    ids=["not-found", "upstream-error"],
)
def test_database_failures_become_verification_errors(
    sim: UpstreamSimulator, db: FakeDatabase, tmp_path: Path, failure: Exception
) -> None:
    db.fail_with = failure
    for op, args in (("mod", (M, V)), ("zip", (M, V, tmp_path / "x.zip"))):
        with pytest.raises(VerificationError) as info:
            call(sim, db, op, *args)
        err = info.value
        assert type(err) is VerificationError  # not a mismatch, not the mirror's fault
        assert str(err).startswith("checksum database unavailable: sum.golang.org:")
        assert err.__cause__ is failure


def test_a_misbehaving_database_error_passes_as_is(
    sim: UpstreamSimulator, db: FakeDatabase
) -> None:
    db.fail_with = SumdbError("tree is inconsistent")
    with pytest.raises(SumdbError, match="inconsistent"):
        call(sim, db, "mod", M, V)


def test_not_found_from_the_mirror_is_not_a_verification_error(
    sim: UpstreamSimulator, db: FakeDatabase
) -> None:
    sim.fail(f"{BASE}.mod", 404)
    with pytest.raises(NotFound) as info:
        call(sim, db, "mod", M, V)
    assert not isinstance(info.value, VerificationError)


# --- composition ------------------------------------------------------------------------------


def test_in_a_chain_a_tampered_mirror_is_passed_over(
    corpus: Corpus, db: FakeDatabase, tmp_path: Path
) -> None:
    mv = corpus[M, V]
    with (
        UpstreamSimulator(corpus, name="bad") as bad,
        UpstreamSimulator(corpus, name="good") as good,
    ):
        evil = f"module {M}\n// tampered\n".encode()
        bad.add_fault(f"{BASE}.mod", replace_body=evil)

        async def main() -> None:
            async with aiohttp.ClientSession() as session:
                chain = Chain(
                    [
                        Link(verified(session, bad, db), False),
                        Link(verified(session, good, db), False),
                    ]
                )
                got = await chain.mod(M, V)
                assert got.source == good.url
                assert got.body == mv.mod
                assert got.checked is not None and got.checked.h1 == mv.gomod_h1

        run(main())
    assert [c[3] for c in db.checks] == [h1_mod(evil), mv.gomod_h1]


def test_concurrent_checks_share_nothing(
    sim: UpstreamSimulator, db: FakeDatabase, corpus: Corpus, tmp_path: Path
) -> None:
    """A good and a tampered zip verified at once through one wrapper: each gets its own verdict."""
    evil = build_zip([(f"{M}@{V}/go.mod", corpus[M, V].mod or b""), (f"{M}@{V}/x.go", b"x")])
    sim.add_fault(f"{BASE}.zip", replace_body=evil, times=1, latency=0.05)

    async def main() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            up = verified(session, sim, db)
            return list(
                await asyncio.gather(
                    up.zip(M, V, tmp_path / "1.zip"),
                    up.zip(M, V, tmp_path / "2.zip"),
                    return_exceptions=True,
                )
            )

    results = run(main())
    mismatches = [r for r in results if isinstance(r, ChecksumMismatch)]
    good = [r for r in results if not isinstance(r, BaseException)]
    assert len(mismatches) == 1 and len(good) == 1
    assert mismatches[0].got == h1_zip(evil)
    assert good[0].checked.h1 == corpus[M, V].h1


def test_close_cancels_pending_lookups(sim: UpstreamSimulator, db: FakeDatabase) -> None:
    db.prefetch_gate = asyncio.Event()  # a lookup that never finishes by itself

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            up = verified(session, sim, db)
            await up.mod(M, V)
            await up.close()
            await asyncio.sleep(0)  # let the cancellation be delivered

    run(main())
    assert db.prefetches == [(M, V)]
    assert db.prefetch_cancelled


def test_verdict_dict_of_a_plain_object() -> None:
    class Bare:
        verified = True

    assert verdict_dict(Bare()) == {"verified": True}
    assert verdict_dict(FakeVerdict(False, None, "x")) == {
        "verified": False,
        "db": None,
        "note": "x",
    }
