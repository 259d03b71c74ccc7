"""server.admin answers the authenticated admin endpoint ``POST /-/admin/purge``.

``POST /-/admin/purge?module=M[&version=V][&force=1]`` does what ``gomirror
cache purge M[@V] [--force]`` does (``gomirror.tools.purge``): drop the
module's cached list, ``@latest`` and queries so a new tag shows at once, or a
query's answer, or, only with ``force=1``, a canonical version's verified
files, recorded as an audit event naming the endpoint and the client address.
It answers the purge as JSON (``{"purged": {"target", "removed",
"immutable"}}``).

Access: the endpoint exists only when ``admin_token`` is set; otherwise it is
``404`` like any unknown path. A request needs ``Authorization: Bearer
<token>``: no such header is ``401`` (with ``WWW-Authenticate: Bearer``), any
other token ``403``, and nothing is purged. The comparison runs in constant
time over the token's SHA-256 digests, so neither the content nor the length of
the token leaks through timing. The token is never logged, stored, echoed or
counted: error bodies name no credential and the access log records the path
(which never holds it) and the status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from aiohttp import web

from gomirror.errors import Forbidden, GomirrorError, InvalidRequest, NotFound, Unauthorized
from gomirror.monitor.events import EventRecorder
from gomirror.server import responses as R
from gomirror.storage.base import Storage
from gomirror.tools.purge import purge

log = logging.getLogger(__name__)
PURGE_PATH = "/-/admin/purge"
TRUE = ("1", "true", "yes")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class AdminApi:
    """The admin endpoint (see the module docstring); ``token`` empty: disabled."""

    def __init__(self, storage: Storage, events: EventRecorder, token: str) -> None:
        self._storage = storage
        self._events = events
        self._digest = _digest(token) if token else None

    def authorize(self, request: web.Request) -> None:
        """Raise NotFound (disabled), Unauthorized or Forbidden unless the request carries the token."""
        if self._digest is None:
            raise NotFound("not found")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("unauthorized: send Authorization: Bearer <admin_token>")
        if not hmac.compare_digest(_digest(given.strip()), self._digest):
            raise Forbidden("forbidden: the bearer token is not this server's admin_token")

    async def purge(self, request: web.Request) -> web.Response:
        try:
            self.authorize(request)
            module = request.query.get("module", "")
            if not module:
                raise InvalidRequest("missing module=MODULE")
            version = request.query.get("version", "")
            force = request.query.get("force", "").lower() in TRUE
            target = f"{module}@{version}" if version else module
            who = f"admin endpoint from {request.remote or 'unknown'}"
            done = await purge(self._storage, target, events=self._events, force=force, who=who)
        except Exception as e:  # every error becomes HTTP in responses.error_answer
            if not isinstance(e, GomirrorError):
                log.exception("unhandled admin error", extra={"path": request.path})
            ans = R.error_answer(e)
            headers = {"Content-Type": R.TEXT, "Cache-Control": ans.cache_control}
            if ans.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="gomirror admin"'
            return web.Response(status=ans.status, body=ans.body, headers=headers)
        return web.Response(
            text=json.dumps({"purged": done.to_json()}, indent=2) + "\n",
            content_type="application/json",
            headers={"Cache-Control": R.ERROR_CACHE},
        )
