"""Prometheus-style durations (`30s`, `5m`, `1h30m`, `200ms`) for config models; imports no collector."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_RE = re.compile(r"^((\d+(\.\d+)?)(ms|s|m|h|d|w|y))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(value: object) -> float:
    """Prometheus-style duration (`30s`, `5m`, `1h30m`, `200ms`) to seconds."""
    if isinstance(value, bool) or not isinstance(value, str) or not _DURATION_RE.match(value.strip()):
        raise ValueError(f"invalid duration {value!r}: use a number with a unit (ms, s, m, h, d, w, y), e.g. 30s")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART_RE.findall(value))
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds back to the shortest duration string that parses to the same value."""
    if seconds < 1 or seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{int(seconds // _UNIT_SECONDS[unit])}{unit}"
    return f"{int(seconds)}s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _DURATION_RE.pattern, "examples": ["30s", "5m"]}),
]
