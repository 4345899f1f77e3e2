"""blackbox_exporter's query_response: an expect/send/STARTTLS script over an open stream (tcp and mail kinds)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema, model_validator

from agent.errors import Outcome
from collectors import _tls
from collectors.base import RESERVED_LABELS, MetricSpec, ProbeContext, Settings

MAX_LINE = 64 * 1024
"""Longest line an expect step reads (Go's bufio.Scanner limit, as blackbox); open streams with limit=MAX_LINE."""
MAX_READ = 1024 * 1024
"""Bytes a whole script may read; a server that streams lines forever fails instead of eating CPU to the deadline."""

METRICS = (
    MetricSpec("probe_failed_due_to_regex", "gauge", "Indicates if probe failed due to regex"),
    MetricSpec("probe_failed_due_to_bytes", "gauge", "Indicates if probe failed due to bytes"),
    MetricSpec("probe_expect_info", "gauge", "Explicit content matched", open_labels=True),
)

_LOGGED_LINES = 50
_LOGGED_CHARS = 200


def _compile(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError("a regular expression is a string")
    try:
        return re.compile(value)
    except re.error as err:
        raise ValueError(f"invalid regular expression {value!r}: {err}") from None


Regex = Annotated[
    re.Pattern[str],
    BeforeValidator(_compile),
    PlainSerializer(lambda pattern: pattern.pattern, return_type=str),
    WithJsonSchema({"type": "string", "format": "regex"}),
]
"""A regular expression, compiled when the config loads (Python syntax, close to Go's RE2 for usual patterns)."""


class ExpectLabel(Settings):
    """One label of probe_expect_info: its value may use ${1} / ${name} from the step's expect."""

    name: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
    value: str


class QueryStep(Settings):
    """One query_response entry, run in this order: expect a line (or bytes), send a line, upgrade to TLS."""

    expect: Regex | None = None
    expect_bytes: str = ""
    send: str = ""
    starttls: bool = False
    labels: tuple[ExpectLabel, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> QueryStep:
        if self.expect is not None and self.expect_bytes:
            raise ValueError("expect and expect_bytes are mutually exclusive")
        if self.labels and self.expect is None:
            raise ValueError("labels need an expect to take their values from")
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            raise ValueError("label names must be unique")
        if reserved := set(names) & RESERVED_LABELS:
            raise ValueError(f"label names {sorted(reserved)} are set by the agent itself")
        return self


def check_script(steps: tuple[QueryStep, ...], tls: bool) -> None:
    """Raises ValueError for a script that cannot work: STARTTLS twice, or on a connection that is TLS already."""
    upgrades = sum(step.starttls for step in steps)
    if upgrades and tls:
        raise ValueError("a starttls step needs a plain connection, but tls is true")
    if upgrades > 1:
        raise ValueError("only one step can use starttls")


def within(ctx: ProbeContext) -> asyncio.Timeout:
    """A timeout just before the run's deadline, so a step that hangs fails with its own message."""
    return asyncio.timeout_at(ctx.step_deadline())


async def run(ctx: ProbeContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
              steps: tuple[QueryStep, ...], tls_config: _tls.TlsConfig, server_name: str) -> bool:
    """Run the script on an open connection; False with the outcome set at the first step that fails.

    Records probe_failed_due_to_regex and probe_failed_due_to_bytes (0 unless an expectation was not met).
    """
    state = _State()
    try:
        for index, step in enumerate(steps):
            ctx.log("query_response step %d", index)
            if not await _run_step(ctx, reader, writer, step, state, tls_config, server_name):
                return False
        return True
    finally:
        ctx.sink.add("probe_failed_due_to_regex", state.regex_failed)
        ctx.sink.add("probe_failed_due_to_bytes", state.bytes_failed)


async def start_tls(ctx: ProbeContext, writer: asyncio.StreamWriter, config: _tls.TlsConfig,
                    server_name: str) -> bool:
    """Upgrade the connection to TLS, verified as `config` says, and record the certificate metrics."""
    hostname = config.server_name or server_name
    ctx.log("TLS handshake, server name %s", hostname)
    try:
        async with within(ctx):
            await writer.start_tls(_tls.client_context(config), server_hostname=hostname,
                                   ssl_handshake_timeout=ctx.remaining() + 1)
    except TimeoutError:
        return ctx.fail(Outcome.TIMEOUT, "TLS handshake with %s not finished within the timeout", hostname)
    except OSError as err:
        return ctx.fail(Outcome.TLS_FAILED, "TLS handshake with %s failed: %s", hostname, _reason(err))
    ssl_object = writer.get_extra_info("ssl_object")
    _tls.record(ctx, ssl_object)
    ctx.log("TLS established: %s", ssl_object.version() if ssl_object else "?")
    return True


def expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.Expand: $1, ${1}, $name and ${name} become the group's text ('' if absent); $$ is a dollar."""
    out: list[str] = []
    pos = 0
    while (dollar := template.find("$", pos)) >= 0:
        out.append(template[pos:dollar])
        if template.startswith("$", dollar + 1):
            out.append("$")
            pos = dollar + 2
            continue
        name, end = _reference(template, dollar + 1)
        if name is None:
            out.append("$")
            pos = dollar + 1
            continue
        out.append(_group(match, name))
        pos = end
    out.append(template[pos:])
    return "".join(out)


@dataclass(slots=True)
class _State:
    regex_failed: int = 0
    bytes_failed: int = 0
    read: int = 0


async def _run_step(ctx: ProbeContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, step: QueryStep,
                    state: _State, tls_config: _tls.TlsConfig, server_name: str) -> bool:
    send = step.send
    if step.expect is not None:
        match = await _expect_line(ctx, reader, step.expect, state)
        if match is None:
            return False
        send = expand(send, match)
        if step.labels:
            ctx.sink.add_labelled("probe_expect_info", 1, [(label.name, expand(label.value, match))
                                                           for label in step.labels])
    if step.expect_bytes and not await _expect_bytes(ctx, reader, step.expect_bytes.encode(), state):
        return False
    if send and not await _send(ctx, writer, send):
        return False
    if step.starttls:
        return await start_tls(ctx, writer, tls_config, server_name)
    return True


async def _expect_line(ctx: ProbeContext, reader: asyncio.StreamReader, pattern: re.Pattern[str],
                       state: _State) -> re.Match[str] | None:
    logged = 0
    while True:
        try:
            async with within(ctx):
                raw = await reader.readline()
        except TimeoutError:
            ctx.fail(Outcome.TIMEOUT, "no line matching %r within the timeout", pattern.pattern)
            return None
        except ValueError:
            ctx.fail(Outcome.PROTOCOL_ERROR, "a line longer than %d bytes while waiting for %r", MAX_LINE,
                     pattern.pattern)
            return None
        except OSError as err:
            ctx.fail(Outcome.CONNECTION_FAILED, "connection lost while waiting for %r: %s", pattern.pattern,
                     _reason(err))
            return None
        if not raw:
            state.regex_failed = 1
            ctx.fail(Outcome.MISMATCH, "the connection closed before a line matched %r", pattern.pattern)
            return None
        state.read += len(raw)
        line = _line_text(raw)
        if logged < _LOGGED_LINES:
            logged += 1
            ctx.log("read line %r", line[:_LOGGED_CHARS])
        match = pattern.search(line)
        if match is not None:
            ctx.log("line matched %r", pattern.pattern)
            state.regex_failed = 0
            return match
        if state.read > MAX_READ:
            ctx.fail(Outcome.PROTOCOL_ERROR, "read more than %d bytes without a line matching %r", MAX_READ,
                     pattern.pattern)
            return None


async def _expect_bytes(ctx: ProbeContext, reader: asyncio.StreamReader, want: bytes, state: _State) -> bool:
    try:
        async with within(ctx):
            got = await reader.readexactly(len(want))
    except TimeoutError:
        return ctx.fail(Outcome.TIMEOUT, "did not receive %d expected bytes within the timeout", len(want))
    except asyncio.IncompleteReadError as err:
        return ctx.fail(Outcome.MISMATCH, "the connection closed after %d of %d expected bytes", len(err.partial),
                        len(want))
    except OSError as err:
        return ctx.fail(Outcome.CONNECTION_FAILED, "connection lost while waiting for bytes: %s", _reason(err))
    state.read += len(got)
    if got != want:
        state.bytes_failed = 1
        return ctx.fail(Outcome.MISMATCH, "received bytes %r, expected %r", got, want)
    ctx.log("bytes matched %r", want)
    return True


async def _send(ctx: ProbeContext, writer: asyncio.StreamWriter, text: str) -> bool:
    ctx.log("sending line %r", text[:_LOGGED_CHARS])
    try:
        writer.write(text.encode() + b"\n")
        async with within(ctx):
            await writer.drain()
    except TimeoutError:
        return ctx.fail(Outcome.TIMEOUT, "could not send %r within the timeout", text[:_LOGGED_CHARS])
    except OSError as err:
        return ctx.fail(Outcome.CONNECTION_FAILED, "cannot send %r: %s", text[:_LOGGED_CHARS], _reason(err))
    return True


def _line_text(raw: bytes) -> str:
    # The line without "\n" and one "\r" before it, as Go's bufio.ScanLines gives it.
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    return raw.decode("utf-8", errors="replace")


def _reference(template: str, start: int) -> tuple[str | None, int]:
    brace = template.startswith("{", start)
    begin = start + 1 if brace else start
    end = begin
    while end < len(template) and (template[end].isalpha() or template[end].isdecimal() or template[end] == "_"):
        end += 1
    if end == begin:
        return None, start
    name = template[begin:end]
    if brace:
        if not template.startswith("}", end):
            return None, start
        end += 1
    return name, end


def _group(match: re.Match[str], name: str) -> str:
    index: int | None
    if name.isascii() and name.isdigit() and len(name) <= 9 and not (len(name) > 1 and name[0] == "0"):
        index = int(name)
        if index > match.re.groups:
            return ""
    else:
        index = match.re.groupindex.get(name)
        if index is None:
            return ""
    return match.group(index) or ""


def _reason(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)
