"""The `remote_write:` entries of the agent config: destination, auth, TLS, queue bounds and retry timing."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, model_validator

from agent.config import Duration, SecretValue
from collectors._tls import TlsConfig

RESERVED_HEADERS = frozenset(
    {"content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent", "authorization",
     "content-length", "host"}
)
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def parse_size(value: object) -> int:
    """`512MiB`, `2GB`, `65536` to bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"invalid size {value!r}: use a number with a unit (B, KiB, MiB, GiB, KB, MB, GB), "
                         "e.g. 512MiB")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_size(size: int) -> str:
    """Bytes back to the largest binary unit that divides them."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str),
    WithJsonSchema({"type": ["string", "integer"], "examples": ["512MiB", "2GiB"]}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class BasicAuth(_Model):
    """HTTP basic auth; the password comes from a file or the environment."""

    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: SecretValue


class QueueConfig(_Model):
    """The disk queue and send/retry timing of one destination (RELIABILITY.md section 7 defaults)."""

    max_bytes: Annotated[ByteSize, Field(ge=64 * 1024)] = 512 * 2**20
    max_age: Duration = 7 * 86400.0
    memory_bytes: Annotated[ByteSize, Field(ge=64 * 1024)] = 16 * 2**20
    """In-memory fallback while the disk refuses writes (full, read-only, I/O error)."""
    dead_letter_bytes: Annotated[ByteSize, Field(ge=0)] = 16 * 2**20
    max_samples_per_send: Annotated[int, Field(ge=1, le=100_000)] = 2000
    max_bytes_per_send: Annotated[ByteSize, Field(ge=4096)] = 4 * 2**20
    batch_send_deadline: Duration = 5.0
    min_backoff: Duration = 1.0
    max_backoff: Duration = 60.0
    retry_after_max: Duration = 300.0
    auth_retry_interval: Annotated[Duration, Field(ge=300.0)] = 300.0
    """How long a destination that answered 401/403 waits before trying again; the data is kept meanwhile."""
    one_sample_per_series: bool = False
    """Never put two samples of a series in one request (for receivers without an out-of-order window)."""

    @model_validator(mode="after")
    def _consistent(self) -> QueueConfig:
        if self.min_backoff > self.max_backoff:
            raise ValueError("min_backoff is longer than max_backoff")
        return self


class RemoteWriteConfig(_Model):
    """One remote-write destination."""

    url: Annotated[str, Field(max_length=2048)]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)] | None = None
    """Names the queue directory and the `destination` label of the self-metrics; default: the URL's host:port."""
    remote_timeout: Duration = 30.0
    headers: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")], str] = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    bearer_token: SecretValue | None = None
    tls_config: TlsConfig | None = None
    queue: QueueConfig = Field(default_factory=QueueConfig)

    @model_validator(mode="after")
    def _valid(self) -> RemoteWriteConfig:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, not {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials; use basic_auth or bearer_token")
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("basic_auth and bearer_token exclude each other")
        reserved = sorted(h for h in self.headers if h.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValueError(f"headers {', '.join(reserved)} are set by the agent and cannot be configured")
        if self.tls_config is not None and parts.scheme != "https":
            raise ValueError("tls_config needs an https:// url")
        return self

    @property
    def destination(self) -> str:
        """The configured name, or host:port of the URL."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def safe_url(self) -> str:
        """The URL without its query string (which may carry a token), for logs."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
