"""Reading a staff-kept register (CSV or YAML) into rows of text cells, each with the line it starts on."""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from agent.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Row:
    """One register row: its first line in the file and its cells by column name (blank cells left out)."""

    line: int
    cells: dict[str, str]


class BadValue(ValueError):
    """A cell that cannot be read as the metric's type; the message says what was expected."""


def read_rows(text: str, fmt: str, delimiter: str) -> tuple[list[str] | None, Iterator[Row | tuple[int, str]]]:
    """(CSV header or None for YAML, rows); a row that is not a mapping comes as (line, reason)."""
    if fmt == "csv":
        return _csv_rows(text, delimiter)
    return None, _yaml_rows(text)


def parse_value(text: str, value_type: str, utc_offset: dt.timezone) -> float:
    """A cell as a sample value: number, ratio (0.95 or 95%), bool (1/0, true/false, có/không, x) or date."""
    text = text.strip()
    if value_type == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return 1.0
        if lowered in _FALSE:
            return 0.0
        raise BadValue(f"{text!r} is not yes/no (1/0, true/false, có/không, x)")
    if value_type == "date":
        return _date(text, utc_offset)
    percent = value_type == "ratio" and text.endswith("%")
    number = _number(text[:-1] if percent else text)
    if percent:
        number /= 100
    if value_type == "ratio" and not 0 <= number <= 1:
        raise BadValue(f"ratio {text!r} is outside 0-1 (write 0.95 or 95%)")
    return number


_TRUE = frozenset({"1", "true", "yes", "y", "x", "có", "co", "đạt", "dat"})
_FALSE = frozenset({"0", "false", "no", "n", "không", "khong", "không đạt", "khong dat"})
_NUMBER_RE = re.compile(r"^[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?$")
_ISO_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_VN_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _number(text: str) -> float:
    compact = text.replace(" ", "").replace("\u00a0", "")
    if "," in compact and "." not in compact and compact.count(",") == 1:
        compact = compact.replace(",", ".")  # Vietnamese decimal comma: 95,5
    if not _NUMBER_RE.match(compact) or "," in compact:
        raise BadValue(f"{text!r} is not a number")
    value = float(compact)
    if not math.isfinite(value):
        raise BadValue(f"{text!r} is not a finite number")
    return value


def _date(text: str, utc_offset: dt.timezone) -> float:
    iso = _ISO_DATE_RE.match(text)
    vn = _VN_DATE_RE.match(text)
    try:
        if iso:
            day = dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
        elif vn:
            day = dt.date(int(vn[3]), int(vn[2]), int(vn[1]))
        else:
            raise BadValue(f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")
    except ValueError as err:
        if isinstance(err, BadValue):
            raise
        raise BadValue(f"{text!r} is not a valid date ({err})") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=utc_offset).timestamp()


def _csv_rows(text: str, delimiter: str) -> tuple[list[str], Iterator[Row | tuple[int, str]]]:
    lines = text.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ProtocolError("the file is empty: a CSV register needs a header line")
    if delimiter == "auto":
        header_line = lines[first]
        delimiter = max((";", "\t", ","), key=lambda d: (header_line.count(d), d == ","))
    reader = csv.reader(io.StringIO("".join(lines[first:])), delimiter=delimiter, strict=True)
    try:
        header = [cell.strip() for cell in next(reader)]
    except csv.Error as err:
        raise ProtocolError(f"line {first + 1}: the header is not valid CSV ({err})") from None
    duplicates = sorted({h for h in header if h and header.count(h) > 1})
    if duplicates:
        raise ProtocolError(f"line {first + 1}: column {duplicates[0]!r} appears twice in the header")
    return header, _csv_body(reader, header, first)


def _csv_body(reader: Any, header: list[str], offset: int) -> Iterator[Row | tuple[int, str]]:
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield (start + offset, f"not valid CSV ({err})")
            return  # the reader cannot resync after a broken quote
        line = start + offset
        start = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            yield (line, f"{len(cells)} cells but the header has {len(header)} columns")
            continue
        yield Row(line, {name: cell.strip() for name, cell in zip(header, cells, strict=False)
                         if name and cell.strip()})


def _yaml_rows(text: str) -> Iterator[Row | tuple[int, str]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 0
        raise ProtocolError(f"line {line}: invalid YAML ({err.problem})") from None
    except yaml.YAMLError as err:
        raise ProtocolError(f"invalid YAML ({err})") from None
    if isinstance(root, yaml.MappingNode):
        rows = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "rows"), None)
        root = rows
    if not isinstance(root, yaml.SequenceNode):
        raise ProtocolError("a YAML register is a list of rows (mappings), or a mapping with a `rows:` list")
    return _yaml_items(root)


def _yaml_items(root: yaml.SequenceNode) -> Iterator[Row | tuple[int, str]]:
    for item in root.value:
        line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode):
            yield (line, "a row must be a mapping of column: value")
            continue
        cells: dict[str, str] = {}
        reason = ""
        for key, value in item.value:
            if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
                reason = "every column of a row must be a plain value"
                break
            if key.value in cells:
                reason = f"column {key.value!r} appears twice"
                break
            if value.tag != "tag:yaml.org,2002:null" and value.value.strip() and value.value != "~":
                cells[key.value.strip()] = value.value.strip()
        if reason:
            yield (line, reason)
        else:
            yield Row(line, cells)
