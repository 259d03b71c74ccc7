"""coordination.lease tells the code inside ``Coordinator.once`` which lock it holds and its fencing token.

While ``fn`` runs, ``current_lease()`` returns its ``Lease``: the key, the
fencing token (``None`` under local coordination, which has no tokens) and
whether the lock is still known to be held. A Redis lock expires after its
TTL unless the holder's watchdog renews it; a holder that stalls (a stopped
process, a partitioned network) may find on waking that another process has
since taken the key with a larger token. ``held()`` is then false.

How a storage write can use it. Immutable module files are content-addressed
by key: every writer of ``m/@v/v1.0.0.zip`` publishes bytes verified against
the same checksum (and S3 or a rename makes each write whole), so a late
writer whose lock expired rewrites the identical object; the result is
idempotent and no check is needed. For a value that can change (``list``,
``@latest``, shared state) a writer should skip its publish when
``not lease.held()``, and a store with conditional writes can go further:
keep the token with the value (object metadata, a Redis field) and refuse a
write whose token is smaller than the stored one. Not every S3 provider has
conditional writes, so gomirror's S3 backend relies on the first guarantee.
"""

from __future__ import annotations

import contextvars
import math
import time
from dataclasses import dataclass


@dataclass
class Lease:
    """One holder's claim on a key; updated in place by the holder's watchdog."""

    key: str
    token: int | None  # fencing token, increasing per acquisition; None: local lock
    valid_until: float = math.inf  # time.monotonic() by which the lock may have expired
    lost: bool = False  # Redis said another holder has the key (or it is gone)

    def held(self) -> bool:
        """True while this holder can still count on being the only one."""
        return not self.lost and time.monotonic() < self.valid_until


_CURRENT: contextvars.ContextVar[Lease | None] = contextvars.ContextVar(
    "gomirror_lease", default=None
)


def current_lease() -> Lease | None:
    """The lease of the ``once`` run this code is part of, or None outside one."""
    return _CURRENT.get()


def enter_lease(lease: Lease) -> contextvars.Token[Lease | None]:
    """Make lease current for this task (and tasks it starts); undo with ``leave_lease``."""
    return _CURRENT.set(lease)


def leave_lease(token: contextvars.Token[Lease | None]) -> None:
    _CURRENT.reset(token)
