"""test_diagnose checks each settings rule on a GoEnv built by hand: its code, severity and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gomirror.tools.diagnose import check_settings, recommend_goproxy
from gomirror.tools.findings import Finding, Verdict
from gomirror.tools.goenv import GoEnv
from gomirror.tools.project import GoModInfo, Project, Requirement

BASE = {
    "GOPROXY": "https://proxy.golang.org,direct",
    "GOSUMDB": "sum.golang.org",
    "GOTOOLCHAIN": "auto",
    "GOAUTH": "netrc",
    "GOVERSION": "go1.27.3",
}


def env(explicit: tuple[str, ...] = (), /, **values: str) -> GoEnv:
    return GoEnv({**BASE, **values}, "environment", environ=frozenset(explicit or values))


def project(*paths: str, go: str = "1.21") -> Project:
    mod = GoModInfo("example.com/app", go, "", [Requirement(p, "v1.0.0") for p in paths])
    return Project(Path(), mod, [], [], True)


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


def test_defaults_are_clean() -> None:
    assert check_settings(env()) == []
    assert Verdict(()).exit_code == 0


@pytest.mark.parametrize(
    ("value", "drop", "demote", "want"),
    [
        ("a.example,b.example,direct", (), (), "https://a.example|https://b.example,direct"),
        ("https://a|https://b|https://c", {"https://b"}, (), "https://a|https://c"),
        ("https://a,https://b|direct", (), {"https://a"}, "https://b|https://a|direct"),
        ("https://a,direct,https://b", (), (), "https://a,direct"),
        ("https://a", {"https://a"}, (), "https://proxy.golang.org,direct"),
        ("off", (), (), "off"),
    ],
)
def test_recommend_goproxy(value: str, drop: set[str], demote: set[str], want: str) -> None:
    assert recommend_goproxy(value, drop, demote) == want


def test_private_modules_need_no_direct_when_gonoproxy_matches() -> None:
    # proxy.go: a non-empty GONOPROXY adds an implicit "noproxy" entry first, so
    # matching modules are fetched direct even though GOPROXY has no "direct".
    e = env(
        ("GOPRIVATE",),
        GOPROXY="https://goproxy.cn",
        GOPRIVATE="git.corp.example",
        GONOPROXY="git.corp.example",
        GONOSUMDB="git.corp.example",
    )
    assert check_settings(e, project("git.corp.example/a")) == []


def test_private_module_through_team_gomirror_needs_only_gonosumdb() -> None:
    e = env(GOPROXY="http://gomirror.corp.internal:8080", GONOSUMDB="git.corp.example")
    assert check_settings(e, project("git.corp.example/a")) == []
    f = check_settings(env(GOPROXY="http://127.0.0.1:8080"), project("git.corp.example/a"))
    assert [(x.code, x.fix) for x in f] == [
        ("private-not-covered", ("go env -w GOPRIVATE=git.corp.example",))
    ]
    assert "public checksum database" in f[0].explanation
    assert "public mirrors" not in f[0].explanation


def test_explicit_gonoproxy_gets_the_fix() -> None:
    e = env(
        GOPROXY="https://goproxy.cn",
        GONOPROXY="other.example",
        GOPRIVATE="",
        GONOSUMDB="git.corp.example",
    )
    f = check_settings(e, project("git.corp.example/a", "other.example/b"))
    private = next(x for x in f if x.code == "private-not-covered")
    assert private.fix == ("go env -w GONOPROXY=other.example,git.corp.example",)


def test_boolean_patterns_and_spaces() -> None:
    f = check_settings(env(GONOSUMDB="1", GOPRIVATE="git.corp.example, *.internal"))
    by_code = {x.code: x for x in f}
    assert by_code["pattern-boolean"].fix == ("go env -u GONOSUMDB",)
    assert by_code["pattern-syntax"].fix == ("go env -w 'GOPRIVATE=git.corp.example,*.internal'",)


def test_goflags_and_toolchain_and_goauth() -> None:
    f = check_settings(env(GOFLAGS="-insecure"))
    assert [(x.code, x.fix) for x in f] == [("goflags-insecure", ("go env -u GOFLAGS",))]
    f = check_settings(env(GOTOOLCHAIN="local"), project(go="1.99"))
    assert [(x.code, x.severity, x.fix) for x in f] == [
        ("toolchain-too-old", "error", ("go env -w GOTOOLCHAIN=auto",))
    ]
    f = check_settings(env(), project(go="1.99"))
    assert [(x.code, x.severity) for x in f] == [("toolchain-download", "info")]
    assert Verdict(tuple(f)).exit_code == 0  # info alone is not a problem
    assert codes(check_settings(env(GOTOOLCHAIN="newest"))) == {"gotoolchain-syntax"}
    assert codes(check_settings(env(GOAUTH="git relative/dir"))) == {"goauth-syntax"}
    assert codes(check_settings(env(GOAUTH="off;netrc"))) == {"goauth-syntax"}


def test_gosumdb_variants() -> None:
    assert codes(check_settings(env(GOSUMDB="off"))) == {"gosumdb-off"}
    assert codes(check_settings(env(GOSUMDB="sum.golang.google.cn"))) == {"gosumdb-google-cn"}
    assert codes(check_settings(env(GOSUMDB="bogus"))) == {"gosumdb-syntax"}
    f = check_settings(env(GOSUMDB="sum.golang.org https://sum.golang.google.cn"))
    assert [(x.code, x.severity) for x in f] == [("gosumdb-explicit-url", "info")]


def test_http_proxy_only_bites_private_network_mirrors() -> None:
    proxied: dict[str, str] = {"HTTP_PROXY": "http://p:3128", "HTTPS_PROXY": "http://p:3128"}
    f = check_settings(env(GOPROXY="http://127.0.0.1:8080", **proxied))
    assert [(x.code, x.severity) for x in f] == [("http-proxy-loopback", "info")]
    assert check_settings(env(GOPROXY="https://goproxy.cn", **proxied)) == []
    f = check_settings(env(GOPROXY="http://10.1.2.3:8080", **proxied))
    assert [x.fix for x in f] == [("export NO_PROXY=10.1.2.3${NO_PROXY:+,$NO_PROXY}",)]
    assert (
        check_settings(env(GOPROXY="http://10.1.2.3:8080", NO_PROXY="10.0.0.0/8", **proxied)) == []
    )


def test_verdict_fix_lines_are_ordered_and_unique() -> None:
    a = Finding("a", "warning", "t", fix=("x", "y"))
    b = Finding("b", "error", "t", fix=("y", "z"))
    c = Finding("c", "info", "t", fix=("ignored",))
    v = Verdict((a, b, c))
    assert v.fix_lines == ["y", "z", "x"]
    assert v.summary() == "verdict: 1 error, 1 warning" and v.exit_code == 1
