"""coordination.negative shares "not found" answers between instances through ``SharedState``.

``SharedNegatives.put(key, err)`` publishes a ``NotFound`` (or ``Gone``) the
upstreams gave for a storage key as ``neg:<key>`` = ``{"kind", "message"}``
with the negative TTL; ``get(key)`` returns an equal exception when any
instance recorded one that has not expired. The service asks it after its own
in-process memory and before fetching, so a module that does not exist costs
one upstream round per TTL for all instances together, not one per instance.

Only the two plain classes travel: other ``NotFound`` kinds (``off``, a
checksum database's own) depend on one instance's configuration or session.
Messages are cut to ``MAX_MESSAGE`` characters. It is a hint
(``SharedState``'s contract): a value that cannot be read or decoded is no
answer, and a failed write is logged at debug level and ignored.
"""

from __future__ import annotations

import json
import logging

from gomirror.coordination.base import SharedState
from gomirror.errors import Gone, NotFound

log = logging.getLogger(__name__)

KEY_PREFIX = "neg:"
MAX_MESSAGE = 2000
KINDS: dict[str, type[NotFound]] = {"not_found": NotFound, "gone": Gone}
NAMES = {cls: name for name, cls in KINDS.items()}


class SharedNegatives:
    """Not-found answers every instance sees (see the module docstring)."""

    def __init__(self, state: SharedState, ttl: float) -> None:
        self._state = state
        self.ttl = ttl
        self.shared_hits = 0  # answers found here that this process had not seen

    async def get(self, key: str) -> NotFound | None:
        if self.ttl <= 0:
            return None
        try:
            raw = await self._state.get(KEY_PREFIX + key)
            if raw is None:
                return None
            value = json.loads(raw)
            cls = KINDS[value["kind"]]
            err = cls(str(value["message"])[:MAX_MESSAGE])
        except Exception as e:
            log.debug("shared negative answer unreadable", extra={"key": key, "error": repr(e)})
            return None
        self.shared_hits += 1
        return err

    async def put(self, key: str, err: NotFound) -> None:
        kind = NAMES.get(type(err))
        if kind is None or self.ttl <= 0:
            return
        value = json.dumps({"kind": kind, "message": str(err)[:MAX_MESSAGE]}).encode()
        try:
            await self._state.set(KEY_PREFIX + key, value, self.ttl)
        except Exception as e:  # a hint lost: the next instance asks the upstream itself
            log.debug("shared negative answer not written", extra={"key": key, "error": repr(e)})
