"""Incremental reading of a rotated log file: position + inode + head fingerprint, bounded chunks, no slurping.

A position remembers the file's device and inode, how far it was read (always at a line end), and a SHA-256 of its
first bytes (up to 1 KiB, all inside what was read). On the next run the same file continues where it stopped. When
the name now holds another file (rotated by rename) or a shorter or different one (copytruncate), the old content
is looked for among the siblings logrotate makes (`name.1`, `name.2.gz`, `name-20261127`, ...) by that fingerprint,
its unread rest is read first, then the new file from its start. Nothing read is counted twice, nothing that still
exists is skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

HEAD_BYTES = 1024
CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 64 << 10
"""A longer line is counted as malformed and skipped, so one bad line cannot grow memory."""
MAX_ROTATED_CANDIDATES = 8


@dataclass(slots=True)
class Position:
    """Where reading of one log file stopped."""

    device: int
    inode: int
    offset: int
    head_len: int = 0
    head_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Position | None:
        """The position stored by to_json, or None when it is not one."""
        try:
            position = cls(int(data["device"]), int(data["inode"]), int(data["offset"]), int(data["head_len"]),
                           str(data["head_sha256"]))
        except (KeyError, TypeError, ValueError):
            return None
        return position if position.offset >= 0 and 0 <= position.head_len <= HEAD_BYTES else None


class Budget:
    """How many more lines this run may read, and until when (time.monotonic())."""

    def __init__(self, lines: int, deadline: float) -> None:
        self.lines = lines
        self.deadline = deadline

    def take(self, wanted: int) -> int:
        """Up to `wanted` lines granted (0 once the lines or the time are spent)."""
        if self.lines <= 0 or time.monotonic() >= self.deadline:
            return 0
        granted = min(wanted, self.lines)
        self.lines -= granted
        return granted

    @property
    def spent(self) -> bool:
        """No more lines may be read in this run."""
        return self.lines <= 0 or time.monotonic() >= self.deadline


@dataclass(slots=True)
class ReadReport:
    """What one call of read_log did."""

    lines: int = 0
    too_long: int = 0
    unread_bytes: int = 0
    rotated: str = ""
    """The rotated file whose rest was read first ("" for none)."""
    lost: str = ""
    """Why content that was not read yet could not be found any more ("" when nothing was lost)."""


Feed = Callable[[list[bytes]], None]


def read_log(path: Path, position: Position | None, feed: Feed, budget: Budget,
             start_at_end: bool = False) -> tuple[Position, ReadReport]:
    """Feed the complete lines added to `path` since `position`; OSError when `path` cannot be read."""
    report = ReadReport()
    st = path.stat()
    if position is None:
        offset = st.st_size if start_at_end else 0
        position = Position(st.st_dev, st.st_ino, 0)
        if offset:
            position = _after_last_newline(path, position, offset)
    if not _is_same(path, st, position):
        if position.offset > 0:
            old = _find_rotated(path, position)
            if old is None:
                report.lost = (f"{path.name} was rotated or truncated and the file read up to byte "
                               f"{position.offset} is not among its rotated siblings")
            else:
                report.rotated = old.name
                old_position = Position(position.device, position.inode, position.offset, position.head_len,
                                        position.head_sha256)
                finished = _read(old, old_position, feed, budget, report, final=True)
                if not finished:
                    report.unread_bytes = st.st_size  # and the rest of the rotated file
                    return old_position, report
        position = Position(st.st_dev, st.st_ino, 0)
    _read(path, position, feed, budget, report, final=False)
    report.unread_bytes = max(0, path.stat().st_size - position.offset) if position.inode == st.st_ino else 0
    return position, report


def _is_same(path: Path, st: os.stat_result, position: Position) -> bool:
    """The file at `path` is the one `position` was taken in, with nothing cut off."""
    if (st.st_dev, st.st_ino) != (position.device, position.inode) or st.st_size < position.offset:
        return False
    return _head_matches(path, position)


def _head_matches(path: Path, position: Position) -> bool:
    if position.head_len == 0:
        return True
    try:
        with _open(path) as stream:
            head = stream.read(position.head_len)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == position.head_len and hashlib.sha256(head).hexdigest() == position.head_sha256


def _find_rotated(path: Path, position: Position) -> Path | None:
    """The sibling that holds the content `position` points into: same inode first, then any by fingerprint."""
    prefix = path.name
    try:
        siblings = [entry for entry in path.parent.iterdir()
                    if entry.name != prefix and entry.name.startswith(prefix) and entry.name[len(prefix)] in ".-_"]
    except OSError:
        return None
    stats: list[tuple[float, Path, os.stat_result]] = []
    for entry in siblings:
        try:
            st = entry.stat()
        except OSError:
            continue
        stats.append((st.st_mtime, entry, st))
    stats.sort(key=lambda item: (-item[0], item[1].name))
    same_inode = [item for item in stats if (item[2].st_dev, item[2].st_ino) == (position.device, position.inode)]
    for _, entry, st in [*same_inode, *stats][:MAX_ROTATED_CANDIDATES + len(same_inode)]:
        compressed = entry.name.endswith(".gz")
        if not compressed and st.st_size < position.offset:
            continue
        if _head_matches(entry, position):
            return entry
    return None


def _read(path: Path, position: Position, feed: Feed, budget: Budget, report: ReadReport, final: bool) -> bool:
    """Read from position.offset, advancing it line by line; True when the file's end was reached."""
    try:
        with _open(path) as stream:
            if position.offset:
                stream.seek(position.offset)
            finished = _read_stream(stream, position, feed, budget, report, final)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        # A truncated or corrupt rotated .gz: what was read counts, the rest cannot be had.
        report.lost = f"{path.name}: {err}"
        finished = True
    _refresh_head(path, position)
    return finished


def _read_stream(stream: BinaryIO, position: Position, feed: Feed, budget: Budget, report: ReadReport,
                 final: bool) -> bool:
    carry = b""
    skipping = False  # inside a line longer than MAX_LINE_BYTES
    while True:
        if budget.spent:
            return False
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            break
        buffer = carry + chunk if carry else chunk
        lines = buffer.split(b"\n")
        carry = lines.pop()
        if skipping and lines:
            tail = len(lines[0]) + 1
            position.offset += tail
            del lines[0]
            skipping = False
        else:
            tail = 0
        if lines:
            granted = budget.take(len(lines))
            if granted < len(lines):
                lines = lines[:granted]
                position.offset += sum(len(line) + 1 for line in lines)
                _feed_short(lines, feed, report)
                return False
            position.offset += len(buffer) - len(carry) - tail
            _feed_short(lines, feed, report)
        if len(carry) > MAX_LINE_BYTES:
            if not skipping:
                report.too_long += 1
            position.offset += len(carry)
            carry = b""
            skipping = True
    if final and carry and not skipping and budget.take(1):
        feed([carry])
        report.lines += 1
        position.offset += len(carry)
    elif final and skipping:
        position.offset += len(carry)
    return True


def _feed_short(lines: list[bytes], feed: Feed, report: ReadReport) -> None:
    if lines and max(map(len, lines)) > MAX_LINE_BYTES:
        kept = [line for line in lines if len(line) <= MAX_LINE_BYTES]
        report.too_long += len(lines) - len(kept)
        lines = kept
    report.lines += len(lines)
    feed(lines)


def _refresh_head(path: Path, position: Position) -> None:
    """Grow the fingerprint to cover up to HEAD_BYTES of what was read."""
    wanted = min(HEAD_BYTES, position.offset)
    if wanted <= position.head_len:
        return
    try:
        with _open(path) as stream:
            head = stream.read(wanted)
    except (OSError, EOFError, zlib.error):
        return
    if len(head) == wanted:
        position.head_len = wanted
        position.head_sha256 = hashlib.sha256(head).hexdigest()


def _after_last_newline(path: Path, position: Position, size: int) -> Position:
    """A position at the end of the last complete line before `size` (start_at_end)."""
    with _open(path) as stream:
        start = max(0, size - MAX_LINE_BYTES)
        stream.seek(start)
        tail = stream.read(size - start)
    cut = tail.rfind(b"\n")
    position.offset = start + cut + 1 if cut >= 0 else start
    _refresh_head(path, position)
    return position


def _open(path: Path) -> BinaryIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")
