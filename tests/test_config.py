"""Tests for config: precedence, validation errors naming the key, embedded defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from gomirror.config import DEFAULT_UPSTREAM, SETTINGS, Config, load_config
from gomirror.errors import ConfigError


def test_embedded_defaults_need_no_configuration() -> None:
    cfg = load_config(env={})
    assert cfg.listen_host == "127.0.0.1" and cfg.listen_port == 8080
    assert cfg.upstream == DEFAULT_UPSTREAM
    assert "goproxy.cn" in cfg.upstream and "proxy.golang.org" in cfg.upstream
    assert cfg.sumdb == ("sum.golang.org",)
    assert cfg.mutable_ttl == 60.0


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text(
        'listen = "127.0.0.1:9000"\nmutable_ttl = 5\npolicy = "failover"\nupstream = "https://a.example"\n'
    )
    cfg = load_config(
        config_file=f,
        env={"GOMIRROR_MUTABLE_TTL": "7", "GOMIRROR_UPSTREAM": "https://b.example"},
        overrides={"upstream": "https://c.example", "listen": None},
    )
    assert cfg.listen_port == 9000
    assert cfg.policy == "failover"
    assert cfg.mutable_ttl == 7.0
    assert cfg.upstream == "https://c.example"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GOMIRROR_LISTEN": "nonsense"}, "invalid setting listen (from GOMIRROR_LISTEN)"),
        ({"GOMIRROR_MUTABLE_TTL": "-1"}, "invalid setting mutable_ttl"),
        ({"GOMIRROR_POLICY": "random"}, "invalid setting policy"),
        ({"GOMIRROR_WORKERS": "0"}, "invalid setting workers"),
        ({"GOMIRROR_ACCESS_LOG": "maybe"}, "invalid setting access_log"),
        ({"GOMIRROR_UPSTREAM": " , | "}, "invalid setting upstream"),
        ({"GOMIRROR_BOGUS": "1"}, "unknown setting GOMIRROR_BOGUS"),
    ],
)
def test_invalid_settings_name_the_key(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(env=env)
    assert needle in str(e.value)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("listen = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=bad, env={})
    unknown = tmp_path / "u.toml"
    unknown.write_text('colour = "blue"\n')
    with pytest.raises(ConfigError, match="unknown setting colour"):
        load_config(config_file=unknown, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(config_file=tmp_path / "missing.toml", env={})


def test_every_setting_has_a_config_field() -> None:
    fields = set(Config.__dataclass_fields__)
    for s in SETTINGS:
        for f in s.fields or (s.key,):
            assert f in fields, s.key


def test_list_and_rule_values(tmp_path: Path) -> None:
    cfg = load_config(env={"GOMIRROR_SUMDB": "sum.golang.org; example.com+1234+abc https://x"})
    assert cfg.sumdb == ("sum.golang.org", "example.com+1234+abc https://x")
    f = tmp_path / "r.toml"
    f.write_text('[direct_rules]\n"git.corp.example/*" = "ssh://git@git.corp.example/{path}.git"\n')
    cfg = load_config(config_file=f, env={})
    assert cfg.direct_rules == (("git.corp.example/*", "ssh://git@git.corp.example/{path}.git"),)
