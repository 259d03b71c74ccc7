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
  (``EventRecorder.audit``, kind ``cache_purged``) and logged, since a
  verified file should never need to go. Without ``force`` it raises
  ``Refused`` naming what would go.

:func:`remote_purge` asks a running gomirror's admin endpoint
(``POST /-/admin/purge``, ``server.admin``) to do the same, with its
``admin_token`` as a bearer token.

Nothing else is ever removed: not other modules, not the checksum database.
A running server reads storage for every answer, so it sees the purge at
once; its in-memory memory of "not found" answers lasts ``negative_ttl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp

from gomirror.errors import InvalidRequest, Refused, UpstreamError
from gomirror.module.info import is_canonical_for
from gomirror.module.paths import check_path, escape_path, escape_version
from gomirror.monitor.events import EventRecorder
from gomirror.storage.base import Storage
from gomirror.tools.inventory import QUERY_PREFIX, VERSION_EXTS

AUDIT_KIND = "cache_purged"


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


async def purge(
    storage: Storage,
    target: str,
    *,
    events: EventRecorder,
    force: bool = False,
    who: str = "cli",
) -> Purged:
    """Purge target (see the module docstring); InvalidPath/Refused say what is wrong.

    ``who`` names the actor in the audit event (never a credential).
    """
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
            f" add --force (force=1 at the admin endpoint) to delete them (recorded as an"
            f" audit event), or purge {module}"
            " to drop only its list and @latest"
        )
    await _delete_present(storage, present, out)  # files first: sorted before their sidecars
    await _delete_present(storage, [f"{esc}/@v/list", f"{esc}/@latest"], out)
    await events.audit(
        AUDIT_KIND,
        who,
        module=module,
        version=query,
        file="zip+mod+info",
        detail=f"verified files removed with force: {', '.join(out.removed)}",
    )
    return out


REMOTE_TIMEOUT = aiohttp.ClientTimeout(total=60)


async def remote_purge(
    server: str, target: str, token: str, session: aiohttp.ClientSession, *, force: bool = False
) -> Purged:
    """Purge target through server's admin endpoint; Refused/InvalidRequest/UpstreamError say why not."""
    module, sep, version = target.partition("@")
    query = {
        "module": module,
        **({"version": version} if sep else {}),
        **({"force": "1"} if force else {}),
    }
    url = f"{server.rstrip('/')}/-/admin/purge?{urlencode(query)}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.post(url, headers=headers, timeout=REMOTE_TIMEOUT) as resp:
            body = await resp.text(errors="replace")
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        raise UpstreamError(f"{server}: {type(e).__name__}: {e}; is the server running?") from None
    reason = body.strip().splitlines()[0][:300] if body.strip() else ""
    if status == 200:
        done = json.loads(body)["purged"]
        return Purged(str(done["target"]), list(done["removed"]), bool(done["immutable"]))
    if status == 409:
        raise Refused(reason)
    if status == 400:
        raise InvalidRequest(reason)
    hint = {
        404: "; is admin_token set on that server (and is it a gomirror)?",
        401: "; set GOMIRROR_ADMIN_TOKEN (or --token) to the server's admin_token",
        403: "; the token is not the server's admin_token",
    }.get(status, "")
    raise UpstreamError(f"{server}: {status} {reason}{hint}")
