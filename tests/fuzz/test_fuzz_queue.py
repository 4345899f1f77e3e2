"""Fuzzed remote-write queue directories: damaged segments and cursors are skipped and counted, never raised.

Records are written by the real queue, the files are damaged (bit flips, overwritten bytes, truncation, garbage
appended, a broken cursor), and a new queue opens the directory and drains it: it must deliver only records it
wrote, intact and in order, and count what it skipped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import StartupError
from exporters.remote_write.encode import Fragment
from exporters.remote_write.queue import DiskQueue

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NOW = 1_795_784_000.0


def new_queue(path: Path) -> DiskQueue:
    return DiskQueue(path, max_bytes=64 * 2**20, max_age=7 * 86400.0, memory_bytes=2**20,
                     dead_letter_bytes=2**20, clock=lambda: NOW + 100)


def fragment(i: int) -> Fragment:
    return Fragment(f"{i:08d}".encode() + b"p" * 32, 1, int((NOW + i) * 1000), 0)


async def drain(queue: DiskQueue) -> list[bytes]:
    seen: list[bytes] = []
    for _ in range(10_000):
        batch = await queue.read(7, 2**20, False)
        if not batch.records and not batch.expired:
            return seen
        seen.extend(r.payload for r in batch.records)
        await queue.ack(batch)
    raise AssertionError("the queue never ran dry")


@FUZZ
@given(st.integers(1, 60), st.data())
async def test_damaged_queue_directory(count: int, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        queue = new_queue(path)
        await queue.open()
        queue.append([fragment(i) for i in range(count)])
        if data.draw(st.booleans()):
            delivered = await queue.read(data.draw(st.integers(1, 10)), 2**20, False)
            await queue.ack(delivered)
        await queue.close()
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name != "lock")
        for _ in range(data.draw(st.integers(1, 4))):
            target = data.draw(st.sampled_from(files))
            raw = bytearray(target.read_bytes())
            action = data.draw(st.sampled_from(["flip", "set", "truncate", "append", "zero", "empty"]))
            position = data.draw(st.integers(0, max(0, len(raw) - 1)))
            if action == "flip" and raw:
                raw[position] ^= 1 << data.draw(st.integers(0, 7))
            elif action == "set" and raw:
                raw[position:position + 4] = data.draw(st.sampled_from([b"EGQ1", b"\xff\xff\xff\xff", b"\0\0\0\0",
                                                                         b"{}", b"[1]"]))
            elif action == "truncate":
                del raw[position:]
            elif action == "append":
                raw += data.draw(st.binary(max_size=64))
            elif action == "zero":
                raw[position:position + 16] = bytes(min(16, len(raw) - position))
            else:
                raw = bytearray()
            target.write_bytes(bytes(raw))
        reopened = new_queue(path)
        try:
            await reopened.open()
        except StartupError:
            return
        try:
            got = await drain(reopened)
            reopened.append([fragment(1000)])
            got_after = await drain(reopened)
        finally:
            await reopened.close()
        written = [fragment(i).payload for i in range(count)]
        assert all(payload in written for payload in got)
        assert [written.index(p) for p in got] == sorted(written.index(p) for p in got)
        assert got_after == [fragment(1000).payload]  # the damaged queue keeps working
