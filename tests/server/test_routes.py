"""Tests for server.routes: raw request path → typed request, 400 vs 404, before any I/O."""

from __future__ import annotations

import pytest

from gomirror.errors import InvalidRequest, NotFound
from gomirror.server.routes import ModuleRequest, SumdbRequest, decode_path, parse_path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/rsc.io/quote/@v/list", ModuleRequest("list", "rsc.io/quote")),
        ("/rsc.io/quote/@latest", ModuleRequest("latest", "rsc.io/quote")),
        ("/rsc.io/quote/@v/v1.5.2.info", ModuleRequest("info", "rsc.io/quote", "v1.5.2")),
        ("/rsc.io/quote/@v/v1.5.2.mod", ModuleRequest("mod", "rsc.io/quote", "v1.5.2")),
        ("/rsc.io/quote/@v/v1.5.2.zip", ModuleRequest("zip", "rsc.io/quote", "v1.5.2")),
        ("/rsc.io/quote/v3/@v/v3.0.0.zip", ModuleRequest("zip", "rsc.io/quote/v3", "v3.0.0")),
        # Non-canonical .info queries are passed on as they are.
        ("/rsc.io/quote/@v/master.info", ModuleRequest("info", "rsc.io/quote", "master")),
        ("/rsc.io/quote/@v/v1.5.info", ModuleRequest("info", "rsc.io/quote", "v1.5")),
        (
            "/rsc.io/quote/@v/e7a685a342c0.info",
            ModuleRequest("info", "rsc.io/quote", "e7a685a342c0"),
        ),
        # Case encoding, raw and percent-escaped (the go command sends %21 for !).
        ("/rsc.io/!q!u!o!t!e/@v/list", ModuleRequest("list", "rsc.io/QUOTE")),
        ("/rsc.io/%21q%21u%21o%21t%21e/@v/list", ModuleRequest("list", "rsc.io/QUOTE")),
        (
            "/rsc.io/%21q%21u%21o%21t%21e/@v/v1.5.3-%21p%21r%21e.zip",
            ModuleRequest("zip", "rsc.io/QUOTE", "v1.5.3-PRE"),
        ),
        ("/rsc.io/quote/@v/!master.info", ModuleRequest("info", "rsc.io/quote", "Master")),
        (
            "/github.com/!azure/azure-sdk-for-go/@v/list",
            ModuleRequest("list", "github.com/Azure/azure-sdk-for-go"),
        ),
        # +incompatible, raw or escaped.
        (
            "/rsc.io/breaker/@v/v2.0.0+incompatible.zip",
            ModuleRequest("zip", "rsc.io/breaker", "v2.0.0+incompatible"),
        ),
        (
            "/rsc.io/breaker/@v/v2.0.0%2Bincompatible.mod",
            ModuleRequest("mod", "rsc.io/breaker", "v2.0.0+incompatible"),
        ),
        # Pseudo-versions.
        (
            "/golang.org/x/text/@v/v0.0.0-20170915032832-14c0d48ead0c.zip",
            ModuleRequest("zip", "golang.org/x/text", "v0.0.0-20170915032832-14c0d48ead0c"),
        ),
        # gopkg.in major suffix.
        ("/gopkg.in/yaml.v2/@v/v2.2.1.mod", ModuleRequest("mod", "gopkg.in/yaml.v2", "v2.2.1")),
        # A query string is ignored.
        ("/rsc.io/quote/@v/v1.5.2.zip?x=1", ModuleRequest("zip", "rsc.io/quote", "v1.5.2")),
    ],
)
def test_module_endpoints(raw: str, expected: ModuleRequest) -> None:
    assert parse_path(raw) == expected


def test_sumdb_paths_are_passed_on() -> None:
    assert parse_path("/sumdb/sum.golang.org/supported") == SumdbRequest("sum.golang.org/supported")
    assert parse_path("/sumdb/sum.golang.org/lookup/rsc.io/quote@v1.5.2") == SumdbRequest(
        "sum.golang.org/lookup/rsc.io/quote@v1.5.2"
    )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("/rsc.io/%zz/@v/list", "malformed percent-encoding"),
        ("/rsc.io/%2/@v/list", "malformed percent-encoding"),
        ("/rsc.io/quote%/@v/list", "malformed percent-encoding"),
        ("/rsc.io/quote/@v/%ff.info", "not valid UTF-8"),
        # Upper case in a raw path: the go command would have sent !x.
        ("/rsc.io/QUOTE/@v/list", "invalid module path"),
        ("/github.com/Azure/x/@latest", "invalid module path"),
        ("/rsc.io/!Q/@v/list", "invalid module path"),
        ("/rsc.io/quote!/@v/list", "invalid module path"),
        # Dot-dot and friends.
        ("/rsc.io/../x/@v/list", "invalid module path"),
        ("/rsc.io/%2e%2e/x/@v/list", "invalid module path"),
        ("/rsc.io/quote/@v/..info", "invalid version"),
        ("/rsc.io/quote/@v/.%2e.info", "invalid version"),
        ("/rsc.io/quote/@v/a%2Fb.info", "contains a slash"),
        ("/notadomain/@v/list", "invalid module path"),
        # .mod and .zip need a canonical version.
        ("/rsc.io/quote/@v/v1.5.zip", "not canonical"),
        ("/rsc.io/quote/@v/master.mod", "not canonical"),
        ("/rsc.io/quote/@v/v1.5.2+meta.zip", "not canonical"),
    ],
)
def test_malformed_requests_are_400(raw: str, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle) as exc:
        parse_path(raw)
    assert not isinstance(exc.value, NotFound)


@pytest.mark.parametrize(
    "raw",
    [
        "/",
        "/favicon.ico",
        "/robots.txt",
        "/rsc.io/quote",
        "/rsc.io/quote/@v/",
        "/rsc.io/quote/@v/.zip",
        "/rsc.io/quote/@v/v1.5.2.zi",
        "/rsc.io/quote/@v/v1.0.0.txt",
        "/rsc.io/quote/@v/list/extra",
        # Well-formed, but the version cannot belong to the module: 404 so clients fall through.
        "/rsc.io/quote/@v/v2.0.0.mod",
        "/rsc.io/quote/v3/@v/v1.0.0.zip",
    ],
)
def test_unknown_paths_are_404(raw: str) -> None:
    with pytest.raises(NotFound):
        parse_path(raw)


def test_decode_path_is_strict_and_drops_the_query() -> None:
    assert decode_path("/a/%21b/@v/list?go-get=1") == "/a/!b/@v/list"
    assert decode_path("/caf%C3%A9") == "/café"
    with pytest.raises(InvalidRequest):
        decode_path("/%C3")
