"""test_setup runs ``gomirror setup`` and checks every file and line it generates.

dev: the printed ``go env -w`` lines, and ``--apply`` changing a temporary GOENV
file as the real go command then reports it. ci: the YAML parses, caches are
keyed on go.sum, the shell steps parse with ``bash -n``. prod: gomirror.toml
loads with gomirror's own ``load_config``, the systemd unit passes
``systemd-analyze verify`` (and its structure is checked in any case), the
compose file parses and both health checks are valid Python hitting /healthz and
/readyz.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from gomirror.config import load_config

PUBLIC = "https://goproxy.cn|https://mirrors.aliyun.com/goproxy/|https://proxy.golang.org,direct"


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    (tmp / "home").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),
        "GOENV": str(tmp / "goenv"),
        "GOPATH": str(tmp / "gopath"),
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
    }
    env.update(extra)
    return env


def setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gomirror.cli.main", "setup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def go_env_json(env: dict[str, str], *names: str) -> dict[str, str]:
    out = subprocess.run(
        ["go", "env", "-json", *names], env=env, capture_output=True, text=True, check=True
    ).stdout
    data: dict[str, str] = json.loads(out)
    return data


def test_dev_prints_go_env_lines(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    proc = setup(
        env,
        "--profile",
        "dev",
        "--server",
        "http://gm.corp.internal:8080/",
        "--private",
        "git.corp.example,*.internal",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "go env -w GOPROXY=http://gm.corp.internal:8080",
        "go env -w GOSUMDB=sum.golang.org",
        "go env -w 'GOPRIVATE=git.corp.example,*.internal'",
        "go env -w GONOPROXY=none",
        "go env -w 'GONOSUMDB=git.corp.example,*.internal'",
    ]
    assert not (tmp_path / "goenv").exists()


def test_dev_public_json(tmp_path: Path) -> None:
    proc = setup(
        clean_env(tmp_path), "--profile", "dev", "--public", "--private", "x.corp", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["settings"] == {
        "GOPROXY": PUBLIC,
        "GOSUMDB": "sum.golang.org",
        "GOPRIVATE": "x.corp",
        "GONOPROXY": "x.corp",
        "GONOSUMDB": "x.corp",
    }
    assert data["commands"][0] == f"go env -w 'GOPROXY={PUBLIC}'"


def test_dev_apply_writes_goenv_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    before = go_env_json(env, "GOPROXY", "GOPRIVATE")
    assert before == {"GOPROXY": "https://proxy.golang.org,direct", "GOPRIVATE": ""}
    proc = setup(
        env,
        "--profile",
        "dev",
        "--server",
        "http://127.0.0.1:9999",
        "--private",
        "git.corp.example",
        "--apply",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert go_env_json(env, "GOPROXY", "GOSUMDB", "GOPRIVATE", "GONOPROXY", "GONOSUMDB") == {
        "GOPROXY": "http://127.0.0.1:9999",
        "GOSUMDB": "sum.golang.org",
        "GOPRIVATE": "git.corp.example",
        "GONOPROXY": "none",
        "GONOSUMDB": "git.corp.example",
    }
    text = (tmp_path / "goenv").read_text()
    assert "GOPROXY=http://127.0.0.1:9999\n" in text
    assert f"wrote {tmp_path / 'goenv'}" in proc.stdout
    # The diff table shows before and after of the changed variables, nothing volatile.
    assert "GOPROXY" in proc.stdout and "https://proxy.golang.org,direct" in proc.stdout
    assert "GOGCCFLAGS" not in proc.stdout
    again = setup(env, "--profile", "dev", "--server", "http://127.0.0.1:9999", "--apply", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["diff"] == []


def test_dev_apply_overridden_by_environment(tmp_path: Path) -> None:
    env = clean_env(tmp_path, GOPROXY="https://other.example")
    proc = setup(env, "--profile", "dev", "--server", "http://127.0.0.1:9999", "--apply")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "not in effect: GOPROXY is 'https://other.example'" in proc.stdout
    assert "GOPROXY=http://127.0.0.1:9999" in (tmp_path / "goenv").read_text()


def test_dev_apply_refused_by_go(tmp_path: Path) -> None:
    proc = setup(clean_env(tmp_path, GOENV="off"), "--profile", "dev", "--apply")
    assert proc.returncode == 2
    assert "go env -w failed" in proc.stderr and "GOENV=off" in proc.stderr


def test_usage_errors(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert setup(env, "--profile", "ci", "--apply").returncode == 2
    assert setup(env, "--profile", "dev", "--server", "ftp://x").returncode == 2
    assert setup(env, "--profile", "dev", "--public", "--server", "http://x").returncode == 2
    assert setup(env, "--profile", "qa").returncode == 2


def _bash_parses(script: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{script}\n{proc.stderr}"


def test_ci_files_without_server(tmp_path: Path) -> None:
    out = tmp_path / "ci"
    proc = setup(clean_env(tmp_path), "--profile", "ci", "--out", str(out), "--private", "x.corp")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "Jenkinsfile",
        "github-actions.yml",
        "gitlab-ci.yml",
    ]
    gh: dict[Any, Any] = yaml.safe_load((out / "github-actions.yml").read_text())
    job = gh["jobs"]["build"]
    assert job["env"]["GOPROXY"] == PUBLIC and job["env"]["GONOSUMDB"] == "x.corp"
    cache = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache"))
    assert "hashFiles('**/go.sum')" in cache["with"]["key"]
    assert "~/go/pkg/mod" in cache["with"]["path"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert any("gomirror prefetch --cache-dir" in r for r in runs), runs
    for r in runs:
        _bash_parses(r)
    gl: dict[Any, Any] = yaml.safe_load((out / "gitlab-ci.yml").read_text())
    assert gl["variables"]["GOPROXY"] == PUBLIC
    assert gl["test"]["cache"]["key"] == {"files": ["go.sum"]}
    script = gl["test"]["before_script"] + gl["test"]["script"]
    assert any("gomirror prefetch" in line for line in script)
    _bash_parses("\n".join(script))
    jf = (out / "Jenkinsfile").read_text()
    assert f"GOPROXY = '{PUBLIC}'" in jf
    assert jf.count("cacheValidityDecidingFile: 'go.sum'") == 2
    assert "gomirror prefetch" in jf
    assert sum(c == "{" for c in jf) == sum(c == "}" for c in jf)
    # No overwriting without --force.
    again = setup(clean_env(tmp_path), "--profile", "ci", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


def test_ci_files_with_team_server(tmp_path: Path) -> None:
    proc = setup(
        clean_env(tmp_path), "--profile", "ci", "--server", "https://gm.corp.example", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    gh = yaml.safe_load(files["github-actions.yml"])
    assert gh["jobs"]["build"]["env"]["GOPROXY"] == "https://gm.corp.example"
    assert not any("prefetch" in s.get("run", "") for s in gh["jobs"]["build"]["steps"])
    gl = yaml.safe_load(files["gitlab-ci.yml"])
    assert gl["variables"]["GOPROXY"] == "https://gm.corp.example"
    assert "GOPROXY = 'https://gm.corp.example'" in files["Jenkinsfile"]


def _unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            sections[current].append((key, value))
    return sections


def prod(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "deploy"
    cache = tmp_path / "cache"
    proc = setup(
        clean_env(tmp_path),
        "--profile",
        "prod",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--private",
        "git.corp.example",
        "--workers",
        "3",
        "--bin",
        f"{sys.executable} -m gomirror.cli.main",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "Dockerfile",
        "compose.yaml",
        "gomirror.service",
        "gomirror.toml",
    ]
    return out


def test_prod_toml_loads_with_gomirror_loader(tmp_path: Path) -> None:
    out = prod(tmp_path)
    text = (out / "gomirror.toml").read_text()
    for section in ("[server]", "[cache]", "[upstream]", "[sumdb]", "[direct]"):
        assert section in text, text
    config = load_config(config_file=out / "gomirror.toml", env={})
    assert (config.server.listen_host, config.server.listen_port) == ("0.0.0.0", 8080)
    assert config.server.workers == 3
    assert config.cache.cache_dir == tmp_path / "cache"
    assert config.upstream.policy == "failover"
    assert config.upstream.upstream.startswith("https://goproxy.cn|")
    assert [s.name for s in config.sumdb.sumdb] == ["sum.golang.org"]
    assert config.direct.private == "git.corp.example"


def test_prod_systemd_unit(tmp_path: Path) -> None:
    out = prod(tmp_path)
    unit = out / "gomirror.service"
    s = _unit_sections(unit.read_text())
    service = dict(s["Service"])
    assert service["Type"] == "simple"
    assert service["ExecStart"] == (
        f"{sys.executable} -m gomirror.cli.main serve --config /etc/gomirror/gomirror.toml"
    )
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == str(tmp_path / "cache")
    assert service["Restart"] == "on-failure"
    assert dict(s["Install"])["WantedBy"] == "multi-user.target"
    assert "network-online.target" in dict(s["Unit"])["After"]
    # systemd-analyze verify is the real judge where the systemd package is installed (it
    # runs without a booted systemd: it only loads the unit). The structure above is checked
    # on every machine; .ci/run should install systemd so this runs in CI too.
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        proc = subprocess.run(
            [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        # Unknown keys or sections are only warnings: any message is a defect.
        assert proc.stderr.strip() == "", proc.stderr


def test_prod_docker_and_compose(tmp_path: Path) -> None:
    out = prod(tmp_path, "--cache-dir", "/var/cache/gomirror")
    dockerfile = (out / "Dockerfile").read_text().splitlines()
    assert next(ln for ln in dockerfile if not ln.startswith("#")).startswith("FROM ")
    health = next(i for i, ln in enumerate(dockerfile) if ln.startswith("HEALTHCHECK"))
    cmd = json.loads(dockerfile[health + 1].strip().removeprefix("CMD "))
    assert cmd[:2] == ["python3", "-c"] and "/healthz" in cmd[2]
    compile(cmd[2], "healthcheck", "exec")
    final = json.loads(next(ln for ln in dockerfile if ln.startswith("CMD ")).removeprefix("CMD "))
    assert final == ["gomirror", "serve", "--config", "/etc/gomirror/gomirror.toml"]
    assert "COPY deploy/gomirror.toml /etc/gomirror/gomirror.toml" in dockerfile
    compose: dict[Any, Any] = yaml.safe_load((out / "compose.yaml").read_text())
    svc = compose["services"]["gomirror"]
    assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert svc["ports"] == ["8080:8080"]
    assert "./gomirror.toml:/etc/gomirror/gomirror.toml:ro" in svc["volumes"]
    test = svc["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python3", "-c"] and "/readyz" in test[3]
    compile(test[3], "readiness", "exec")
    assert "gomirror-cache" in compose["volumes"]
    unit = (out / "gomirror.service").read_text()
    assert "CacheDirectory=gomirror\n" in unit
