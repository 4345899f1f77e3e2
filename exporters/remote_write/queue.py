"""A crash-safe FIFO of WriteRequest fragments on disk, one directory per destination.

Layout of a queue directory:

    lock                       flock against a second agent on the same directory (holds the owner's pid)
    cursor.json                {"acked_seq": N}: every record up to N was delivered (or dropped and counted)
    00000000000000000001.seg   append-only segments of records, oldest first
    quarantine/                corrupted files moved aside, for a human to look at
    dead-letter.seg            records the receiver refused for good (400, 404, 409, ...), bounded

A record is `magic "EGQ1" | u32 body length | u32 crc32(length bytes + body) | body`, the body being
`u64 seq | i64 timestamp ms | u32 samples | u32 group | payload as a snappy block`. Records are written with
write(2) as soon as they arrive (a SIGKILL loses nothing written), fsynced at least once a second (a power cut
loses at most that), and the cursor is replaced atomically. A broken record never stops the queue: the reader
resynchronises on the next magic, the file is copied to quarantine and the corruption is counted.

All file work runs in one worker thread per queue, so the event loop never waits for the disk; `append` only
hands bytes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import StartupError
from exporters.remote_write.encode import Fragment, compress, decompress

log = logging.getLogger(__name__)
T = TypeVar("T")

MAGIC = b"EGQ1"
_HEADER = struct.Struct("<4sII")
_BODY = struct.Struct("<QqII")
HEADER_BYTES = _HEADER.size + _BODY.size
MAX_RECORD_BYTES = 256 * 2**20
_SEGMENT_RE = re.compile(r"^(\d{20,})\.seg$")
_READ_CHUNK = 2**20
DISK_RETRY_SECONDS = 10.0
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


@dataclass(slots=True)
class Record:
    """One queued fragment with its sequence number and the segment it was read from (None: memory)."""

    seq: int
    timestamp_ms: int
    samples: int
    group: int
    payload: bytes
    segment: int | None = None

    def pack(self) -> bytes:
        """The record's bytes on disk (the payload snappy-compressed: label sets repeat within a result)."""
        body = _BODY.pack(self.seq, self.timestamp_ms, self.samples, self.group) + compress(self.payload)
        length = len(body).to_bytes(4, "little")
        return _HEADER.pack(MAGIC, len(body), zlib.crc32(body, zlib.crc32(length))) + body


@dataclass(slots=True)
class Batch:
    """Records to send in one request (oldest first), records too old to send, and where the batch ends."""

    records: list[Record]
    expired: list[Record]
    end: tuple[int, int]
    complete: bool
    """True when a limit ended the batch; False when the queue ran out of records."""

    @property
    def samples(self) -> int:
        """Samples in the records to send."""
        return sum(r.samples for r in self.records)

    @property
    def payload(self) -> bytes:
        """The WriteRequest of every record to send."""
        return b"".join(r.payload for r in self.records)

    @property
    def oldest_ms(self) -> int:
        """Timestamp of the oldest record to send (0 if none)."""
        return min((r.timestamp_ms for r in self.records), default=0)

    @property
    def newest_ms(self) -> int:
        """Timestamp of the newest record to send (0 if none)."""
        return max((r.timestamp_ms for r in self.records), default=0)


@dataclass
class QueueStats:
    """Numbers the self-metrics read; written by the queue's thread, read by the event loop."""

    bytes: int = 0
    samples: int = 0
    head_ms: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    corruptions: dict[str, int] = field(default_factory=dict)
    dead_letter_bytes: int = 0
    memory_bytes: int = 0
    disk_ok: bool = True

    def drop(self, reason: str, samples: int) -> None:
        """Count samples dropped for a reason."""
        if samples:
            self.dropped[reason] = self.dropped.get(reason, 0) + samples

    def corrupt(self, kind: str) -> None:
        """Count one corruption found."""
        self.corruptions[kind] = self.corruptions.get(kind, 0) + 1


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int = 0
    samples: int = 0
    newest_ms: int = 0
    last_seq: int = 0


class DiskQueue:
    """One destination's queue; async methods run in the queue's own worker thread, `append` never blocks."""

    def __init__(self, directory: Path, *, max_bytes: int, max_age: float, memory_bytes: int,
                 dead_letter_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.memory_bytes = memory_bytes
        self.dead_letter_bytes = dead_letter_bytes
        self.segment_bytes = max(64 * 1024, min(16 * 2**20, max_bytes // 32))
        self.stats = QueueStats()
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rw-queue-{directory.name}")
        self._incoming: deque[list[Fragment]] = deque()
        self._incoming_lock = threading.Lock()
        self._incoming_bytes = 0
        self._drain_scheduled = False
        self._closed = False
        # Everything below belongs to the worker thread.
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._dir_fd: int | None = None
        self._next_seq = 1
        self._acked_seq = 0
        self._cursor_written = -1
        self._position = (0, 0)
        self._dirty = False
        self._memory: deque[Record] = deque()
        self._disk_retry_at = 0.0
        self._disk_error_logged_at = 0.0
        self._quarantined: set[str] = set()

    # ------------------------------------------------------------------ event-loop side

    async def open(self) -> None:
        """Lock and scan the directory; raises StartupError if it is locked or cannot be written."""
        await self._run(self._open)

    def append(self, fragments: list[Fragment]) -> None:
        """Queue fragments for writing, in order; drops them (counted) if the disk has fallen far behind."""
        if self._closed or not fragments:
            return
        size = sum(len(f.payload) + HEADER_BYTES for f in fragments)
        with self._incoming_lock:
            if self._incoming_bytes + size > self.memory_bytes:
                self.stats.drop("backpressure", sum(f.samples for f in fragments))
                return
            self._incoming.append(fragments)
            self._incoming_bytes += size
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._executor.submit(self._drain)

    async def read(self, max_samples: int, max_bytes: int, one_per_group: bool) -> Batch:
        """The next records after the last acknowledged batch, within the limits (never empty-handed if one
        record alone exceeds them)."""
        return await self._run(self._read, max_samples, max_bytes, one_per_group)

    async def ack(self, batch: Batch, dropped_reason: str | None = None) -> None:
        """The batch was delivered (or, with a reason, dropped and counted): never read it again."""
        await self._run(self._ack, batch, dropped_reason)

    async def dead_letter(self, payload: bytes, samples: int, timestamp_ms: int) -> None:
        """Keep a refused payload in the bounded dead-letter file for a human to replay."""
        await self._run(self._dead_letter, payload, samples, timestamp_ms)

    async def sync(self) -> None:
        """fsync what was written, save the cursor, apply max_age, retry the disk after a failure."""
        await self._run(self._sync)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run CPU work (compression) on the queue's thread, after what is already queued there."""
        return await self._run(function, *args)

    async def close(self) -> None:
        """Write what is in memory, fsync, save the cursor and unlock; the queue takes no more appends."""
        self._closed = True
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # ------------------------------------------------------------------ worker thread

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "quarantine").mkdir(exist_ok=True)
            self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StartupError(f"cannot use remote-write queue directory {self.directory}: "
                               f"{err.strerror or err}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StartupError(f"remote-write queue directory {self.directory} is locked by another egov-agent "
                               f"(pid {owner})") from None
        try:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            probe = self.directory / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            self._unlock()
            raise StartupError(f"cannot write remote-write queue directory {self.directory}: "
                               f"{err.strerror or err}") from None
        self._acked_seq = self._load_cursor()
        self._cursor_written = self._acked_seq
        self._scan()
        last = max((s.last_seq for s in self._segments), default=0)
        self._next_seq = max(last, self._acked_seq) + 1
        self._position = (self._segments[0].number, 0) if self._segments else (0, 0)
        self._open_new_segment()
        self._refresh_stats()

    def _load_cursor(self) -> int:
        path = self.directory / "cursor.json"
        if not path.exists() and not path.is_symlink():
            return 0
        try:
            data = json.loads(path.read_bytes())
            acked = data["acked_seq"]
            if not isinstance(acked, int) or isinstance(acked, bool) or acked < 0:
                raise ValueError("acked_seq is not a non-negative integer")
            return acked
        except (OSError, ValueError, KeyError, TypeError) as err:
            self._quarantine(path, "cursor", f"unreadable cursor ({err}); replaying every record on disk")
            return 0

    def _scan(self) -> None:
        numbered: list[tuple[int, Path]] = []
        for entry in sorted(self.directory.iterdir()):
            match = _SEGMENT_RE.match(entry.name)
            if match is None:
                continue
            if not entry.is_file() or entry.is_symlink():
                self._quarantine(entry, "segment", "a segment that is not a regular file")
                continue
            numbered.append((int(match.group(1)), entry))
        numbered.sort()
        last_seq = 0
        for number, path in numbered:
            data = path.read_bytes()
            if not data:
                path.unlink()
                continue
            found, problems, _ = parse(data)
            records = [record for record, _ in found]
            # A segment whose records go back in sequence (a copied or stray file) is not ours to order.
            fresh = [r for r in records if r.seq > last_seq]
            if len(fresh) != len(records):
                problems.append("out_of_order")
            if problems:
                kind = "torn_tail" if problems == ["torn_tail"] else problems[0]
                if kind == "torn_tail":
                    log.warning("remote-write queue: cut the torn last record of a segment",
                                extra={"kv": {"segment": str(path)}})
                    self.stats.corrupt(kind)
                else:
                    self._quarantine(path, kind, f"corrupted segment ({', '.join(sorted(set(problems)))}); "
                                     f"kept {len(fresh)} intact records", copy=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(b"".join(r.pack() for r in fresh))
                tmp.replace(path)
                if not fresh:
                    path.unlink()
                    continue
            segment = _Segment(number, path, size=path.stat().st_size)
            for record in fresh:
                segment.last_seq = record.seq
                segment.newest_ms = max(segment.newest_ms, record.timestamp_ms)
                if record.seq > self._acked_seq:
                    segment.samples += record.samples
            last_seq = max(last_seq, segment.last_seq)
            self._segments.append(segment)
        for stray in self.directory.glob("*.tmp"):
            stray.unlink(missing_ok=True)

    def _open_new_segment(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        number = self._segments[-1].number + 1 if self._segments else 1
        path = self.directory / f"{number:020d}.seg"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        self._segments.append(_Segment(number, path))
        self._dirty = True
        if self._position == (0, 0):
            self._position = (number, 0)

    def _drain(self) -> None:
        while True:
            with self._incoming_lock:
                if not self._incoming:
                    self._drain_scheduled = False
                    return
                fragments = self._incoming.popleft()
                self._incoming_bytes -= sum(len(f.payload) + HEADER_BYTES for f in fragments)
            for fragment in fragments:
                record = Record(self._next_seq, fragment.timestamp_ms, fragment.samples, fragment.group,
                                fragment.payload)
                self._next_seq += 1
                self._store(record)
            self._enforce_max_bytes()
            self._refresh_stats()

    def _store(self, record: Record) -> None:
        if self._memory or self._fd is None:
            self._memory.append(record)
            self._enforce_memory()
            return
        try:
            self._write(record)
        except OSError as err:
            if err.errno not in _DISK_ERRNOS:
                raise
            self._disk_failed(err)
            self._memory.append(record)
            self._enforce_memory()

    def _write(self, record: Record) -> None:
        assert self._fd is not None
        segment = self._segments[-1]
        if segment.size >= self.segment_bytes:
            self._open_new_segment()
            segment = self._segments[-1]
        data = record.pack()
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
        except OSError:
            # Leave no torn record behind: cut the segment back to its last whole record.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, segment.size)
            raise
        record.segment = segment.number
        segment.size += len(data)
        segment.samples += record.samples
        segment.last_seq = record.seq
        segment.newest_ms = max(segment.newest_ms, record.timestamp_ms)
        self._dirty = True

    def _disk_failed(self, err: OSError) -> None:
        now = time.monotonic()
        self.stats.disk_ok = False
        self._disk_retry_at = now + DISK_RETRY_SECONDS
        if now - self._disk_error_logged_at >= 60:
            self._disk_error_logged_at = now
            log.error("remote-write queue cannot write to disk; keeping samples in memory (bounded) until it can",
                      extra={"kv": {"directory": str(self.directory), "err": err.strerror or str(err),
                                    "memory_bytes": self.memory_bytes}})

    def _enforce_memory(self) -> None:
        size = sum(len(r.payload) + HEADER_BYTES for r in self._memory)
        while self._memory and size > self.memory_bytes:
            oldest = self._memory.popleft()
            size -= len(oldest.payload) + HEADER_BYTES
            if oldest.seq > self._acked_seq:
                self.stats.drop("disk", oldest.samples)

    def _retry_disk(self) -> None:
        if not self._memory or time.monotonic() < self._disk_retry_at:
            return
        try:
            if self._fd is None:
                self._open_new_segment()
            while self._memory:
                record = self._memory[0]
                if record.seq > self._acked_seq:
                    self._write(record)
                self._memory.popleft()
        except OSError as err:
            if err.errno not in _DISK_ERRNOS:
                raise
            self._disk_failed(err)
            return
        self.stats.disk_ok = True
        log.info("remote-write queue writes to disk again", extra={"kv": {"directory": str(self.directory)}})

    def _read(self, max_samples: int, max_bytes: int, one_per_group: bool) -> Batch:
        self._drain()
        cutoff = int((self._clock() - self.max_age) * 1000)
        records: list[Record] = []
        expired: list[Record] = []
        groups: set[int] = set()
        samples = size = 0
        position = self._position
        complete = False
        last_seq = self._acked_seq

        def take(record: Record) -> bool:
            nonlocal samples, size, last_seq, complete
            if record.seq <= last_seq:
                return True
            if record.timestamp_ms < cutoff:
                expired.append(record)
                last_seq = record.seq
                return True
            if records and (samples + record.samples > max_samples or size + len(record.payload) > max_bytes
                            or (one_per_group and record.group in groups)):
                complete = True
                return False
            records.append(record)
            groups.add(record.group)
            samples += record.samples
            size += len(record.payload)
            last_seq = record.seq
            if samples >= max_samples or size >= max_bytes:
                complete = True
            return True

        segments = list(self._segments)
        for index, segment in enumerate(segments):
            if complete or segment.number < position[0]:
                continue
            offset = position[1] if segment.number == position[0] else 0
            for record, end in self._records(segment, offset):
                if not take(record):
                    break
                position = (segment.number, end)
                if complete:
                    break
            else:
                if index + 1 < len(segments) and not complete:
                    position = (segments[index + 1].number, 0)
        if not complete:
            for record in list(self._memory):
                if not take(record) or complete:
                    break
        if records:
            self.stats.head_ms = records[0].timestamp_ms
        return Batch(records, expired, position, complete)

    def _records(self, segment: _Segment, offset: int) -> Iterator[tuple[Record, int]]:
        if offset >= segment.size:
            return
        try:
            fd = os.open(segment.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        want = _READ_CHUNK
        try:
            while offset < segment.size:
                remaining = segment.size - offset
                data = os.pread(fd, min(remaining, want), offset)
                if not data:
                    return
                final = len(data) >= remaining
                records, problems, consumed = parse(data, base=offset, final=final)
                if problems and problems != ["torn_tail"]:
                    self._quarantine(segment.path, problems[0], "corrupted record found while reading; "
                                     "skipped to the next intact record", copy=True)
                for record, end in records:
                    record.segment = segment.number
                    yield record, end
                if consumed == 0:
                    if final:
                        return
                    want = min(MAX_RECORD_BYTES + HEADER_BYTES, want * 4)
                    continue
                offset += consumed
        finally:
            os.close(fd)

    def _ack(self, batch: Batch, dropped_reason: str | None) -> None:
        for record in batch.expired:
            self.stats.drop("too_old", record.samples)
        if dropped_reason is not None:
            self.stats.drop(dropped_reason, sum(r.samples for r in batch.records))
        for record in (*batch.expired, *batch.records):
            segment = self._segment(record.segment)
            if segment is not None:
                segment.samples -= record.samples
            self._acked_seq = max(self._acked_seq, record.seq)
        self._position = max(self._position, batch.end)
        while self._memory and self._memory[0].seq <= self._acked_seq:
            self._memory.popleft()
        while len(self._segments) > 1 and self._segments[0].number < self._position[0]:
            self._delete(self._segments.pop(0))
        self._refresh_stats()

    def _dead_letter(self, payload: bytes, samples: int, timestamp_ms: int) -> None:
        if self.dead_letter_bytes <= 0:
            return
        path = self.directory / "dead-letter.seg"
        data = Record(0, timestamp_ms, samples, 0, payload).pack()
        try:
            size = path.stat().st_size if path.exists() else 0
            if size and size + len(data) > self.dead_letter_bytes // 2:
                path.replace(self.directory / "dead-letter.1.seg")
            if len(data) <= self.dead_letter_bytes // 2:
                with path.open("ab") as file:
                    file.write(data)
            self.stats.dead_letter_bytes = sum(
                p.stat().st_size for p in self.directory.glob("dead-letter*.seg") if p.is_file()
            )
        except OSError as err:
            log.warning("cannot write the remote-write dead-letter file",
                        extra={"kv": {"path": str(path), "err": err.strerror or str(err)}})

    def _sync(self) -> None:
        self._drain()
        self._retry_disk()
        self._expire()
        try:
            if self._dirty and self._fd is not None:
                os.fsync(self._fd)
                if self._dir_fd is not None:
                    os.fsync(self._dir_fd)
                self._dirty = False
            if self._acked_seq != self._cursor_written:
                self._write_cursor()
        except OSError as err:
            if err.errno not in _DISK_ERRNOS:
                raise
            self._disk_failed(err)
        self._refresh_stats()

    def _expire(self) -> None:
        cutoff = int((self._clock() - self.max_age) * 1000)
        while len(self._segments) > 1 and self._segments[0].newest_ms < cutoff:
            segment = self._segments.pop(0)
            self.stats.drop("too_old", segment.samples)
            self._delete(segment)
            self._position = max(self._position, (self._segments[0].number, 0))

    def _enforce_max_bytes(self) -> None:
        while len(self._segments) > 1 and sum(s.size for s in self._segments) > self.max_bytes:
            segment = self._segments.pop(0)
            self.stats.drop("queue_full", segment.samples)
            self._delete(segment)
            self._position = max(self._position, (self._segments[0].number, 0))

    def _write_cursor(self) -> None:
        tmp = self.directory / "cursor.json.tmp"
        with tmp.open("w", encoding="utf-8") as file:
            json.dump({"acked_seq": self._acked_seq}, file)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(self.directory / "cursor.json")
        if self._dir_fd is not None:
            os.fsync(self._dir_fd)
        self._cursor_written = self._acked_seq

    def _close(self) -> None:
        self._drain()
        with contextlib.suppress(OSError):
            self._disk_retry_at = 0.0
            self._retry_disk()
            if self._fd is not None:
                os.fsync(self._fd)
            if self._acked_seq != self._cursor_written:
                self._write_cursor()
        if self._memory:
            self.stats.drop("disk", sum(r.samples for r in self._memory if r.seq > self._acked_seq))
            log.error("remote-write queue: samples held in memory are lost at shutdown (disk not writable)",
                      extra={"kv": {"directory": str(self.directory)}})
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _segment(self, number: int | None) -> _Segment | None:
        if number is None:
            return None
        return next((s for s in self._segments if s.number == number), None)

    def _delete(self, segment: _Segment) -> None:
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._dirty = True

    def _quarantine(self, path: Path, kind: str, why: str, copy: bool = False) -> None:
        if path.name in self._quarantined and copy:
            return
        self.stats.corrupt(kind)
        self._quarantined.add(path.name)
        target = self.directory / "quarantine" / f"{path.name}.{int(self._clock())}"
        try:
            if copy and path.is_file():
                shutil.copyfile(path, target)
            elif path.is_dir() and not path.is_symlink():
                shutil.move(path, target)
            else:
                path.replace(target)
        except OSError as err:
            log.warning("cannot quarantine a corrupted queue file", extra={"kv": {"path": str(path), "err": str(err)}})
        log.error("remote-write queue: %s; moved aside, counted, and going on", why,
                  extra={"kv": {"path": str(path), "quarantine": str(target), "kind": kind}})

    def _refresh_stats(self) -> None:
        memory = [r for r in self._memory if r.seq > self._acked_seq]
        self.stats.bytes = sum(s.size for s in self._segments) + sum(len(r.payload) + HEADER_BYTES for r in memory)
        self.stats.memory_bytes = sum(len(r.payload) + HEADER_BYTES for r in memory)
        self.stats.samples = sum(s.samples for s in self._segments) + sum(r.samples for r in memory)
        if self.stats.samples == 0:
            self.stats.head_ms = 0


def parse(data: bytes, base: int = 0, final: bool = True) -> tuple[list[tuple[Record, int]], list[str], int]:
    """Records found in `data` with the file offset just after each, the problems met (`bad_crc`, `bad_length`,
    `garbage`, `torn_tail`) and how many bytes were consumed. With `final` False, a record cut off at the end of
    `data` is left unconsumed (read more); with `final` True it is a torn tail."""
    records: list[tuple[Record, int]] = []
    problems: list[str] = []
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < _HEADER.size:
            if final:
                problems.append("torn_tail")
                offset = end
            break
        magic, length, crc = _HEADER.unpack_from(data, offset)
        if magic != MAGIC or length < _BODY.size or length > MAX_RECORD_BYTES:
            problems.append("garbage" if magic != MAGIC else "bad_length")
            offset = _resync(data, offset + 1)
            continue
        start = offset + _HEADER.size
        if start + length > end:
            if not final:
                break
            nxt = data.find(MAGIC, offset + 1)
            problems.append("torn_tail" if nxt == -1 else "bad_length")
            offset = end if nxt == -1 else nxt
            continue
        body = data[start : start + length]
        if zlib.crc32(body, zlib.crc32(length.to_bytes(4, "little"))) != crc:
            problems.append("bad_crc")
            offset = _resync(data, offset + 1)
            continue
        try:
            payload = decompress(body[_BODY.size :])
        except Exception:  # noqa: BLE001 - cramjam raises its own DecompressionError; a bad block is a bad record
            problems.append("bad_payload")
            offset = start + length
            continue
        seq, timestamp_ms, samples, group = _BODY.unpack_from(body)
        records.append((Record(seq, timestamp_ms, samples, group, payload), base + start + length))
        offset = start + length
    return records, problems, offset


def _resync(data: bytes, start: int) -> int:
    found = data.find(MAGIC, start)
    return len(data) if found == -1 else found
