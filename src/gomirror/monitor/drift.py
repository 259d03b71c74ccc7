"""monitor.drift compares what the mirrors said about one module and decides what is wrong.

Pure functions, no I/O: the consistency monitor probes, fills one ``Seen``
per mirror, and ``compare`` returns the ``Action``s to apply to the findings
store (observe a problem, or resolve one) plus the newest version that counts.

Rules (the monitor's docstring gives the why):

- *tamper*: a ``.mod`` or zip whose ``h1:`` the checksum database contradicts;
  resolved when that mirror serves the database's content again;
- *invalid_content*: an answer that breaks the protocol's rules; resolved when
  the mirror answers that file properly (or says "not found");
- *lag*: a version counts ("real") when some mirror serves its go.mod and the
  database does not contradict it (it may be unreachable: then serving is
  enough), so one rogue mirror cannot make the others "lag". A mirror lacks a
  real version when its ``.info`` is not found, its list omits it, or, for the
  newest ``@latest`` of all mirrors, its ``@latest`` is older or missing. A lag
  is resolved only on proof (the ``.info`` answered, the list and ``@latest``
  known), or when every mirror now says the version does not exist; a mirror
  that failed to answer leaves its findings as they are;
- *info_mismatch*: ``.info`` ``Version``/``Time`` of one version differing
  between mirrors; mirrors outside a strict majority are named; without a
  majority one finding with no mirror says the mirrors disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from gomirror.module import semver
from gomirror.module.info import Info
from gomirror.module.pseudo import is_pseudo_version
from gomirror.monitor.findings import Finding

T = TypeVar("T")

SumState = Literal["verified", "skipped", "mismatch", "unknown", "unreachable", "inconsistent"]
# "unknown": the database answered that it has no such version.
CONFIRMING: frozenset[str] = frozenset({"verified", "skipped", "unreachable", "inconsistent"})
INVALID = "invalid: "  # prefix of Got.error for content that broke the rules
MAX_EXTRA = 5  # versions with open findings probed beyond the newest ``depth``


@dataclass(slots=True)
class Got(Generic[T]):
    """One probe's outcome: a value, "not found", or an error (unknown)."""

    value: T | None = None
    missing: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass(slots=True)
class SumCheck:
    """The checksum database's word on one ``h1:``."""

    state: SumState
    got: str  # the h1 of what the mirror served
    detail: str = ""
    expected: str = ""  # the database's h1, on a mismatch


@dataclass
class Seen:
    """What one mirror said about one module in one round."""

    listed: Got[list[str]] = field(default_factory=Got)
    latest: Got[Info] = field(default_factory=Got)
    info: dict[str, Got[Info]] = field(default_factory=dict)
    mod: dict[str, Got[str]] = field(default_factory=dict)  # version -> h1 of the go.mod
    sums: dict[str, SumCheck] = field(default_factory=dict)  # version -> .mod verdict
    zip: dict[str, Got[str]] = field(default_factory=dict)  # version -> h1 of the zip
    zips: dict[str, SumCheck] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """Observe (the problem is present now) or resolve (it is gone) one finding."""

    op: Literal["observe", "resolve"]
    type: str
    mirror: str = ""
    module: str = ""
    version: str = ""
    aspect: str = ""
    said: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""  # the finding's detail (observe) or the resolution note (resolve)


def candidates(seen: Mapping[str, Seen], depth: int, extra: Iterable[str] = ()) -> list[str]:
    """The versions to probe deeply: newest ``@latest``, the ``depth`` newest listed, ``extra``."""
    union: set[str] = set()
    latests: list[str] = []
    for s in seen.values():
        if s.listed.value is not None:
            union.update(s.listed.value)
        if s.latest.value is not None:
            latests.append(s.latest.value.version)
    union.update(latests)
    picked: list[str] = []
    if latests:
        picked.append(semver.sort_versions(latests)[-1])
    if depth > 0:
        picked += reversed(semver.sort_versions(list(union))[-depth:])
    picked += extra
    valid = [v for v in dict.fromkeys(picked) if semver.is_valid(v)]
    return valid[: max(depth, 1) + MAX_EXTRA]


def compare(
    module: str,
    versions: Sequence[str],
    seen: Mapping[str, Seen],
    open_findings: Sequence[Finding],
    now: float,
) -> tuple[list[Action], str]:
    """All actions for one module's round, and the newest version that counts ("" if none)."""
    actions = tamper(module, versions, seen) + invalid(module, versions, seen)
    lag_actions, newest = lag(module, versions, seen, open_findings, now)
    return actions + lag_actions + info_mismatch(module, versions, seen, open_findings), newest


def tamper(module: str, versions: Sequence[str], seen: Mapping[str, Seen]) -> list[Action]:
    out: list[Action] = []
    for name, s in seen.items():
        for aspect, checks in (("mod", s.sums), ("zip", s.zips)):
            for v in versions:
                c = checks.get(v)
                if c is None:
                    continue
                if c.state == "mismatch":
                    text = (
                        f"{name} served {module}@{v} {aspect} that the checksum database"
                        f" contradicts: {c.detail}"
                    )
                    said = {"sumdb": c.expected, name: c.got}
                    out.append(Action("observe", "tamper", name, module, v, aspect, said, text))
                elif c.state in ("verified", "skipped"):
                    note = "serves the database's content again"
                    out.append(Action("resolve", "tamper", name, module, v, aspect, text=note))
    return out


def invalid(module: str, versions: Sequence[str], seen: Mapping[str, Seen]) -> list[Action]:
    out: list[Action] = []
    for name, s in seen.items():
        probes: list[tuple[str, str, Got[Any]]] = [("", "list", s.listed), ("", "latest", s.latest)]
        probes += [(v, "info", s.info[v]) for v in versions if v in s.info]
        probes += [(v, "mod", s.mod[v]) for v in versions if v in s.mod]
        probes += [(v, "zip", s.zip[v]) for v in versions if v in s.zip]
        for v, aspect, got in probes:
            if got.error.startswith(INVALID):
                where = module + (f"@{v}" if v else "")
                said = {name: got.error[len(INVALID) :]}
                text = f"{name} served an invalid {aspect} for {where}"
                out.append(
                    Action("observe", "invalid_content", name, module, v, aspect, said, text)
                )
            elif got.ok or got.missing:
                out.append(Action("resolve", "invalid_content", name, module, v, aspect))
    return out


def lag(
    module: str,
    versions: Sequence[str],
    seen: Mapping[str, Seen],
    open_findings: Sequence[Finding],
    now: float,
) -> tuple[list[Action], str]:
    real = [
        v
        for v in versions
        if any(v in s.sums and s.sums[v].state in CONFIRMING for s in seen.values())
    ]
    latests = [
        s.latest.value.version
        for s in seen.values()
        if s.latest.value is not None and s.latest.value.version in real
    ]
    newest_latest = semver.sort_versions(latests)[-1] if latests else ""
    newest = semver.sort_versions(real)[-1] if real else ""
    since = {f.identity: f.first_seen for f in open_findings if f.type == "lag"}
    others = {name: latest_repr(s.latest) for name, s in seen.items()}
    out: list[Action] = []
    for v in real:
        have = sorted(name for name, s in seen.items() if _has(s, v))
        for name, s in seen.items():
            evidence, known = lag_evidence(s, v, v == newest_latest)
            if evidence:
                first = since.get(("lag", name, module, v, ""), now)
                said = {
                    "missing": evidence,
                    "have": have,
                    "latest": others,
                    "since": first,
                    "seconds": round(now - first, 3),
                }
                text = f"{name} lacks {module}@{v}: {'; '.join(evidence)}"
                out.append(Action("observe", "lag", name, module, v, "", said, text))
            elif known:
                out.append(Action("resolve", "lag", name, module, v, text="caught up"))
    for f in open_findings:
        if f.type != "lag" or f.version in real:
            continue
        mods = [s.mod.get(f.version) for s in seen.values()]
        if mods and all(g is not None and g.missing for g in mods):
            note = "no mirror serves this version any more"
            out.append(Action("resolve", "lag", f.mirror, module, f.version, text=note))
    return out, newest


def info_mismatch(
    module: str, versions: Sequence[str], seen: Mapping[str, Seen], open_findings: Sequence[Finding]
) -> list[Action]:
    out: list[Action] = []
    for v in versions:
        said: dict[str, tuple[str, str]] = {}
        for name, s in seen.items():
            got = s.info.get(v)
            if got is not None and got.value is not None:
                t = got.value.time
                said[name] = (got.value.version, t.isoformat() if t is not None else "")
        if not said:
            continue
        counts = Counter(said.values()).most_common()
        blamed: set[str] = set()
        if len(counts) > 1 and counts[0][1] > counts[1][1]:
            blamed = {name for name, val in said.items() if val != counts[0][0]}
        elif len(counts) > 1:
            blamed = {""}  # no majority: nobody can tell which mirror is right
        shown = {name: {"Version": val[0], "Time": val[1]} for name, val in said.items()}
        for name in sorted(blamed):
            what = "/".join(differs(name, said))
            text = (
                f"{name} serves {module}@{v}.info with a different {what}"
                if name
                else f"mirrors disagree on {module}@{v}.info {what}"
            )
            out.append(Action("observe", "info_mismatch", name, module, v, "info", shown, text))
        for f in open_findings:
            if (
                f.type == "info_mismatch"
                and f.version == v
                and f.mirror not in blamed
                and (f.mirror in said or f.mirror == "")
            ):
                out.append(
                    Action("resolve", "info_mismatch", f.mirror, module, v, "info", text="agree")
                )
    return out


def _has(s: Seen, v: str) -> bool:
    info = s.info.get(v)
    return (info is not None and info.ok) or (s.listed.value is not None and v in s.listed.value)


def lag_evidence(s: Seen, v: str, is_newest_latest: bool) -> tuple[list[str], bool]:
    """Why this mirror lacks ``v`` (empty: it does not), and whether it is known to have it."""
    evidence: list[str] = []
    info = s.info.get(v)
    if info is not None and info.missing:
        evidence.append(".info not found")
    # A list that is "not found" lists nothing; one that failed tells us nothing.
    listed = s.listed.value if s.listed.value is not None else ([] if s.listed.missing else None)
    if listed is not None and not is_pseudo_version(v) and v not in listed:
        evidence.append("not in @v/list")
    if is_newest_latest:
        lv = s.latest.value
        if lv is not None and semver.compare(lv.version, v) < 0:
            evidence.append(f"@latest is {lv.version}")
        elif s.latest.missing:
            evidence.append("@latest not found")
    known = (
        info is not None
        and info.ok
        and (listed is not None or is_pseudo_version(v))
        and (not is_newest_latest or s.latest.ok)
    )
    return evidence, known


def latest_repr(got: Got[Info]) -> str | None:
    """A mirror's ``@latest`` for the status page: the version, "" not found, None error."""
    if got.value is not None:
        return got.value.version
    return "" if got.missing else None


_SUM_ORDER = ("mismatch", "inconsistent", "unreachable", "unknown", "verified", "skipped")


def worst(checks: Iterable[SumCheck | None]) -> str:
    """The most alarming state among checks ("unchecked" when there is none)."""
    states = {c.state for c in checks if c is not None}
    for s in _SUM_ORDER:
        if s in states:
            return s
    return "unchecked"


def differs(name: str, said: Mapping[str, tuple[str, str]]) -> list[str]:
    """Which ``.info`` fields ``name`` (or, for "", the mirrors) disagree on."""
    mine = said[name] if name else next(iter(said.values()))
    others = [val for n, val in said.items() if n != name]
    fields = []
    if any(o[0] != mine[0] for o in others):
        fields.append("Version")
    if any(o[1] != mine[1] for o in others):
        fields.append("Time")
    return fields or ["Version/Time"]
