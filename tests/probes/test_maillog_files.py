"""Incremental reading of rotated logs: rename, gzip, copytruncate, truncation, lost files, long lines."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import pytest

from collectors._maillog_files import MAX_LINE_BYTES, Budget, Position, ReadReport, read_log


def lines(prefix: str, count: int) -> bytes:
    return b"".join(f"{prefix} line {i}\n".encode() for i in range(count))


class Reader:
    """Calls read_log like the collector does, keeping the position between calls; records every line fed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.position: Position | None = None
        self.seen: list[bytes] = []

    def read(self, max_lines: int = 1_000_000, start_at_end: bool = False) -> ReadReport:
        self.position, report = read_log(self.path, self.position, self.seen.extend,
                                         Budget(max_lines, time.monotonic() + 30), start_at_end)
        return report


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "mail.log"


def test_only_complete_lines_are_read_and_each_once(log: Path) -> None:
    log.write_bytes(lines("a", 3))
    reader = Reader(log)
    assert reader.read().lines == 3
    with log.open("ab") as out:
        out.write(lines("b", 2) + b"partial")
    assert reader.read().lines == 2
    assert reader.read().lines == 0
    with log.open("ab") as out:
        out.write(b" end\n")
    reader.read()
    assert reader.seen == lines("a", 3).splitlines() + lines("b", 2).splitlines() + [b"partial end"]


def test_rename_rotation_in_the_middle_of_a_read(log: Path) -> None:
    log.write_bytes(lines("old", 10) + b"last line without newline")
    reader = Reader(log)
    assert reader.read(max_lines=4).lines == 4  # stopped mid-file by the cap
    log.rename(log.with_name("mail.log.1"))
    log.write_bytes(lines("new", 3))
    report = reader.read(max_lines=4)  # the rest of the old file comes first, still capped
    assert (report.lines, report.rotated) == (4, "mail.log.1")
    assert report.unread_bytes == log.stat().st_size
    report = reader.read()
    assert (report.rotated, report.lost) == ("mail.log.1", "")
    assert reader.read().lines == 0
    expected = [*lines("old", 10).splitlines(), b"last line without newline", *lines("new", 3).splitlines()]
    assert reader.seen == expected


def test_rotated_then_compressed_before_the_next_run(log: Path) -> None:
    log.write_bytes(lines("old", 2000))
    reader = Reader(log)
    reader.read(max_lines=500)
    rotated = log.with_name("mail.log.1")
    log.rename(rotated)
    with rotated.open("rb") as src, gzip.open(log.with_name("mail.log.1.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    log.with_name("mail.log.2.gz").write_bytes(gzip.compress(lines("older", 5)))  # an older one, not read again
    log.write_bytes(lines("new", 7))
    report = reader.read()
    assert (report.rotated, report.lost, report.lines) == ("mail.log.1.gz", "", 1500 + 7)
    assert reader.seen == lines("old", 2000).splitlines() + lines("new", 7).splitlines()


def test_two_rotations_between_runs_keep_the_dated_sibling(log: Path) -> None:
    log.write_bytes(lines("first", 50))
    reader = Reader(log)
    reader.read(max_lines=10)
    log.rename(log.with_name("mail.log-20261126"))
    log.write_bytes(lines("second", 5))
    log.rename(log.with_name("mail.log-20261127"))
    log.write_bytes(lines("third", 5))
    report = reader.read()
    # The file read last is finished; the one rotated in between is not found by the position (lost is said).
    assert report.rotated == "mail.log-20261126"
    assert reader.seen[:50] == lines("first", 50).splitlines()
    assert reader.seen[50:] == lines("third", 5).splitlines()


def test_copytruncate_reads_the_rest_from_the_copy(log: Path) -> None:
    log.write_bytes(lines("before", 20))
    reader = Reader(log)
    reader.read(max_lines=8)
    shutil.copyfile(log, log.with_name("mail.log.1"))
    with log.open("r+b") as out:
        out.truncate(0)
    log.write_bytes(lines("after", 30))  # grew past the old offset again, same inode
    report = reader.read()
    assert (report.rotated, report.lost) == ("mail.log.1", "")
    assert reader.seen == lines("before", 20).splitlines() + lines("after", 30).splitlines()


def test_truncation_without_a_copy_restarts_and_says_what_was_lost(log: Path) -> None:
    log.write_bytes(lines("before", 20))
    reader = Reader(log)
    reader.read(max_lines=5)
    with log.open("r+b") as out:
        out.truncate(0)
    log.write_bytes(lines("after", 2))
    report = reader.read()
    assert "is not among its rotated siblings" in report.lost
    assert reader.seen == lines("before", 5).splitlines() + lines("after", 2).splitlines()


def test_a_new_file_with_the_same_inode_is_not_taken_for_the_old(log: Path) -> None:
    log.write_bytes(lines("x", 100))
    reader = Reader(log)
    reader.read()
    # Rewritten in place with other content of the same size and more: the head fingerprint differs.
    log.write_bytes(lines("y", 120))
    reader.read()
    assert reader.seen[100:] == lines("y", 120).splitlines()


def test_corrupt_gzip_sibling_counts_what_it_could_read(log: Path) -> None:
    log.write_bytes(lines("old", 3000))
    reader = Reader(log)
    reader.read(max_lines=100)
    data = gzip.compress(log.read_bytes())
    log.unlink()
    log.with_name("mail.log.1.gz").write_bytes(data[: len(data) // 2])  # cut in half
    log.write_bytes(lines("new", 1))
    report = reader.read()
    assert report.rotated == "mail.log.1.gz"
    assert report.lost  # the cut is reported
    assert reader.seen[-1] == b"new line 0"
    assert reader.seen[:100] == lines("old", 100).splitlines()


def test_overlong_lines_are_skipped_and_counted(log: Path) -> None:
    log.write_bytes(b"short 1\n" + b"x" * (MAX_LINE_BYTES * 3) + b"\nshort 2\n" + b"y" * (3 << 20) + b"\nshort 3\n")
    reader = Reader(log)
    report = reader.read()
    assert report.too_long == 2
    assert reader.seen == [b"short 1", b"short 2", b"short 3"]
    assert reader.position is not None and reader.position.offset == log.stat().st_size


def test_start_at_end_skips_what_is_already_there(log: Path) -> None:
    log.write_bytes(lines("old", 5) + b"half")
    reader = Reader(log)
    reader.read(start_at_end=True)
    with log.open("ab") as out:
        out.write(b" done\n" + lines("new", 1))
    reader.read(start_at_end=True)
    assert reader.seen == [b"half done", b"new line 0"]


def test_position_round_trips_and_rejects_garbage() -> None:
    position = Position(1, 2, 3, 3, "ab")
    assert Position.from_json(position.to_json()) == position
    assert Position.from_json({"device": "x"}) is None
    assert Position.from_json({"device": 1, "inode": 2, "offset": -5, "head_len": 0, "head_sha256": ""}) is None


def test_missing_file_raises_oserror(log: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Reader(log).read()
