"""test_goenv_project_hosts checks GOPROXY parsing, HTTP proxy choice, go env reading, go.mod/go.sum
parsing and the private-host heuristic against the go command's documented rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gomirror.tools.goenv import (
    diff_env,
    format_proxy_list,
    go_env_w_line,
    http_proxy_for,
    parse_proxy_list,
    proxy_list_error,
    read_goenv,
)
from gomirror.tools.hosts import is_public_mirror, looks_private
from gomirror.tools.project import parse_go_sum, parse_requirements


def test_parse_proxy_list_follows_go_rules() -> None:
    entries = parse_proxy_list(" goproxy.cn | http://127.0.0.1:8080/ ,direct,https://never.example")
    assert [(e.url, e.sep, e.ignored) for e in entries] == [
        ("https://goproxy.cn", "|", False),
        ("http://127.0.0.1:8080/", ",", False),
        ("direct", ",", False),
        ("https://never.example", "", True),
    ]
    assert entries[0].fallback_on_error and not entries[1].fallback_on_error
    assert format_proxy_list(entries) == "https://goproxy.cn|http://127.0.0.1:8080/,direct"
    assert [e.url for e in parse_proxy_list("")] == ["https://proxy.golang.org", "direct"]
    assert proxy_list_error(parse_proxy_list(" , ")) == (
        "GOPROXY list is not the empty string, but contains no entries"
    )
    assert "invalid proxy URL scheme" in (proxy_list_error(parse_proxy_list("ftp://x")) or "")
    assert proxy_list_error(parse_proxy_list("file:///srv/goproxy,off")) is None


@pytest.mark.parametrize(
    ("url", "values", "want"),
    [
        ("http://127.0.0.1:8080", {"HTTP_PROXY": "p:3128"}, None),  # loopback: never proxied
        ("http://localhost:8080", {"HTTP_PROXY": "p:3128"}, None),
        ("http://gm.corp:8080", {"HTTP_PROXY": "p:3128"}, "http://p:3128"),
        ("https://gm.corp", {"HTTP_PROXY": "p:3128"}, None),  # https uses HTTPS_PROXY
        ("http://gm.corp", {"HTTP_PROXY": "p:3128", "NO_PROXY": ".corp"}, None),
        ("http://a.gm.corp", {"HTTP_PROXY": "p:3128", "NO_PROXY": "gm.corp"}, None),
        ("http://10.1.2.3", {"HTTP_PROXY": "p:3128", "NO_PROXY": "10.0.0.0/8"}, None),
        ("http://gm.corp:81", {"HTTP_PROXY": "p", "NO_PROXY": "gm.corp:80"}, "http://p"),
        ("http://gm.corp", {"HTTP_PROXY": "p", "NO_PROXY": "*"}, None),
    ],
)
def test_http_proxy_for(url: str, values: dict[str, str], want: str | None) -> None:
    assert http_proxy_for(url, values) == want


def test_read_goenv_without_go_uses_environment_then_goenv_file(tmp_path: Path) -> None:
    goenv = tmp_path / "env"
    goenv.write_text("GOPROXY=https://goproxy.cn\nGOPRIVATE=git.corp.example\nGONOSUMCHECK=1\n")
    env = {"PATH": str(tmp_path), "GOENV": str(goenv), "GOSUMDB": "off", "https_proxy": "p:1"}
    got = read_goenv(env)
    assert got.source == "environment" and got.go is None
    assert got.goproxy == "https://goproxy.cn"
    assert got.get("GOSUMDB") == "off"
    assert got.noproxy == "git.corp.example" and got.nosumdb == "git.corp.example"
    assert got.get("HTTPS_PROXY") == "p:1"
    assert got.explicit("GOPRIVATE") and not got.explicit("GONOPROXY")
    assert got.env_file["GONOSUMCHECK"] == "1"
    assert read_goenv({"PATH": str(tmp_path), "HOME": str(tmp_path)}).goproxy == (
        "https://proxy.golang.org,direct"
    )


def test_read_goenv_asks_the_real_go_command(tmp_path: Path) -> None:
    goenv = tmp_path / "env"
    goenv.write_text("GOPROXY=http://127.0.0.1:1|https://goproxy.cn\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GOENV": str(goenv)}
    got = read_goenv(env)
    assert got.source == "go env -json" and got.go
    assert got.goproxy == "http://127.0.0.1:1|https://goproxy.cn"
    assert got.get("GOVERSION").startswith("go1.")
    assert got.get("GOENV") == str(goenv)


def test_go_env_w_line_quotes_for_the_shell() -> None:
    assert go_env_w_line("GOPROXY", "a|b,direct") == "go env -w 'GOPROXY=a|b,direct'"
    assert go_env_w_line("GOSUMDB", "sum.golang.org") == "go env -w GOSUMDB=sum.golang.org"
    assert diff_env({"A": "1", "B": "2"}, {"A": "1", "B": "3", "C": "4"}) == [
        ("B", "2", "3"),
        ("C", "", "4"),
    ]


def test_parse_requirements_blocks_comments_replace() -> None:
    gomod = b"""module example.com/app // the app

go 1.22
toolchain go1.23.1

require git.corp.example/x v1.0.0
require (
\trsc.io/quote v1.5.2 // indirect
\t"golang.org/x/text" v0.3.0
)
replace rsc.io/quote => ../quote
replace (
\tgolang.org/x/text v0.3.0 => example.com/text v0.3.1
)
exclude rsc.io/sampler v1.99.0
"""
    info = parse_requirements(gomod)
    assert info.module == "example.com/app" and info.go == "1.22" and info.toolchain == "go1.23.1"
    assert [(r.path, r.version, r.indirect) for r in info.require] == [
        ("git.corp.example/x", "v1.0.0", False),
        ("rsc.io/quote", "v1.5.2", True),
        ("golang.org/x/text", "v0.3.0", False),
    ]
    rep = info.replacement_for("rsc.io/quote", "v1.5.2")
    assert rep is not None and rep.is_local
    rep = info.replacement_for("golang.org/x/text", "v0.3.0")
    assert rep is not None and (rep.new_path, rep.new_version) == ("example.com/text", "v0.3.1")
    assert info.exclude == [("rsc.io/sampler", "v1.99.0")]


def test_parse_go_sum() -> None:
    sums, bad = parse_go_sum("a.io/x v1.0.0 h1:AAA=\na.io/x v1.0.0/go.mod h1:BBB=\n\nbroken line\n")
    assert [(s.path, s.version, s.kind, s.h1, s.lineno) for s in sums] == [
        ("a.io/x", "v1.0.0", "zip", "h1:AAA=", 1),
        ("a.io/x", "v1.0.0", "mod", "h1:BBB=", 2),
    ]
    assert bad == [4]


@pytest.mark.parametrize(
    ("path", "private"),
    [
        ("github.com/a/b", False),
        ("golang.org/x/text", False),
        ("gopkg.in/yaml.v3", False),
        ("go.uber.org/zap", False),
        ("k8s.io/api", False),
        ("example.com/lib", False),  # a vanity domain is public unless it says otherwise
        ("gitlab.com/a/b", False),
        ("git.corp.example/team/lib", True),
        ("code.internal/x", True),
        ("gitlab.mycompany.com/g/p", True),
        ("svc.corp.acme.com/x", True),
        ("10.0.0.5/x", True),
        ("intranet/x", True),
    ],
)
def test_looks_private(path: str, private: bool) -> None:
    assert looks_private(path) is private


def test_public_mirrors() -> None:
    assert is_public_mirror("https://goproxy.cn")
    assert is_public_mirror("https://mirrors.aliyun.com/goproxy/")
    assert not is_public_mirror("http://127.0.0.1:8080")
