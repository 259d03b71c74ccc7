"""monitor.consistency_alerts decides which alerts the mirrors' health and the open findings call for.

``wanted_alerts(mirrors, open_findings, now, lag_alert_after)`` is pure: it
returns every alert that should be firing now, by key. The monitor fires all
of them after each round (the alerter de-duplicates: a key already firing
sends nothing) and resolves the keys it fired before that are no longer
wanted. Keys and kinds:

- ``mirror_down:<mirror>`` (``mirror_down``): the health record says down;
  critical when every mirror is down, else warning. Resolving it is the
  "recovered" message;
- ``lag:<mirror>:<module>`` (``lag``, warning): some open lag finding of that
  mirror and module is older than ``lag_alert_after``;
- ``tamper:<mirror>:<module>@<version>`` (``tamper``, critical);
- ``info_mismatch:<mirror>:<module>@<version>`` (``info_mismatch``, info:
  sinks with the default ``min_severity`` do not get it);
- ``sumdb_unreachable`` / ``sumdb_inconsistent`` (critical).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gomirror.monitor.alerts import Alert, Severity
from gomirror.monitor.findings import Finding
from gomirror.upstream.health import Health


def duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``12m``, ``3h05m``."""
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def wanted_alerts(
    mirrors: Mapping[str, Health],
    open_findings: Sequence[Finding],
    now: float,
    lag_alert_after: float,
) -> dict[str, Alert]:
    """Every alert that should be firing now, by key (see the module docstring)."""
    wanted: dict[str, Alert] = {}
    all_down = bool(mirrors) and all(h.down for h in mirrors.values())
    for name, h in mirrors.items():
        if not h.down:
            continue
        snap = h.snapshot()
        key = f"mirror_down:{name}"
        sev: Severity = "critical" if all_down else "warning"
        wanted[key] = Alert(
            key,
            "mirror_down",
            sev,
            f"{name} is down" + (" (every mirror is down)" if all_down else ""),
            text=str(snap["down_reason"] or snap["last_error"]),
            mirror=name,
            details={"last_error": snap["last_error"], "failures": snap["consecutive_failures"]},
        )
    lags: dict[tuple[str, str], list[Finding]] = {}
    for f in open_findings:
        if f.type == "lag":
            lags.setdefault((f.mirror, f.module), []).append(f)
    for (mirror, module), fs in lags.items():
        oldest = min(fs, key=lambda f: f.first_seen)
        lasted = now - oldest.first_seen
        if lasted < lag_alert_after:
            continue
        key = f"lag:{mirror}:{module}"
        versions = ", ".join(sorted(f.version for f in fs))
        have = ", ".join(str(m) for m in oldest.said.get("have", [])) or "?"
        wanted[key] = Alert(
            key,
            "lag",
            "warning",
            f"{mirror} lags behind on {module}",
            text=f"lacks {versions} for {duration(lasted)}; mirrors that have it: {have}",
            mirror=mirror,
            module=module,
            version=oldest.version,
            details={"since": oldest.first_seen, "seconds": round(lasted, 3)},
        )
    for f in open_findings:
        if f.type in ("tamper", "info_mismatch"):
            key = f"{f.type}:{f.mirror}:{f.module}@{f.version}"
            tamper = f.type == "tamper"
            title = (
                f"{f.mirror} served tampered {f.module}@{f.version} ({f.aspect})"
                if tamper
                else f"{f.module}@{f.version}: .info differs between mirrors"
            )
            wanted[key] = Alert(
                key,
                f.type,
                "critical" if tamper else "info",
                title,
                text=f.detail,
                mirror=f.mirror,
                module=f.module,
                version=f.version,
                details=dict(f.said),
            )
        elif f.type in ("sumdb_unreachable", "sumdb_inconsistent"):
            wanted[f.type] = Alert(
                f.type,
                f.type,
                "critical",
                f"checksum database {f.type.removeprefix('sumdb_')}",
                text=str(f.said.get("error", "")),
            )
    return wanted
