"""doctor runs every check of ``gomirror doctor`` in order and returns one result for rendering.

:func:`parse_target` turns the command-line argument into a project (a
directory with go.mod, go.sum optional) or one ``module@version``; anything
else is a :class:`~gomirror.errors.ConfigError` (usage, exit status 2).
:func:`run_doctor` then probes the proxies and the checksum-database route
(unless ``offline``), compares hashes for the project or module, computes the
GOPROXY value to recommend (dead, hanging and tampering mirrors dropped, slow
ones last, ``|`` between mirrors) and collects the findings of every check
into a :class:`~gomirror.tools.findings.Verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gomirror.errors import ConfigError
from gomirror.module.paths import match_prefix_patterns
from gomirror.tools.diagnose import check_settings, recommend_goproxy
from gomirror.tools.findings import Verdict, dedupe
from gomirror.tools.goenv import GoEnv, parse_proxy_list
from gomirror.tools.modcheck import (
    ModuleCheck,
    check_modules,
    mod_findings,
    tampering_proxies,
    target_module,
    targets_from_project,
)
from gomirror.tools.probe import ProbeOptions, ProbeReport, probe_all, probe_findings, sumdb_spec
from gomirror.tools.project import Project, load_project

DEFAULT_PROBE_MODULE = "golang.org/x/text"


@dataclass(frozen=True)
class DoctorOptions:
    offline: bool = False  # settings checks only: no network at all
    zips: bool = True  # also fetch and hash zips (not only go.mod files)
    probe: ProbeOptions = field(default_factory=ProbeOptions)


@dataclass
class DoctorResult:
    env: GoEnv
    project: Project | None
    module: tuple[str, str] | None
    probes: ProbeReport | None
    checks: list[ModuleCheck]
    recommended_goproxy: str
    verdict: Verdict


def parse_target(target: str | None, cwd: Path) -> tuple[Project | None, tuple[str, str] | None]:
    """A project directory or ``module@version`` (see the module docstring)."""
    if target is None:
        return (load_project(cwd), None) if (cwd / "go.mod").is_file() else (None, None)
    path = cwd / target
    if path.is_dir():
        if not (path / "go.mod").is_file():
            raise ConfigError(f"{target}: no go.mod in this directory")
        return load_project(path), None
    if path.name == "go.mod" and path.is_file():
        return load_project(path.parent), None
    module, sep, version = target.rpartition("@")
    if sep and module and version:
        return None, (module, version)
    raise ConfigError(f"{target}: not a directory with go.mod, nor module@version")


def _probe_module(env: GoEnv, project: Project | None, module: tuple[str, str] | None) -> str:
    if module is not None and not match_prefix_patterns(env.noproxy, module[0]):
        return module[0]
    if project is not None:
        for r in project.gomod.require:
            if not match_prefix_patterns(env.noproxy, r.path):
                return r.path
    return DEFAULT_PROBE_MODULE


async def run_doctor(
    env: GoEnv,
    project: Project | None,
    module: tuple[str, str] | None,
    opts: DoctorOptions,
) -> DoctorResult:
    """Run every check (see the module docstring)."""
    entries = parse_proxy_list(env.goproxy)
    probes: ProbeReport | None = None
    checks: list[ModuleCheck] = []
    if project is not None:
        checks = targets_from_project(project, env)
    elif module is not None:
        checks = [target_module(module[0], module[1], env)]
    spec = sumdb_spec(env)
    if not opts.offline:
        probes = await probe_all(env, opts.probe, _probe_module(env, project, module))
        routes: list[str] = []
        if probes.route.base is not None and probes.route.kind != "unavailable":
            routes.append(probes.route.base)
            for url, p in probes.supported.items():
                base = f"{url}/sumdb/{probes.name}"
                if p.status == 200 and base not in routes and url in probes.healthy():
                    routes.append(base)
        if checks:
            await check_modules(checks, probes.healthy(), routes, spec, opts.probe, zips=opts.zips)
    drop = dict(probes.bad()) if probes else {}
    drop.update(tampering_proxies(checks))
    slow = probes.slow() if probes else set()
    recommended = recommend_goproxy(env.goproxy, drop=set(drop), demote=slow)
    findings = check_settings(env, project, recommended_goproxy=recommended)
    if probes is not None:
        findings += probe_findings(probes, entries, recommended)
    findings += mod_findings(checks, env, recommended, spec.name if spec else None)
    return DoctorResult(
        env, project, module, probes, checks, recommended, Verdict(tuple(dedupe(findings)))
    )
