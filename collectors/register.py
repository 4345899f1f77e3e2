"""Figures no system holds, from a CSV or YAML file kept by staff: gauges labelled with the row's agency.

The target is the file's path. Each run reads the file and hashes it (registers are small); it is parsed again only
when the hash changed. Rows that cannot be read are skipped and reported with their line numbers, the good rows still
exported.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.errors import Outcome, ProtocolError
from collectors import _register_parse
from collectors._lru import LruMap
from collectors.base import (
    RESERVED_LABELS,
    CollectorSpec,
    LabelName,
    MetricName,
    MetricSpec,
    ProbeContext,
    Settings,
    check_user_metric_name,
)

METRICS = (
    MetricSpec("egov_register_rows", "gauge", "Rows of the register file that were read and exported."),
    MetricSpec("egov_register_bad_rows", "gauge",
               "Rows of the register file that were skipped (the run's debug log names their lines)."),
    MetricSpec("egov_register_file_modified_timestamp_seconds", "gauge",
               "When the register file was last changed (its mtime), in Unix seconds."),
)
OWN_NAMES = frozenset(m.name for m in METRICS)
MAX_LOGGED_BAD_ROWS = 20
MAX_CACHED_FILES = 256

Column = Annotated[str, Field(min_length=1, max_length=200)]
_AGENCY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class RegisterMetric(Settings):
    """One column of the register as a gauge `{agency, <labels>}`."""

    column: Column
    metric_name: MetricName
    help: Annotated[str, Field(min_length=1, max_length=500)]
    type: Literal["number", "ratio", "bool", "date"] = "number"
    """How to read a cell: number; ratio (0.95 or 95%); bool (1/0, true/false, có/không, x); date -> Unix seconds."""
    labels: dict[LabelName, Column] = Field(default_factory=dict)
    """Further labels: label name -> the column holding its value (e.g. survey: đợt khảo sát)."""

    @model_validator(mode="after")
    def _names(self) -> RegisterMetric:
        name = self.metric_name
        check_user_metric_name(name, OWN_NAMES)
        if name.endswith("_total"):
            raise ValueError(f"metric_name {name!r}: register figures are gauges, so no _total suffix")
        if self.type == "date" and not name.endswith("_timestamp_seconds"):
            raise ValueError(f"metric {name!r} holds dates: its name must end in _timestamp_seconds")
        for label in self.labels:
            if label in RESERVED_LABELS or label.startswith("__") or label == "agency":
                raise ValueError(f"metric {name!r}: label {label!r} is reserved (agency is the row's agency column)")
        return self

    def spec(self) -> MetricSpec:
        """The catalogue entry of this metric."""
        return MetricSpec(self.metric_name, "gauge", self.help, ("agency", *self.labels))


class RegisterSettings(Settings):
    """How to read the register and which columns become which metrics."""

    metrics: Annotated[tuple[RegisterMetric, ...], Field(min_length=1, max_length=100)]
    agency_column: Column = "org_id"
    """The column with the agency's Decision 20/2020 code: the `agency` label."""
    format: Literal["auto", "csv", "yaml"] = "auto"
    """auto: by the file's extension (.csv, .yaml, .yml)."""
    delimiter: Literal["auto", ",", ";", "\t"] = "auto"
    utc_offset: str = "+07:00"
    """The time zone of dates in the file (midnight there); Vietnam's by default."""
    max_bytes: Annotated[int, Field(ge=1, le=64 << 20)] = 8 << 20

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, value: str) -> str:
        match = _OFFSET_RE.match(value)
        if match is None or int(match[2]) > 14 or int(match[3]) > 59:
            raise ValueError(f"utc_offset {value!r} is not like +07:00")
        return value

    @model_validator(mode="after")
    def _unique(self) -> RegisterSettings:
        names = [m.metric_name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric_name {duplicates[0]!r} is used twice")
        return self

    def timezone(self) -> dt.timezone:
        """utc_offset as a timezone."""
        match = _OFFSET_RE.match(self.utc_offset)
        assert match is not None
        minutes = int(match[2]) * 60 + int(match[3])
        return dt.timezone(dt.timedelta(minutes=-minutes if match[1] == "-" else minutes))


async def probe_register(ctx: ProbeContext, settings: RegisterSettings) -> bool:
    """Export the register's values; success when the file could be read (bad rows are partial errors)."""
    path = ctx.target
    key = (path, settings.model_dump_json())
    previous = _loaded.get(key)
    try:
        # In a worker thread: a file on a dead network mount must not block the event loop.
        loaded, modified = await asyncio.to_thread(_load, path, settings, previous)
    except FileNotFoundError:
        return ctx.fail(Outcome.CONNECTION_FAILED, "register file %s does not exist", path)
    except OSError as err:
        return ctx.fail(Outcome.CONNECTION_FAILED, "cannot read register file %s: %s", path, err.strerror or err)
    except ProtocolError as err:
        return ctx.fail(Outcome.PROTOCOL_ERROR, "register file %s: %s", path, err)
    if loaded is not previous:
        _loaded.put(key, loaded)
        ctx.log("register file %s parsed (%d rows, %d bad)", path, loaded.rows, len(loaded.bad))
    for name, value, labels in loaded.samples:
        ctx.sink.add(name, value, *labels)
    ctx.sink.add("egov_register_rows", loaded.rows)
    ctx.sink.add("egov_register_bad_rows", len(loaded.bad))
    ctx.sink.add("egov_register_file_modified_timestamp_seconds", modified)
    for line, reason in loaded.bad[:MAX_LOGGED_BAD_ROWS]:
        ctx.log("%s line %d: %s", path, line, reason, level="warning")
    if len(loaded.bad) > MAX_LOGGED_BAD_ROWS:
        ctx.log("%s: %d more bad rows", path, len(loaded.bad) - MAX_LOGGED_BAD_ROWS, level="warning")
    for _ in loaded.bad:
        ctx.count_partial_error("bad_row")
    return True


def settings_metrics(settings: RegisterSettings) -> list[MetricSpec]:
    """The metrics the register's columns become."""
    return [metric.spec() for metric in settings.metrics]


def check_register_target(target: str, settings: RegisterSettings) -> None:
    """The target is the register file's absolute path; with format auto, its extension says CSV or YAML."""
    if not Path(target).is_absolute():
        raise ValueError(f"target {target!r} must be the register file's absolute path")
    _format(target, settings)


SPEC = CollectorSpec(
    kind="register",
    settings=RegisterSettings,
    probe=probe_register,
    metrics=METRICS,
    check_target=check_register_target,
    settings_metrics=settings_metrics,
)


@dataclass(slots=True)
class _Loaded:
    sha256: str
    rows: int
    samples: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)


_loaded: LruMap[tuple[str, str], _Loaded] = LruMap(MAX_CACHED_FILES)


def _load(path: str, settings: RegisterSettings, previous: _Loaded | None) -> tuple[_Loaded, float]:
    """(rows, mtime): read and hash the file, parse it only if its bytes changed since `previous`."""
    with Path(path).open("rb") as file:
        modified = os.fstat(file.fileno()).st_mtime
        raw = file.read(settings.max_bytes + 1)
    if len(raw) > settings.max_bytes:
        raise ProtocolError(f"it has more than max_bytes ({settings.max_bytes}) bytes")
    digest = hashlib.sha256(raw).hexdigest()
    if previous is not None and previous.sha256 == digest:
        return previous, modified
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ProtocolError(f"line {line}: not UTF-8 text (save it as 'CSV UTF-8')") from None
    loaded = _Loaded(digest, 0)
    _parse(text, settings, _format(path, settings), loaded)
    return loaded, modified


def _parse(text: str, settings: RegisterSettings, fmt: str, loaded: _Loaded) -> None:
    header, rows = _register_parse.read_rows(text, fmt, settings.delimiter)
    if header is not None:
        needed = {settings.agency_column} | {m.column for m in settings.metrics} | {
            c for m in settings.metrics for c in m.labels.values()}
        missing = sorted(needed - set(header))
        if missing:
            present = ", ".join(h for h in header if h)
            raise ProtocolError(f"the header has no column {missing[0]!r} (it has: {present})")
    tz = settings.timezone()
    seen: dict[tuple[str, tuple[str, ...]], int] = {}
    for row in rows:
        if isinstance(row, tuple):
            loaded.bad.append(row)
            continue
        samples, reason = _row_samples(row, settings, tz, seen)
        if reason:
            loaded.bad.append((row.line, reason))
            continue
        for sample in samples:
            seen[(sample[0], sample[2])] = row.line
        loaded.samples.extend(samples)
        loaded.rows += 1


def _row_samples(row: _register_parse.Row, settings: RegisterSettings, tz: dt.timezone,
                 seen: dict[tuple[str, tuple[str, ...]], int]) -> tuple[list[tuple[str, float, tuple[str, ...]]], str]:
    agency = row.cells.get(settings.agency_column, "")
    if not agency:
        return [], f"no agency code in column {settings.agency_column!r}"
    if not _AGENCY_RE.match(agency):
        return [], f"agency code {agency!r} is not a Decision 20/2020 code like 000.00.01.H49"
    samples = []
    for metric in settings.metrics:
        cell = row.cells.get(metric.column)
        if cell is None:
            continue  # a blank cell: nothing known, no sample
        try:
            value = _register_parse.parse_value(cell, metric.type, tz)
        except _register_parse.BadValue as err:
            return [], f"column {metric.column!r}: {err}"
        labels = [agency]
        for column in metric.labels.values():
            label = row.cells.get(column, "")
            if len(label) > 256:
                return [], f"column {column!r}: more than 256 characters"
            labels.append(label)
        key = (metric.metric_name, tuple(labels))
        if key in seen:
            return [], f"{metric.metric_name} for {agency} {'/'.join(labels[1:])} is already on line {seen[key]}"
        samples.append((metric.metric_name, value, tuple(labels)))
    return samples, ""


def _format(path: str, settings: RegisterSettings) -> str:
    if settings.format != "auto":
        return settings.format
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise ValueError(f"cannot tell the register format of {path!r} from its extension: "
                     "name it .csv, .yaml or .yml, or set format")
