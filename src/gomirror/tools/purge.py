"""purge drops cached answers of one module so the next request asks the mirrors: ``cache purge``'s logic.

:func:`purge` takes ``module`` or ``module@query``:

- ``module``: its mutable answers (``@v/list``, ``@latest`` and every
  ``.info`` query under ``_gomirror/query/``), so a tag pushed a moment ago
  shows now instead of after ``mutable_ttl``;
- ``module@query`` with a non-canonical query (``master``, a commit
  prefix): that query's cached answer;
- ``module@version`` with a canonical version: that version's immutable,
  verified files (``.info``, ``.mod``, ``.zip`` and sidecars), only with
  ``force``; each removal is recorded as an audit event
  (``_gomirror/events/``, kind ``cache_purged``) and logged, since a
  verified file should never need to go. Without ``force`` it raises
  ``Refused`` naming what would go.

Nothing else is ever removed: not other modules, not the checksum database.
A running server reads storage for every answer, so it sees the purge at
once; its in-memory memory of "not found" answers lasts ``negative_ttl``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field

from gomirror.errors import GomirrorError
from gomirror.module.info import is_canonical_for
from gomirror.module.paths import check_path, escape_path, escape_version
from gomirror.monitor.events import EVENTS_PREFIX, Event
from gomirror.storage.base import Storage
from gomirror.tools.inventory import QUERY_PREFIX, VERSION_EXTS

log = logging.getLogger(__name__)
AUDIT_KIND = "cache_purged"


class Refused(GomirrorError):
    """The purge would drop verified immutable files and ``force`` was not given."""


@dataclass
class Purged:
    target: str
    removed: list[str] = field(default_factory=list)
    immutable: bool = False

    def to_json(self) -> dict[str, object]:
        return {"target": self.target, "removed": self.removed, "immutable": self.immutable}


async def _delete_present(storage: Storage, keys: list[str], out: Purged) -> None:
    for key in keys:
        if await storage.stat(key) is not None:
            await storage.delete(key)
            out.removed.append(key)


async def record_audit(
    storage: Storage, module: str, version: str, keys: list[str], who: str
) -> None:
    """Write one audit event in the event recorder's format (``_gomirror/events/<day>/...``)."""
    now = time.time()
    ev = Event(
        AUDIT_KIND,
        who,
        module,
        version,
        "zip+mod+info",
        f"verified files removed with --force: {', '.join(keys)}"[:500],
        time=now,
        last=now,
    )
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    key = f"{EVENTS_PREFIX}{day}/{int(now * 1000)}-{uuid.uuid4().hex[:8]}.json"
    await storage.put_bytes(key, json.dumps(asdict(ev), sort_keys=True).encode())
    log.warning(
        "cache files purged",
        extra={"mod": module, "version": version, "files": len(keys), "by": who},
    )


async def purge(storage: Storage, target: str, *, force: bool = False, who: str = "cli") -> Purged:
    """Purge target (see the module docstring); InvalidPath/Refused say what is wrong."""
    module, _, query = target.partition("@")
    check_path(module)
    esc = escape_path(module)
    out = Purged(target)
    if not query:
        keys = [f"{esc}/@v/list", f"{esc}/@latest"]
        keys += [k async for k in storage.keys(f"{QUERY_PREFIX}{esc}/@v/")]
        await _delete_present(storage, keys, out)
        return out
    base = f"{esc}/@v/{escape_version(query)}"
    if not is_canonical_for(module, query):
        await _delete_present(storage, [f"{QUERY_PREFIX}{base}.info"], out)
        return out
    files = [f"{base}.{ext}" for ext in VERSION_EXTS]
    present = [k for k in files + [f + ".json" for f in files] if await storage.stat(k) is not None]
    out.immutable = True
    if not present:
        return out
    if not force:
        raise Refused(
            f"{target} is cached as verified immutable files ({', '.join(present)});"
            f" add --force to delete them (recorded as an audit event), or purge {module}"
            " to drop only its list and @latest"
        )
    await _delete_present(storage, present, out)  # files first: sorted before their sidecars
    await _delete_present(storage, [f"{esc}/@v/list", f"{esc}/@latest"], out)
    await record_audit(storage, module, query, out.removed, who)
    return out
