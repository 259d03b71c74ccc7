"""Tests for ``EventRecorder.audit``: operator actions are stored, logged, never coalesced, never tamper counts.

Storage is a real ``DiskStorage`` under ``tmp_path``; a second one fails every
write (a full disk), which must not make ``audit`` raise.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from gomirror.errors import StorageFull
from gomirror.monitor.events import EVENTS_PREFIX, EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.storage.disk import DiskStorage


class FullDisk(DiskStorage):
    async def put_bytes(self, key: str, data: bytes) -> None:
        raise StorageFull(f"cache full (no space left) while writing {key}")


def test_audit_stores_each_action(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gomirror.monitor.events")

    async def main() -> None:
        disk = DiskStorage(tmp_path, fsync=False)
        metrics = Metrics()
        rec = EventRecorder(disk, metrics, clock=lambda: 1_700_000_000.0)
        for _ in range(2):  # the same action twice, at the same instant: two documents
            ev = await rec.audit(
                "cache_purged",
                "admin endpoint from 127.0.0.1",
                module="example.com/m",
                version="v1.0.0",
                file="zip+mod+info",
                detail="x" * 900,
            )
            assert ev.kind == "cache_purged" and len(ev.detail) == 500
        keys = [k async for k in disk.keys(EVENTS_PREFIX)]
        assert len(keys) == 2
        docs = [json.loads(await disk.get(k) or b"") for k in keys]
        assert {d["upstream"] for d in docs} == {"admin endpoint from 127.0.0.1"}
        assert {(d["module"], d["version"], d["count"]) for d in docs} == {
            ("example.com/m", "v1.0.0", 1)
        }
        assert [e.kind for e in await rec.recent()] == ["cache_purged", "cache_purged"]
        assert "gomirror_tamper_events_total{" not in metrics.render().decode()

        full = EventRecorder(FullDisk(tmp_path / "full", fsync=False), Metrics())
        await full.audit("cache_gc", "gomirror cache gc", detail="evicted 1 versions")

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("cache changed by operator") == 3
    assert "event not stored" in messages
