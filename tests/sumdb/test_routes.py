"""test_routes checks how route failures add up to one error (routes.no_route_error)."""

from __future__ import annotations

from gomirror.errors import Gone, NotFound, SumdbError
from gomirror.server.responses import error_answer
from gomirror.sumdb.routes import RouteFailure, SumdbUnavailable, no_route_error

REJECTED = RouteFailure("https://evil", "rejected", "downloaded inconsistent tile\nmore detail")
MISSING = RouteFailure("https://lagging", "not_found", "404 Not Found")
GONE = RouteFailure("https://old", "gone", "410 Gone")
NO_PROXY = RouteFailure(
    "https://goproxy.example/sumdb/db", "unavailable", "does not proxy this checksum database"
)
DOWN = RouteFailure("https://db", "failed", "connection failed: refused")


def test_rejection_is_the_strongest_evidence() -> None:
    err = no_route_error("db", "tile/8/0/000", [MISSING, REJECTED, DOWN])
    assert type(err) is SumdbError
    assert str(err) == "downloaded inconsistent tile (served by https://evil)\nmore detail"
    two = no_route_error("db", "x", [REJECTED, RouteFailure("https://b", "rejected", "bad")])
    assert str(two).startswith(
        "downloaded inconsistent tile (served by https://evil; also rejected from https://b)"
    )


def test_not_found_only_from_routes_that_serve_the_database() -> None:
    err = no_route_error("db", "lookup/a@v1.0.0", [NO_PROXY, MISSING, DOWN])
    assert type(err) is NotFound
    assert str(err) == "lookup/a@v1.0.0: not found (https://lagging: 404 Not Found)"
    assert isinstance(no_route_error("db", "x", [GONE, NO_PROXY]), Gone)
    assert not isinstance(no_route_error("db", "x", [NO_PROXY, DOWN]), NotFound)


def test_unavailable_lists_routes_and_the_fix_within_what_go_shows() -> None:
    err = no_route_error("sum.golang.org", "lookup/a@v1.0.0", [NO_PROXY, DOWN])
    assert isinstance(err, SumdbUnavailable)
    answer = error_answer(err)
    assert answer.status == 502
    lines = answer.body.decode().splitlines()
    assert lines[0] == (
        "checksum database sum.golang.org unavailable: none of its 2 routes works (lookup/a@v1.0.0)"
    )
    assert lines[1:3] == [
        "  https://goproxy.example/sumdb/db: does not proxy this checksum database",
        "  https://db: connection failed: refused",
    ]
    assert lines[3].startswith("fix: ") and "goproxy.cn" in lines[3] and 'sumdb = "off"' in lines[3]
    assert str(err).encode() + b"\n" == answer.body  # nothing was cut
    many = no_route_error("db", "x", [DOWN] * 9)
    assert "... and 4 more" in str(many) and len(str(many).splitlines()) <= 8
