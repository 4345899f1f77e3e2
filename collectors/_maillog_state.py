"""What the maillog kind keeps across runs and restarts: file positions, counters, keyed hashes of active accounts.

Accounts are never stored in clear text: each is an HMAC-SHA256 (truncated to 128 bits) under a random key created
once in the state dir (mode 0600). Per hash the state keeps its agency and the last day (proleptic ordinal) it sent
and read mail: the day buckets collapsed to what a window count needs (an account is active in the last N days when
its last active day is one of them). Positions, counters and hashes are written together, atomically (temp file,
fsync, rename), so after a crash or restart the next run neither counts a line twice nor skips one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors._maillog_files import Position

VERSION = 1
KEY_FILE = "hmac.key"
KEY_BYTES = 32
KEEP_DAYS = 31
"""Accounts whose last activity is older than this are forgotten (the longest window is 30 days)."""
WINDOWS = (("1d", 1), ("7d", 7), ("30d", 30))


@dataclass
class MaillogState:
    """Positions per log file, journal cursors, counters; per account hash [agency, last sent day, last read day].

    A day is a proleptic ordinal; 0 means never.
    """

    key_id: str = ""
    positions: dict[str, Position] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, list[Any]] = field(default_factory=dict)
    cursors: dict[str, str] = field(default_factory=dict)
    """Journal cursors, by source ("journal")."""

    def record(self, account_hash: str, agency: str, activity: int, day: int) -> None:
        """Note that an account (by hash) of `agency` sent (0) or read (1) mail on `day`."""
        entry = self.accounts.get(account_hash)
        if entry is None:
            entry = [agency, 0, 0]
            self.accounts[account_hash] = entry
        else:
            entry[0] = agency
        if day > entry[1 + activity]:
            entry[1 + activity] = day

    def add_counts(self, counters: dict[tuple[str, str], int], lines: dict[str, int]) -> None:
        """Add one run's counts."""
        for counter, value in counters.items():
            self.counters[counter] = self.counters.get(counter, 0) + value
        for result, count in lines.items():
            self.lines[result] = self.lines.get(result, 0) + count

    def prune(self, today: int) -> None:
        """Forget accounts not active in the last KEEP_DAYS days."""
        oldest = today - KEEP_DAYS
        stale = [h for h, (_, sent, read) in self.accounts.items() if max(sent, read) < oldest]
        for account_hash in stale:
            del self.accounts[account_hash]

    def active(self, today: int) -> dict[tuple[str, str, str], int]:
        """(agency, window, activity) -> distinct accounts, activity "any", "sent" or "read"."""
        counts: dict[tuple[str, str, str], int] = {}
        for agency, sent, read in self.accounts.values():
            for window, days in WINDOWS:
                first = today - days + 1
                for activity, active in (("any", max(sent, read) >= first), ("sent", sent >= first),
                                         ("read", read >= first)):
                    if active:
                        key = (agency, window, activity)
                        counts[key] = counts.get(key, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "version": VERSION,
            "key_id": self.key_id,
            "positions": {name: position.to_json() for name, position in self.positions.items()},
            "counters": [[metric, label, value] for (metric, label), value in sorted(self.counters.items())],
            "lines": self.lines,
            "accounts": self.accounts,
            "cursors": self.cursors,
        }

    @classmethod
    def from_json(cls, data: Any) -> MaillogState:
        """The state stored by to_json; ValueError when it is not one."""
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a maillog state of version 1")
        positions = {}
        for name, raw in dict(data.get("positions", {})).items():
            position = Position.from_json(raw)
            if position is not None:
                positions[str(name)] = position
        counters = {(str(metric), str(label)): int(value) for metric, label, value in data.get("counters", [])}
        lines = {str(k): int(v) for k, v in dict(data.get("lines", {})).items()}
        accounts = {}
        for account_hash, entry in dict(data.get("accounts", {})).items():
            agency, sent, read = entry
            accounts[str(account_hash)] = [str(agency), int(sent), int(read)]
        cursors = {str(k): str(v) for k, v in dict(data.get("cursors", {})).items()}
        return cls(str(data.get("key_id", "")), positions, counters, lines, accounts, cursors)


def load_state(path: Path) -> MaillogState | None:
    """The state saved at `path`, None when there is none; ValueError (with the path) when it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return MaillogState.from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: not a usable maillog state ({err})") from None


def save_state(path: Path, state: MaillogState) -> None:
    """Write the state atomically (temp file in the same directory, fsync, rename), mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps(state.to_json(), separators=(",", ":")).encode()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)


def load_or_create_key(directory: Path) -> bytes:
    """The HMAC key of this state dir, created once (random, mode 0600); concurrent callers get the same key."""
    path = directory / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = directory / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)  # fails if another run created the key first: then that one is used
        except FileExistsError:
            pass
        finally:
            temp.unlink()
        _fsync_dir(directory)
        key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: the HMAC key must be {KEY_BYTES} bytes, found {len(key)}")
    return key


def key_id(key: bytes) -> str:
    """A short public id of a key, so a state hashed under another key is not mixed with this one."""
    return hashlib.sha256(b"egov-agent maillog key id\0" + key).hexdigest()[:16]


def account_hash(key: bytes, account: bytes) -> str:
    """The keyed hash an account is kept as (hex, 128 bits)."""
    return hmac.new(key, account, hashlib.sha256).hexdigest()[:32]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
