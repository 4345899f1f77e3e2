"""Log setup: logfmt or JSON lines on stderr, with key-value fields passed as `extra={"kv": {...}}`."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
LogFormat = Literal["logfmt", "json"]


def setup_logging(level: str = "info", fmt: LogFormat = "logfmt") -> None:
    """Send every log record to stderr in the chosen format at the chosen level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    # aiohttp logs every request at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info caller=agent.store msg="..." key=value` lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a logfmt line."""
        pairs = [
            ("ts", _timestamp(record)),
            ("level", _level(record)),
            ("caller", record.name),
            ("msg", record.getMessage()),
            *_fields(record).items(),
        ]
        if record.exc_info:
            pairs.append(("err", self.formatException(record.exc_info)))
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ts, level, caller, msg and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": _level(record),
            "caller": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            data["err"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "kv", None)
    return fields if isinstance(fields, dict) else {}


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)
