"""test_doctor runs ``gomirror doctor`` as a user would, against loopback mirrors and a real go env.

The go command's settings live in a temporary GOENV file, so doctor reads
them through a real ``go env -json``. Mirrors are ``UpstreamSimulator``
instances serving Go's testdata graph: one fast (it also carries a test
checksum database under ``/sumdb/<name>/``), one slow, one that accepts
connections and never answers, one that flips a byte of a ``.mod``. Doctor
must name each, print the fix lines, and exit 1; with only the fast mirror it
exits 0. Broken settings (``--offline``) must each produce their fix line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from support.corpus import Corpus
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb

QUOTE, SAMPLER, TEXT = "rsc.io/quote", "rsc.io/sampler", "golang.org/x/text"
TEXT_V = "v0.0.0-20170915032832-14c0d48ead0c"
GRAPH = [(QUOTE, "v1.5.2"), (SAMPLER, "v1.3.0"), (TEXT, TEXT_V)]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_go_testdata(only=[QUOTE, SAMPLER, TEXT])


def go_env(tmp: Path, goenv: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment whose go settings come only from the GOENV file ``goenv``."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "goenv").write_text(goenv)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp / "home"),
        "GOENV": str(tmp / "goenv"),
        "GOPATH": str(tmp / "gopath"),
        "GOCACHE": str(tmp / "gocache"),
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
    }
    env.update(extra or {})
    return env


def doctor(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gomirror.cli.main", "doctor", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_project(d: Path, corpus: Corpus, sums: list[str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    reqs = "".join(f"\t{m} {v}\n" for m, v in GRAPH)
    (d / "go.mod").write_text(f"module example.com/app\n\ngo 1.21\n\nrequire (\n{reqs})\n")
    if sums is None:
        sums = [line for m, v in GRAPH for line in corpus[(m, v)].go_sum_lines()]
    (d / "go.sum").write_text("".join(s + "\n" for s in sums))
    return d


@dataclasses.dataclass
class Mirrors:
    fast: UpstreamSimulator
    slow: UpstreamSimulator
    hang: UpstreamSimulator
    tamper: UpstreamSimulator
    db: TestSumdb


@pytest.fixture
def mirrors(corpus: Corpus) -> Iterator[Mirrors]:
    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    db = TestSumdb(source=source)  # served only through the fast mirror's /sumdb/ route

    async def sumdb(request: web.Request) -> web.Response:
        sub = request[SUBPATH]
        if sub == "/supported":
            return web.Response(text="")
        a = db.answer(sub)
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    sims = [UpstreamSimulator(corpus, name=n) for n in ("fast", "slow", "hang", "tamper")]
    for s in sims:
        s.start()
    fast, slow, hang, tamper = sims
    try:
        fast.mount(f"/sumdb/{db.name}", sumdb)
        slow.add_fault("*", latency=0.8)
        hang.add_fault("*", hang=True)
        tamper.add_fault(f"/{QUOTE}/@v/v1.5.2.mod", flip_byte=3)
        yield Mirrors(fast, slow, hang, tamper, db)
    finally:
        for s in sims:
            s.stop()


TIMEOUTS = ("--slow", "0.4", "--timeout", "1.5", "--connect-timeout", "2")


def test_names_slow_hanging_and_tampering_mirrors(
    tmp_path: Path, corpus: Corpus, mirrors: Mirrors
) -> None:
    m = mirrors
    goproxy = f"{m.fast.url}|{m.slow.url}|{m.hang.url}|{m.tamper.url},direct"
    env = go_env(tmp_path, f"GOPROXY={goproxy}\nGOSUMDB={TEST_VERIFIER_KEY}\n")
    app = write_project(tmp_path / "app", corpus)
    proc = doctor(env, tmp_path, "app", *TIMEOUTS)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    lines = out.splitlines()
    assert any(
        ln.startswith(f"ERROR {m.hang.url} accepts connections but never answers") for ln in lines
    ), out
    assert any(ln.startswith(f"WARN  {m.slow.url} is slow: first byte after") for ln in lines), out
    assert f"ERROR {m.tamper.url} serves a different {QUOTE}@v1.5.2/go.mod" in out, out
    assert m.fast.url not in "".join(ln for ln in lines if ln.startswith(("ERROR", "WARN"))), out
    # One GOPROXY fix: the hanging and tampering mirrors dropped, the slow one last, '|' between.
    fix = f"go env -w 'GOPROXY={m.fast.url}|{m.slow.url},direct'"
    assert lines[lines.index("fix:") + 1 :] == [f"  {fix}"], out
    assert f"checksum database {m.db.name}: proxy via {m.fast.url}/sumdb/{m.db.name}" in out
    # The database was reached only through the fast mirror; the go.sum matched it.
    looked_up = [p for p in m.fast.paths() if p.startswith(f"/sumdb/{m.db.name}/lookup/")]
    assert sorted(looked_up) == sorted(f"/sumdb/{m.db.name}/lookup/{p}@{v}" for p, v in GRAPH)
    assert "go.sum line" not in out
    assert (app / "go.sum").exists()


def test_json_report(tmp_path: Path, corpus: Corpus, mirrors: Mirrors) -> None:
    m = mirrors
    goproxy = f"{m.fast.url}|{m.tamper.url}|{m.slow.url}"
    env = go_env(tmp_path, f"GOPROXY={goproxy}\nGOSUMDB={TEST_VERIFIER_KEY}\n")
    write_project(tmp_path / "app", corpus)
    proc = doctor(env, tmp_path, "app", "--json", "--no-zips", *TIMEOUTS)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    assert report["source"] == "go env -json"
    assert report["settings"]["GOPROXY"] == goproxy
    codes = {(f["code"], f["subject"]) for f in report["findings"]}
    assert ("mirror-tampered", m.tamper.url) in codes
    assert ("proxy-slow", m.slow.url) in codes
    assert report["recommended_goproxy"] == f"{m.fast.url}|{m.slow.url}"
    assert report["verdict"]["fix"] == [f"go env -w 'GOPROXY={m.fast.url}|{m.slow.url}'"]
    outcomes = {p["target"]: p["outcome"] for p in report["probes"]["proxies"]}
    assert outcomes == {m.fast.url: "ok", m.tamper.url: "ok", m.slow.url: "slow"}
    fast = next(p for p in report["probes"]["proxies"] if p["target"] == m.fast.url)
    assert fast["connect"] is not None and fast["first_byte"] is not None
    assert not m.tamper.requests_for("*.zip"), "--no-zips fetched a zip"


def test_healthy_setup_exits_zero(tmp_path: Path, corpus: Corpus, mirrors: Mirrors) -> None:
    env = go_env(tmp_path, f"GOPROXY={mirrors.fast.url}\nGOSUMDB={TEST_VERIFIER_KEY}\n")
    write_project(tmp_path / "app", corpus)
    proc = doctor(env, tmp_path, "app", *TIMEOUTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: nothing wrong found" in proc.stdout
    proc = doctor(env, tmp_path, f"{QUOTE}@v1.5.2", *TIMEOUTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_project_and_module_problems(tmp_path: Path, corpus: Corpus, mirrors: Mirrors) -> None:
    m = mirrors
    env = go_env(tmp_path, f"GOPROXY={m.fast.url}\nGOSUMDB={TEST_VERIFIER_KEY}\n")
    sampler = corpus[(SAMPLER, "v1.3.0")]
    wrong = "h1:" + "A" * 43 + "="
    sums = [
        *corpus[(QUOTE, "v1.5.2")].go_sum_lines(),
        f"{SAMPLER} v1.3.0 {wrong}",
        f"{SAMPLER} v1.3.0/go.mod {sampler.gomod_h1}",
    ]  # and no line at all for golang.org/x/text
    write_project(tmp_path / "app", corpus, sums)
    proc = doctor(env, tmp_path, "app", *TIMEOUTS)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert f"ERROR go.sum line 3 for {SAMPLER}@v1.3.0 does not match the checksum database" in out
    assert f"go.sum has {wrong}, {m.db.name} has {sampler.h1}" in out
    assert (
        f"fix: grep -vF -e '{SAMPLER} v1.3.0 ' -e '{SAMPLER} v1.3.0/go.mod ' go.sum > go.sum.new"
        " && mv go.sum.new go.sum" in out
    ), out
    assert f"ERROR missing go.sum entry for {TEXT}@{TEXT_V}" in out
    assert "      fix: go mod tidy" in out

    proc = doctor(env, tmp_path, f"{QUOTE}@v1.99.0", *TIMEOUTS)
    assert proc.returncode == 1
    assert f"ERROR {QUOTE}@v1.99.0: unknown revision v1.99.0 (no proxy has it)" in proc.stdout
    assert f"fix: go get {QUOTE}@latest" in proc.stdout

    m.fast.fail(f"/{SAMPLER}/@v/v1.99.0.*", 410, "not found: gone\n")
    proc = doctor(env, tmp_path, f"{SAMPLER}@v1.99.0", *TIMEOUTS)
    assert proc.returncode == 1
    assert f"ERROR {SAMPLER}@v1.99.0/go.mod: 410 Gone from {m.fast.url}" in proc.stdout
    assert f"fix: go list -m -versions {SAMPLER}" in proc.stdout

    proc = doctor(env, tmp_path, f"{QUOTE}@v2.0.0", *TIMEOUTS)
    assert proc.returncode == 1
    assert f"ERROR {QUOTE}@v2.0.0: invalid version" in proc.stdout
    assert f"fix: go get {QUOTE}/v2@v2.0.0" in proc.stdout
    assert not m.fast.requests_for(f"/{QUOTE}/@v/v2.0.0.*"), "an invalid version was requested"


BROKEN = [
    pytest.param(
        "GOSUMDB=off\n",
        {},
        "ERROR GOSUMDB=off: downloads are not checked against the checksum database",
        ["go env -w GOSUMDB=sum.golang.org"],
        id="gosumdb-off",
    ),
    pytest.param(
        "GOSUMDB=sum.golang.google.cn\n",
        {},
        "WARN  GOSUMDB=sum.golang.google.cn bypasses GOPROXY",
        ["go env -w GOSUMDB=sum.golang.org"],
        id="gosumdb-google-cn",
    ),
    pytest.param(
        "GOPROXY=https://goproxy.cn,https://proxy.golang.org,direct\n",
        {},
        "WARN  GOPROXY uses ',' after https://goproxy.cn: when it is down the next mirror is never tried",
        ["go env -w 'GOPROXY=https://goproxy.cn|https://proxy.golang.org,direct'"],
        id="comma-for-pipe",
    ),
    pytest.param(
        "GOPROXY=off\n",
        {},
        "ERROR GOPROXY=off: every module download fails",
        [
            "go env -w 'GOPROXY=https://goproxy.cn|https://mirrors.aliyun.com/goproxy/"
            "|https://proxy.golang.org,direct'"
        ],
        id="goproxy-off",
    ),
    pytest.param(
        "GOFLAGS=-mod=mod -insecure\n",
        {},
        "WARN  GOFLAGS=-insecure: the flag was removed",
        ["go env -w GOFLAGS=-mod=mod"],
        id="goflags-insecure",
    ),
    pytest.param(
        "",
        {"GONOSUMCHECK": "1"},
        "WARN  GONOSUMCHECK is set, but the go command has no such variable",
        ["unset GONOSUMCHECK"],
        id="gonosumcheck",
    ),
    pytest.param(
        "GONOSUMDB=github.com,git.corp.example\nGOPRIVATE=git.corp.example\n",
        {},
        "WARN  GONOSUMDB covers public modules: github.com",
        ["go env -w GONOSUMDB=git.corp.example"],
        id="gonosumdb-public",
    ),
    pytest.param(
        "GOINSECURE=*\nGOPRIVATE=git.corp.example\n",
        {},
        "WARN  GOINSECURE covers public modules: *",
        ["go env -u GOINSECURE"],
        id="goinsecure-public",
    ),
    pytest.param(
        "GOPRIVATE=corp.example\n",
        {},
        "ERROR git.corp.example looks private but GOPRIVATE does not cover it (1 module)",
        ["go env -w 'GOPRIVATE=*.corp.example'"],
        id="private-pattern-mismatch",
    ),
    pytest.param(
        "",
        {},
        "ERROR git.corp.example looks private but GOPRIVATE does not cover it (1 module)",
        ["go env -w GOPRIVATE=git.corp.example"],
        id="goprivate-unset",
    ),
    pytest.param(
        "GOPROXY=http://gomirror.corp.internal:8080\nGOPRIVATE=git.corp.example\n",
        {"HTTP_PROXY": "http://proxy.corp.internal:3128"},
        "WARN  requests to http://gomirror.corp.internal:8080 go through "
        "HTTP_PROXY=http://proxy.corp.internal:3128",
        ["export NO_PROXY=gomirror.corp.internal${NO_PROXY:+,$NO_PROXY}"],
        id="http-proxy-without-no-proxy",
    ),
    pytest.param(
        "GOPROXY=127.0.0.1:8080\nGOPRIVATE=git.corp.example\n",
        {},
        "WARN  GOPROXY entry 127.0.0.1:8080 has no scheme: the go command uses https://127.0.0.1:8080",
        ["go env -w GOPROXY=http://127.0.0.1:8080"],
        id="goproxy-no-scheme",
    ),
]


@pytest.mark.parametrize(("goenv", "extra", "finding", "fixes"), BROKEN)
def test_broken_setting_gets_its_fix_line(
    tmp_path: Path, goenv: str, extra: dict[str, str], finding: str, fixes: list[str]
) -> None:
    env = go_env(tmp_path, goenv, extra)
    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text(
        "module example.com/app\n\ngo 1.21\n\nrequire git.corp.example/team/lib v1.0.0\n"
    )
    (app / "go.sum").write_text("git.corp.example/team/lib v1.0.0/go.mod h1:" + "B" * 43 + "=\n")
    proc = doctor(env, app, "--offline")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert finding in out.splitlines(), out
    fix_section = out.splitlines()[out.splitlines().index("fix:") + 1 :]
    for line in fixes:
        assert f"  {line}" in fix_section, out


def test_offline_clean_settings_exit_zero(tmp_path: Path) -> None:
    env = go_env(tmp_path, "GOPROXY=http://127.0.0.1:1\n")
    proc = doctor(env, tmp_path, "--offline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: nothing wrong found" in proc.stdout


def test_usage_errors_exit_two(tmp_path: Path) -> None:
    env = go_env(tmp_path, "")
    (tmp_path / "empty").mkdir()
    proc = doctor(env, tmp_path, "empty")
    assert proc.returncode == 2
    assert "no go.mod" in proc.stderr
    proc = doctor({**env, "GOFLAGS": "-modfile"}, tmp_path, "--offline", "--go", "/nonexistent/go")
    assert proc.returncode == 2
    assert "cannot read the go command's settings" in proc.stderr
