"""Tests for config: sections, precedence, parsing at load, errors naming the key, flags per command."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from gomirror.cli.common import add_config_options, config_from_args
from gomirror.cli.main import build_parser
from gomirror.config import (
    DEFAULT_UPSTREAM,
    SECTIONS,
    SETTINGS,
    Config,
    DirectSection,
    load_config,
)
from gomirror.errors import ConfigError
from gomirror.sumdb.note import generate_key
from gomirror.sumdb.verifier import SumdbSpec
from gomirror.upstream.discovery import RepoRule
from gomirror.upstream.goproxy import Entry

SECRET = "s3cr3t-t0ken-value"


def _toml(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "gomirror.toml"
    f.write_text(text)
    return f


def _error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(**kwargs)  # type: ignore[arg-type]
    return str(e.value)


# --- the table itself ---------------------------------------------------------


def test_every_setting_targets_fields_of_its_section() -> None:
    for s in SETTINGS:
        assert s.section in SECTIONS, s.key
        names = {f.name for f in dataclasses.fields(SECTIONS[s.section])}
        for target in s.targets:
            assert target in names, s.key


def test_every_section_field_is_set_by_exactly_one_setting() -> None:
    for name, cls in SECTIONS.items():
        targets = [t for s in SETTINGS if s.section == name for t in s.targets]
        assert sorted(targets) == sorted(f.name for f in dataclasses.fields(cls)), name


def test_keys_are_unique_and_a_key_named_like_a_section_takes_no_table() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert list(SECTIONS) == [f.name for f in dataclasses.fields(Config)]
    # At the top level a table named like a section is the section, so such a key
    # (upstream, sumdb) must never accept a table value itself.
    for s in SETTINGS:
        if s.key in SECTIONS:
            with pytest.raises(ValueError):
                s.parse({"x": "y"})


def test_top_level_key_named_like_its_section(tmp_path: Path) -> None:
    f = _toml(tmp_path, 'upstream = "https://a.example"\nsumdb = "off"\n')
    cfg = load_config(config_file=f, env={})
    assert cfg.upstream.upstream == "https://a.example" and cfg.sumdb.sumdb == ()


# --- defaults ---------------------------------------------------------------------


def test_embedded_defaults_need_no_configuration() -> None:
    cfg = load_config(env={})
    assert cfg == Config()
    assert (cfg.server.listen_host, cfg.server.listen_port) == ("127.0.0.1", 8080)
    assert cfg.server.workers == 1 and cfg.server.access_log is True
    assert cfg.upstream.upstream == DEFAULT_UPSTREAM
    assert [e.target for e in cfg.upstream.entries] == [
        "https://goproxy.cn",
        "https://mirrors.aliyun.com/goproxy",
        "https://proxy.golang.org",
    ]
    assert all(e.fallback_on_error for e in cfg.upstream.entries[:2])
    assert [s.name for s in cfg.sumdb.sumdb] == ["sum.golang.org"]
    assert cfg.sumdb.sumdb[0].verifier_key.startswith("sum.golang.org+033de0ae+")
    assert cfg.cache.mutable_ttl == 60.0 and cfg.cache.negative_ttl == 30.0
    assert cfg.direct.git_tokens == {} and cfg.direct.direct_rules == ()
    hash(cfg)  # frozen and hashable, although git_tokens is a mapping


def test_config_is_immutable() -> None:
    cfg = load_config(env={"GOMIRROR_GIT_TOKENS": f"git.corp.example={SECRET}"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.workers = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.direct.git_tokens["x"] = "y"  # type: ignore[index]


# --- TOML sections ------------------------------------------------------------------


def test_sections_in_toml(tmp_path: Path) -> None:
    f = _toml(
        tmp_path,
        '[server]\nlisten = "0.0.0.0:9000"\nworkers = 3\naccess_log = false\n'
        '[cache]\ncache_dir = "/var/cache/gm"\nmutable_ttl = 5\n'
        '[upstream]\nupstream = "https://a.example,direct"\npolicy = "failover"\n'
        '[sumdb]\nsumdb = ["off"]\nnosumdb = "corp.example"\n'
        '[direct]\nprivate = "git.corp.example"\ngit_concurrency = 2\n'
        '[direct.direct_rules]\n"git.corp.example/*" = "ssh://git@git.corp.example/{path}.git"\n'
        "[direct.git_tokens]\n"
        f'"git.corp.example" = "{SECRET}"\n',
    )
    cfg = load_config(config_file=f, env={})
    assert (cfg.server.listen_host, cfg.server.listen_port, cfg.server.workers) == (
        "0.0.0.0",
        9000,
        3,
    )
    assert cfg.server.access_log is False
    assert cfg.cache.cache_dir == Path("/var/cache/gm") and cfg.cache.mutable_ttl == 5.0
    assert cfg.upstream.entries == (
        Entry("https://a.example", False),
        Entry("direct", False),
    )
    assert cfg.upstream.policy == "failover"
    assert cfg.sumdb.sumdb == () and cfg.sumdb.nosumdb == "corp.example"
    assert cfg.direct.private == "git.corp.example" and cfg.direct.git_concurrency == 2
    assert cfg.direct.direct_rules == (
        RepoRule("git.corp.example/*", "ssh://git@git.corp.example/{path}.git"),
    )
    assert dict(cfg.direct.git_tokens) == {"git.corp.example": SECRET}


def test_top_level_keys_still_work(tmp_path: Path) -> None:
    f = _toml(
        tmp_path,
        'listen = "127.0.0.1:9001"\nupstream = "https://a.example"\nmutable_ttl = 9\n'
        '[direct_rules]\n"go.corp.example/*" = "https://git.corp.example/go/{path}.git sub/dir"\n',
    )
    cfg = load_config(config_file=f, env={})
    assert cfg.server.listen_port == 9001
    assert cfg.upstream.entries == (Entry("https://a.example", False),)
    assert cfg.cache.mutable_ttl == 9.0
    assert cfg.direct.direct_rules == (
        RepoRule("go.corp.example/*", "https://git.corp.example/go/{path}.git", "sub/dir"),
    )


def test_key_in_the_wrong_section_names_the_right_one(tmp_path: Path) -> None:
    f = _toml(tmp_path, '[server]\nupstream = "https://a.example"\n')
    msg = _error(config_file=f, env={})
    assert "setting upstream belongs in section [upstream], not [server]" in msg
    assert str(f) in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('colour = "blue"\n', "unknown setting colour in"),
        ("[colour]\nx = 1\n", "unknown setting colour in"),
        ("[server]\ncolour = 1\n", "unknown setting server.colour in"),
        ("server = 1\n", "[server] in"),
        ('listen = "127.0.0.1:1"\n[server]\nlisten = "127.0.0.1:2"\n', "listen is given twice"),
        ("listen = \n", "not valid TOML"),
        ("[cache]\nmutable_ttl = -3\n", "invalid setting mutable_ttl (from "),
    ],
)
def test_config_file_errors(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in _error(config_file=_toml(tmp_path, text), env={})


def test_missing_config_file(tmp_path: Path) -> None:
    assert "cannot read config file" in _error(config_file=tmp_path / "missing.toml", env={})
    env = {"GOMIRROR_CONFIG": str(tmp_path / "missing.toml")}
    assert "cannot read config file" in _error(env=env)


# --- precedence ------------------------------------------------------------------------


def test_env_overrides_file_and_flags_override_env(tmp_path: Path) -> None:
    f = _toml(
        tmp_path,
        '[server]\nlisten = "127.0.0.1:9000"\n[cache]\nmutable_ttl = 5\n'
        '[upstream]\npolicy = "failover"\nupstream = "https://a.example"\n',
    )
    cfg = load_config(
        config_file=f,
        env={"GOMIRROR_MUTABLE_TTL": "7", "GOMIRROR_UPSTREAM": "https://b.example"},
        overrides={"upstream": "https://c.example", "listen": None},
    )
    assert cfg.server.listen_port == 9000  # file; the unset flag does not count
    assert cfg.upstream.policy == "failover"  # file
    assert cfg.cache.mutable_ttl == 7.0  # env over file
    assert cfg.upstream.upstream == "https://c.example"  # flag over env over file
    assert cfg.upstream.entries == (Entry("https://c.example", False),)


def test_config_file_from_env(tmp_path: Path) -> None:
    f = _toml(tmp_path, "[cache]\nnegative_ttl = 1\n")
    assert load_config(env={"GOMIRROR_CONFIG": str(f)}).cache.negative_ttl == 1.0


def test_flags_parsed_from_the_command_line_win(tmp_path: Path) -> None:
    f = _toml(tmp_path, '[sumdb]\nnosumdb = "a.example"\n')
    p = argparse.ArgumentParser()
    add_config_options(p, "serve")
    args = p.parse_args(
        ["--config", str(f), "--nosumdb", "b.example", "--workers", "2", "--sumdb", "off"]
    )
    cfg = config_from_args(args)
    assert cfg.sumdb.nosumdb == "b.example"
    assert cfg.server.workers == 2
    assert cfg.sumdb.sumdb == ()


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"invalid setting workers \(from --workers\)"):
        load_config(env={}, overrides={"workers": "0"})


# --- values parsed at load ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GOMIRROR_LISTEN": "nonsense"}, "invalid setting listen (from GOMIRROR_LISTEN)"),
        ({"GOMIRROR_MUTABLE_TTL": "-1"}, "invalid setting mutable_ttl"),
        ({"GOMIRROR_POLICY": "random"}, "invalid setting policy"),
        ({"GOMIRROR_WORKERS": "0"}, "invalid setting workers"),
        ({"GOMIRROR_ACCESS_LOG": "maybe"}, "invalid setting access_log"),
        ({"GOMIRROR_BOGUS": "1"}, "unknown setting GOMIRROR_BOGUS"),
        ({"GOMIRROR_GIT_CONFIG": "/nonexistent/gitconfig"}, "invalid setting git_config"),
    ],
)
def test_invalid_settings_name_the_key(env: dict[str, str], needle: str) -> None:
    assert needle in _error(env=env)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (" , | ", "contains no entries"),
        ("ftp://mirror.example", "invalid proxy URL scheme"),
        ("file:///srv/goproxy", "file:// upstreams are not supported"),
    ],
)
def test_upstream_syntax_errors_at_load_name_upstream(value: str, reason: str) -> None:
    msg = _error(env={"GOMIRROR_UPSTREAM": value})
    assert msg.startswith("invalid setting upstream (from GOMIRROR_UPSTREAM): ")
    assert reason in msg
    assert msg.count("invalid setting") == 1


def test_sumdb_specs_parsed_at_load() -> None:
    _, key = generate_key("example.com")
    cfg = load_config(env={"GOMIRROR_SUMDB": f"sum.golang.org; {key} https://x.example"})
    assert cfg.sumdb.sumdb[1] == SumdbSpec("example.com", key, "https://x.example")
    assert cfg.sumdb.sumdb[0].name == "sum.golang.org"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("not-a-key+x", "invalid setting sumdb (from GOMIRROR_SUMDB): invalid GOSUMDB"),
        (
            "sum.golang.org ftp://x",
            "invalid setting sumdb (from GOMIRROR_SUMDB): invalid GOSUMDB URL",
        ),
        (
            "off;sum.golang.org",
            "invalid setting sumdb (from GOMIRROR_SUMDB): 'off' cannot be combined",
        ),
        ("sum.golang.org;off", "'off' cannot be combined"),
        (";", "use 'off' to disable verification"),
    ],
)
def test_sumdb_errors_name_the_key(value: str, needle: str) -> None:
    assert needle in _error(env={"GOMIRROR_SUMDB": value})


def test_sumdb_off_combined_from_repeated_flags() -> None:
    msg = _error(env={}, overrides={"sumdb": ["off", "sum.golang.org"]})
    assert "invalid setting sumdb (from --sumdb): 'off' cannot be combined" in msg


def test_git_tokens_parsed_at_load_and_never_shown() -> None:
    cfg = load_config(
        env={"GOMIRROR_GIT_TOKENS": f"git.corp.example={SECRET}; Other.Example:8443=user:{SECRET}"}
    )
    assert dict(cfg.direct.git_tokens) == {
        "git.corp.example": SECRET,
        "other.example:8443": f"user:{SECRET}",
    }
    for text in (repr(cfg), str(cfg), repr(cfg.direct), str(cfg.direct)):
        assert SECRET not in text
    assert cfg == dataclasses.replace(cfg)
    hash(cfg)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (SECRET, "entry 1 is not HOST=TOKEN"),
        (f"git.corp.example={SECRET};git.corp.example=x{SECRET}", "given twice"),
        ("git.corp.example=", "token for git.corp.example is empty"),
        (f"https://git.corp.example={SECRET}", "does not name a host"),
    ],
)
def test_git_token_errors_name_the_key_but_not_the_token(value: str, needle: str) -> None:
    msg = _error(env={"GOMIRROR_GIT_TOKENS": value})
    assert msg.startswith("invalid setting git_tokens (from GOMIRROR_GIT_TOKENS): ")
    assert needle in msg
    assert SECRET not in msg


def test_git_config_must_exist(tmp_path: Path) -> None:
    gc = tmp_path / "gitconfig"
    gc.write_text("[core]\n")
    assert load_config(env={"GOMIRROR_GIT_CONFIG": str(gc)}).direct.git_config == gc


def test_direct_rules_from_env() -> None:
    cfg = load_config(
        env={
            "GOMIRROR_DIRECT_RULES": "a.example/*=file:///srv/{path}; b.example/x/*=git@b.example:{path}.git"
        }
    )
    assert cfg.direct.direct_rules == (
        RepoRule("a.example/*", "file:///srv/{path}"),
        RepoRule("b.example/x/*", "git@b.example:{path}.git"),
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a.example/*", "expected PATTERN=URL-TEMPLATE"),
        ("a.example/*=ftp://x/{path}", "URL must use"),
        ("a.example/*=https://x/{repo}", "unknown placeholder {repo}"),
        ("a.example/[x=https://x/{path}", "unclosed"),
        ("a.example,b.example=https://x/{path}", "one module path glob"),
        ("a.example=https://x/{path} /abs", "subdirectory must be relative"),
    ],
)
def test_direct_rule_errors_name_the_key(value: str, needle: str) -> None:
    msg = _error(env={"GOMIRROR_DIRECT_RULES": value})
    assert msg.startswith("invalid setting direct_rules (from GOMIRROR_DIRECT_RULES): ")
    assert needle in msg


def test_direct_section_default_tokens_are_empty_and_private() -> None:
    assert "git_tokens" not in repr(DirectSection())


# --- flags per command -------------------------------------------------------------------


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices[command]
    assert isinstance(p, argparse.ArgumentParser)
    return p


def _options(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


def test_add_config_options_adds_only_the_commands_flags() -> None:
    serve, verify = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_config_options(serve, "serve")
    add_config_options(verify, "verify")
    assert {"--listen", "--workers", "--cache-dir", "--sumdb"} <= _options(serve)
    assert {"--cache-dir", "--sumdb", "--upstream", "--private", "--config"} <= _options(verify)
    assert not {"--listen", "--workers"} & _options(verify)


def test_serve_and_verify_parsers() -> None:
    assert {"--listen", "--workers"} <= _options(_subparser("serve"))
    verify = _options(_subparser("verify"))
    assert "--cache-dir" in verify
    assert "--listen" not in verify and "--workers" not in verify
