"""The disk queue: round trip, restart, bounds, broken directories (never a refusal to start), lock, disk full."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.errors import StartupError
from exporters.remote_write import queue as queue_module
from exporters.remote_write.encode import Fragment
from exporters.remote_write.queue import DiskQueue, parse

NOW = 1_795_784_000.0


def fragment(i: int, size: int = 40, at: float | None = None, group: int = 0, noise: bool = False) -> Fragment:
    payload = f"{i:08d}".encode() + (os.urandom(size - 8) if noise else b"p" * (size - 8))
    return Fragment(payload, 1, int(((at if at is not None else NOW) + i) * 1000), group)


def new_queue(path: Path, clock: Callable[[], float] = lambda: NOW + 100, **overrides: int | float) -> DiskQueue:
    settings: dict[str, int | float] = {"max_bytes": 64 * 2**20, "max_age": 7 * 86400.0, "memory_bytes": 2**20,
                                        "dead_letter_bytes": 2**20}
    settings.update(overrides)
    return DiskQueue(path, clock=clock, **settings)  # type: ignore[arg-type]


async def drain(queue: DiskQueue, max_samples: int = 7) -> list[int]:
    """Read and acknowledge everything; returns the record numbers (the payload prefix) in order."""
    seen: list[int] = []
    for _ in range(10_000):
        batch = await queue.read(max_samples, 2**20, False)
        if not batch.records and not batch.expired:
            return seen
        seen.extend(int(r.payload[:8]) for r in batch.records)
        await queue.ack(batch)
    raise AssertionError("queue never ran dry")


async def filled(path: Path, count: int, **overrides: int | float) -> None:
    queue = new_queue(path, **overrides)
    await queue.open()
    queue.append([fragment(i) for i in range(count)])
    await queue.close()


async def test_round_trip_and_restart_replays_only_unacknowledged(tmp_path) -> None:
    queue = new_queue(tmp_path)
    await queue.open()
    queue.append([fragment(i) for i in range(20)])
    batch = await queue.read(5, 2**20, False)
    assert [int(r.payload[:8]) for r in batch.records] == [0, 1, 2, 3, 4] and batch.complete
    await queue.ack(batch)
    assert queue.stats.samples == 15
    await queue.close()
    again = new_queue(tmp_path)
    await again.open()
    assert again.stats.samples == 15
    assert await drain(again) == list(range(5, 20))
    again.append([fragment(20)])
    assert await drain(again) == [20]
    await again.close()


async def test_unclean_stop_keeps_everything_written(tmp_path) -> None:
    # A child process appends and is SIGKILLed without closing: the page cache holds every record written.
    code = f"""
import asyncio, os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_queue import fragment, new_queue
from pathlib import Path
async def main():
    q = new_queue(Path({str(tmp_path)!r}))
    await q.open()
    q.append([fragment(i) for i in range(500)])
    await q.read(1, 1, False)  # the read runs after the appends on the queue's thread
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""
    done = await asyncio.to_thread(subprocess.run, [os.sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr.decode()
    queue = new_queue(tmp_path)
    await queue.open()
    assert await drain(queue) == list(range(500))
    await queue.close()


async def test_second_agent_on_the_same_directory_is_refused(tmp_path) -> None:
    first = new_queue(tmp_path)
    await first.open()
    second = new_queue(tmp_path)
    with pytest.raises(StartupError, match=f"locked by another egov-agent \\(pid {os.getpid()}\\)"):
        await second.open()
    await first.close()
    third = new_queue(tmp_path)
    await third.open()
    await third.close()


def segments(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("*.seg") if p.name[0].isdigit())


def starts(seg: Path) -> list[int]:
    """Where each record of a segment starts."""
    ends = [end for _, end in parse(seg.read_bytes())[0]]
    return [0, *ends[:-1]]


def break_bad_crc(path: Path) -> None:
    seg = segments(path)[0]
    data = bytearray(seg.read_bytes())
    data[starts(seg)[15] + 40] ^= 0xFF
    seg.write_bytes(bytes(data))


def break_torn_tail(path: Path) -> None:
    seg = segments(path)[0]
    seg.write_bytes(seg.read_bytes()[:-10])


def break_bad_length(path: Path) -> None:
    seg = segments(path)[0]
    data = bytearray(seg.read_bytes())
    at = starts(seg)[3]
    data[at + 4 : at + 8] = (10**6).to_bytes(4, "little")
    seg.write_bytes(bytes(data))


def break_garbage_prefix(path: Path) -> None:
    seg = segments(path)[0]
    seg.write_bytes(os.urandom(100).replace(b"EGQ1", b"xxxx") + seg.read_bytes())


def break_zero_length(path: Path) -> None:
    (path / "00000000000000000099.seg").write_bytes(b"")


def break_junk(path: Path) -> None:
    (path / "junk.txt").write_text("hello")
    (path / "somedir").mkdir()
    (path / "12.seg").write_bytes(b"not ours")
    (path / "cursor.json.tmp").write_text("{")


def break_segment_is_dir(path: Path) -> None:
    (path / "00000000000000000098.seg").mkdir()


def break_cursor_is_dir(path: Path) -> None:
    (path / "cursor.json").unlink(missing_ok=True)
    (path / "cursor.json").mkdir()


def break_cursor_junk(path: Path) -> None:
    (path / "cursor.json").write_text("{not json")


def break_cursor_negative(path: Path) -> None:
    (path / "cursor.json").write_text(json.dumps({"acked_seq": -3}))


def break_cursor_beyond_writer(path: Path) -> None:
    (path / "cursor.json").write_text(json.dumps({"acked_seq": 10**9}))


def break_far_future_segment(path: Path) -> None:
    seg = segments(path)[0]
    seg.rename(path / f"{10**25:026d}.seg")


def break_stray_copy(path: Path) -> None:
    # A second copy of the same records under a later number: sequence numbers go back.
    seg = segments(path)[0]
    (path / "00000000000000000050.seg").write_bytes(seg.read_bytes())


# (id, how to break, records delivered afterwards, corruption kinds counted, files expected in quarantine)
CASES = [
    ("bad_crc", break_bad_crc, set(range(30)) - {15}, {"bad_crc": 1}, 1),
    ("torn_tail", break_torn_tail, set(range(29)), {"torn_tail": 1}, 0),
    ("bad_length", break_bad_length, set(range(30)) - {3}, {"bad_length": 1}, 1),
    ("garbage_prefix", break_garbage_prefix, set(range(30)), {"garbage": 1}, 1),
    ("zero_length_segment", break_zero_length, set(range(30)), {}, 0),
    ("junk_files_and_dirs", break_junk, set(range(30)), {}, 0),
    ("segment_is_a_directory", break_segment_is_dir, set(range(30)), {"segment": 1}, 1),
    ("cursor_is_a_directory", break_cursor_is_dir, set(range(30)), {"cursor": 1}, 1),
    ("cursor_invalid_json", break_cursor_junk, set(range(30)), {"cursor": 1}, 1),
    ("cursor_negative", break_cursor_negative, set(range(30)), {"cursor": 1}, 1),
    ("reader_beyond_writer", break_cursor_beyond_writer, set(), {}, 0),
    ("segment_far_in_the_future", break_far_future_segment, set(range(30)), {}, 0),
    ("stray_copy_of_a_segment", break_stray_copy, set(range(30)), {"out_of_order": 1}, 1),
]


@pytest.mark.parametrize(("breaker", "delivered", "kinds", "quarantined"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
async def test_pq4_broken_directory_never_stops_the_queue(tmp_path, breaker, delivered, kinds, quarantined) -> None:
    await filled(tmp_path, 30)
    (tmp_path / "cursor.json").unlink(missing_ok=True)
    breaker(tmp_path)
    queue = new_queue(tmp_path)
    await queue.open()
    got = await drain(queue)
    assert set(got) == delivered and got == sorted(got)
    assert queue.stats.corruptions == kinds
    assert len(list((tmp_path / "quarantine").iterdir())) == quarantined
    # The queue goes on: new records are written and read after the old ones.
    queue.append([fragment(100), fragment(101)])
    assert await drain(queue) == [100, 101]
    await queue.close()
    reopened = new_queue(tmp_path)
    await reopened.open()
    assert await drain(reopened) == []
    await reopened.close()


async def test_corruption_found_while_running_is_skipped_and_counted(tmp_path) -> None:
    queue = new_queue(tmp_path)
    await queue.open()
    queue.append([fragment(i) for i in range(10)])
    await queue.sync()
    seg = segments(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    data[starts(seg)[4] + 40] ^= 0xFF
    seg.write_bytes(bytes(data))
    got = await drain(queue)
    assert got == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert queue.stats.corruptions == {"bad_crc": 1}
    await queue.close()


async def test_pq6_max_bytes_drops_the_oldest_and_counts(tmp_path) -> None:
    queue = new_queue(tmp_path, max_bytes=256 * 1024)
    await queue.open()
    for i in range(0, 3000, 100):
        queue.append([fragment(j, size=1000, noise=True) for j in range(i, i + 100)])
        await queue.sync()
    size = sum(p.stat().st_size for p in segments(tmp_path))
    assert size <= 256 * 1024
    dropped = queue.stats.dropped["queue_full"]
    got = await drain(queue)
    assert dropped + len(got) == 3000
    assert got == list(range(3000 - len(got), 3000))
    await queue.close()


async def test_pq6_max_age_drops_old_records_and_whole_segments(tmp_path) -> None:
    now = [NOW + 100]
    queue = new_queue(tmp_path, clock=lambda: now[0], max_age=3600.0, max_bytes=2 * 2**20)
    await queue.open()
    queue.append([fragment(i, size=2000, at=NOW) for i in range(200)])
    queue.append([fragment(i, size=2000, at=NOW + 5000) for i in range(200, 210)])
    now[0] = NOW + 3600 + 150
    await queue.sync()
    got = await drain(queue)
    assert got == list(range(150, 210))
    assert queue.stats.dropped["too_old"] == 150
    await queue.close()


async def test_dead_letter_file_is_bounded(tmp_path) -> None:
    queue = new_queue(tmp_path, dead_letter_bytes=64 * 1024)
    await queue.open()
    for i in range(100):
        await queue.dead_letter(b"x" * 2000, 10, i)
    total = sum(p.stat().st_size for p in tmp_path.glob("dead-letter*.seg"))
    assert total <= 64 * 1024 and queue.stats.dead_letter_bytes == total
    await queue.close()


async def test_pq5_disk_full_falls_back_to_memory_and_recovers(tmp_path, monkeypatch) -> None:
    full = [True]
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if full[0] and len(data) > 100:
            # a short write, as a filesystem gives when it fills up mid-record
            real_write(fd, data[:50])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(queue_module.os, "write", write)
    monkeypatch.setattr(queue_module, "DISK_RETRY_SECONDS", 0.0)
    queue = new_queue(tmp_path, memory_bytes=20_000)
    await queue.open()
    for i in range(0, 150, 10):
        queue.append([fragment(j, size=200, noise=True) for j in range(i, i + 10)])
        await queue.sync()
    assert not queue.stats.disk_ok and queue.stats.memory_bytes <= 20_000
    dropped = queue.stats.dropped["disk"]
    assert dropped > 0
    full[0] = False
    await queue.sync()
    assert queue.stats.disk_ok and queue.stats.memory_bytes == 0
    await queue.close()
    reopened = new_queue(tmp_path)
    await reopened.open()
    got = await drain(reopened)
    assert got == list(range(dropped, 150)) and reopened.stats.corruptions == {}
    await reopened.close()


@pytest.mark.slow
async def test_pq5_real_full_tmpfs(tmp_path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    done = await asyncio.to_thread(subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                                   capture_output=True)
    assert done.returncode == 0, f"this test needs root and tmpfs: {done.stderr!r}"
    queue = new_queue(mount / "q", max_bytes=64 * 2**20, memory_bytes=256 * 1024)
    try:
        await queue.open()
        for i in range(0, 1000, 50):
            queue.append([fragment(j, size=1000, noise=True) for j in range(i, i + 50)])
            await queue.sync()
        assert not queue.stats.disk_ok
        assert queue.stats.dropped.get("disk", 0) > 0
        # Everything not dropped is delivered, in order, from disk then memory.
        got = await drain(queue, max_samples=100)
        assert got == sorted(got) and len(got) + queue.stats.dropped["disk"] == 1000
    finally:
        await queue.close()
        for _ in range(50):
            umount = await asyncio.to_thread(subprocess.run, ["umount", str(mount)], capture_output=True)
            if umount.returncode == 0:
                break
            await asyncio.sleep(0.1)
