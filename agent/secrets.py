"""Secrets given as {file: PATH} or {env: VARIABLE}: read at load time, never shown; imports no collector."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, GetCoreSchemaHandler, PlainSerializer, WithJsonSchema
from pydantic_core import CoreSchema, core_schema


class Secret:
    """A value read from a file or the environment; it never shows itself in repr, str or logs."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        """Validated by SecretValue's before-validator; the core schema only checks the type."""
        return core_schema.is_instance_schema(cls)

    def reveal(self) -> str:
        """The secret itself, for the one place that sends it."""
        return self._value

    @property
    def source(self) -> str:
        """Where it came from (`file:/path` or `env:NAME`), safe to show."""
        return self._source

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _load_secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if not isinstance(value, dict) or len(value) != 1 or not ({"file", "env"} & value.keys()):
        raise ValueError("a secret is given as {file: PATH} or {env: VARIABLE}, never inline")
    if "file" in value:
        path = str(value["file"])
        try:
            text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read secret file {path}: {getattr(err, 'strerror', None) or err}") from None
        if not text:
            raise ValueError(f"secret file {path} is empty")
        return Secret(text, f"file:{path}")
    name = str(value["env"])
    text = os.environ.get(name, "")
    if not text:
        raise ValueError(f"environment variable {name} is not set or empty")
    return Secret(text, f"env:{name}")


SecretValue = Annotated[
    Secret,
    BeforeValidator(_load_secret),
    PlainSerializer(lambda s: {"source": s.source}, return_type=dict),
    WithJsonSchema(
        {
            "type": "object",
            "oneOf": [
                {"properties": {"file": {"type": "string"}}, "required": ["file"], "additionalProperties": False},
                {"properties": {"env": {"type": "string"}}, "required": ["env"], "additionalProperties": False},
            ],
        }
    ),
]
