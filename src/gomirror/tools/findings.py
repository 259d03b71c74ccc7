"""findings is the model every doctor check reports in: a finding, and the verdict over many.

A :class:`Finding` has a stable ``code`` (for scripts), a severity, a one-line
``title`` naming the culprit (a mirror, a variable, a module), a longer
``explanation`` and the exact ``fix`` lines (shell commands such as
``go env -w ...``). ``error`` means the go command fails or verification is
off, ``warning`` a likely problem, ``info`` context that needs no action.
:class:`Verdict` counts them: exit status 0 only with no error or warning, 1
otherwise; its ``fix_lines`` are every finding's fix lines, in order, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[str, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing doctor found (see the module docstring)."""

    code: str
    severity: Severity
    title: str
    explanation: str = ""
    fix: tuple[str, ...] = ()
    subject: str = ""  # the variable, mirror URL or module@version concerned

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["fix"] = list(self.fix)
        return d


@dataclass(frozen=True)
class Verdict:
    """The outcome of one doctor run."""

    findings: Sequence[Finding] = field(default_factory=tuple)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.warnings == 0

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def fix_lines(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.sorted():
            if f.severity == "info":
                continue
            for line in f.fix:
                seen.setdefault(line, None)
        return list(seen)

    def sorted(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: SEVERITY_ORDER[f.severity])

    def summary(self) -> str:
        if self.ok:
            return "verdict: nothing wrong found"
        parts = []
        if self.errors:
            parts.append(f"{self.errors} error" + ("s" if self.errors != 1 else ""))
        if self.warnings:
            parts.append(f"{self.warnings} warning" + ("s" if self.warnings != 1 else ""))
        return "verdict: " + ", ".join(parts)


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    """Drop repeated findings (same code and subject), keeping the first."""
    seen: set[tuple[str, str, str]] = set()
    out: list[Finding] = []
    for f in findings:
        key = (f.code, f.subject, f.title)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
