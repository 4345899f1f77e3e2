"""Log formats: logfmt and JSON lines with the record's key-value fields."""

from __future__ import annotations

import json
import logging

from agent.logs import JsonFormatter, LogfmtFormatter


def record(msg: str, **kv: object) -> logging.LogRecord:
    rec = logging.LogRecord("agent.store", logging.WARNING, __file__, 1, msg, None, None)
    rec.kv = kv
    return rec


def test_logfmt_quotes_only_what_needs_it() -> None:
    line = LogfmtFormatter().format(record("check state changed", check="portal", error='no "answer"\nat all'))
    assert line.startswith("ts=")
    assert ' level=warn caller=agent.store msg="check state changed" check=portal ' in line
    assert line.endswith('error="no \\"answer\\"\\nat all"')
    assert "\n" not in line


def test_json_lines_parse() -> None:
    data = json.loads(JsonFormatter().format(record("hello", target="Tam Xuân", n=3)))
    assert data["level"] == "warn" and data["msg"] == "hello" and data["target"] == "Tam Xuân" and data["n"] == 3
    assert data["ts"].endswith("Z")
