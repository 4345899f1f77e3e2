"""The SMTP, IMAP and POP3 sessions of the mail kind, as named steps; also used by the round trip."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agent.errors import Outcome
from collectors import _mail_smtp, _tls
from collectors._mail_imap import ImapClient
from collectors._mail_pop3 import Pop3Client
from collectors._mail_steps import StepFailed, Steps
from collectors._mail_stream import LineStream, connect
from collectors.base import ProbeContext

if TYPE_CHECKING:
    import aiosmtplib

    from collectors.mail import MailAuth, MailSettings, TlsMode

_QUIT_SECONDS = 1.0


async def probe_smtp(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str,
                     port: int) -> None:
    """Greeting, EHLO, STARTTLS (or TLS from the start), AUTH when configured, QUIT."""
    smtp = await open_smtp(ctx, steps, settings, host, address, port)
    try:
        await _mail_smtp.quit_quietly(smtp, min(_QUIT_SECONDS, ctx.remaining()))
    finally:
        _mail_smtp.abort(smtp)


async def probe_imap(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str,
                     port: int) -> None:
    """Greeting, STARTTLS (or TLS from the start), LOGIN and SELECT when auth is configured, LOGOUT."""
    server_name = settings.tls_config.server_name or host
    stream, client = await open_imap(ctx, steps, settings.tls, settings.tls_config, settings.auth, server_name,
                                     address, port, settings, record_tls=True)
    try:
        if settings.auth is not None:
            async with steps.step("imap_select"):
                count = await client.select(settings.mailbox)
            ctx.log("mailbox %s holds %d messages", settings.mailbox, count)
        await quietly(ctx, client.logout())
    finally:
        stream.abort()


async def probe_pop3(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str,
                     port: int) -> None:
    """Greeting, STLS (or TLS from the start), USER/PASS and STAT when auth is configured, QUIT."""
    server_name = settings.tls_config.server_name or host
    context = _tls.client_context(settings.tls_config)
    stream = await open_stream(ctx, steps, "pop3", settings.tls, context, server_name, address, port,
                               settings.source_ip_address, record_tls=True)
    try:
        client = Pop3Client(stream, ctx.log)
        async with steps.step("pop3_greeting"):
            greeting = await client.greeting()
            _check_greeting(ctx, settings, greeting)
        if settings.tls == "starttls":
            async with steps.step("pop3_starttls"):
                await client.capa()
                _tls.record(ctx, await client.stls(context, server_name, ctx.remaining()))
        if settings.auth is not None:
            async with steps.step("pop3_login"):
                await client.login(settings.auth.username, settings.auth.password.reveal())
            async with steps.step("pop3_stat"):
                messages, size = await client.stat()
            ctx.log("maildrop holds %d messages, %d bytes", messages, size)
        await quietly(ctx, client.quit())
    finally:
        stream.abort()


PROBES: dict[str, Callable[[ProbeContext, Steps, MailSettings, str, str, int], Awaitable[None]]] = {
    "smtp": probe_smtp,
    "imap": probe_imap,
    "pop3": probe_pop3,
}


async def open_smtp(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str,
                    port: int) -> aiosmtplib.SMTP:
    """An SMTP session through greeting, EHLO, TLS and AUTH (if configured); the caller aborts it when done."""
    server_name = settings.tls_config.server_name or host
    context = _tls.client_context(settings.tls_config)
    async with steps.step("smtp_connect"):
        sock = await connect(address, port, settings.source_ip_address)
    smtp = _mail_smtp.session(sock, server_name, settings.tls == "tls", context, settings.ehlo)
    try:
        async with steps.step("smtp_greeting"):
            greeting = await _mail_smtp.greeting(smtp, ctx.remaining())
            ctx.log("S: %s", greeting[:200])
            _check_greeting(ctx, settings, greeting)
        if settings.tls == "tls":
            _tls.record(ctx, smtp.get_transport_info("ssl_object"))
        async with steps.step("smtp_ehlo"):
            await _mail_smtp.ehlo(smtp, ctx.remaining())
        if settings.tls == "starttls":
            async with steps.step("smtp_starttls"):
                ssl_object = await _mail_smtp.starttls(smtp, server_name, context, ctx.remaining())
            _tls.record(ctx, ssl_object)
        if settings.auth is not None:
            async with steps.step("smtp_auth"):
                await _mail_smtp.authenticate(smtp, settings.auth.username, settings.auth.password.reveal(),
                                              settings.auth.mechanism, ctx.remaining())
    except BaseException:
        _mail_smtp.abort(smtp)
        raise
    return smtp


async def open_imap(ctx: ProbeContext, steps: Steps, tls: TlsMode, tls_config: _tls.TlsConfig,
                    auth: MailAuth | None, server_name: str, address: str, port: int, settings: MailSettings,
                    record_tls: bool) -> tuple[LineStream, ImapClient]:
    """An IMAP session through greeting, TLS and LOGIN (if `auth`); the caller aborts the stream when done.

    `record_tls` also decides whether expect_greeting applies: the round trip records both only for the submission.
    """
    context = _tls.client_context(tls_config)
    stream = await open_stream(ctx, steps, "imap", tls, context, server_name, address, port,
                               settings.source_ip_address, record_tls)
    try:
        client = ImapClient(stream, ctx.log)
        async with steps.step("imap_greeting"):
            greeting = await client.greeting()
            if record_tls:
                _check_greeting(ctx, settings, greeting)
        if tls == "starttls":
            async with steps.step("imap_starttls"):
                if not client.capabilities:
                    await client.capability()
                ssl_object = await client.starttls(context, server_name, ctx.remaining())
            if record_tls:
                _tls.record(ctx, ssl_object)
        if auth is not None:
            async with steps.step("imap_login"):
                await client.login(auth.username, auth.password.reveal())
    except BaseException:
        stream.abort()
        raise
    return stream, client


async def open_stream(ctx: ProbeContext, steps: Steps, prefix: str, tls: TlsMode, context: ssl.SSLContext,
                      server_name: str, address: str, port: int, source: str | None,
                      record_tls: bool) -> LineStream:
    """A connected line stream, with the TLS handshake done when `tls` is `tls` (step `<prefix>_tls`)."""
    async with steps.step(f"{prefix}_connect"):
        stream = await LineStream.open(await connect(address, port, source))
    if tls == "tls":
        try:
            async with steps.step(f"{prefix}_tls"):
                ssl_object = await stream.start_tls(context, server_name, ctx.remaining())
        except BaseException:
            stream.abort()
            raise
        if record_tls:
            _tls.record(ctx, ssl_object)
    return stream


async def quietly(ctx: ProbeContext, goodbye: Awaitable[None]) -> None:
    """LOGOUT or QUIT within a second; the result does not depend on it."""
    try:
        async with asyncio.timeout(min(_QUIT_SECONDS, ctx.remaining())):
            await goodbye
    except (StepFailed, OSError, TimeoutError) as err:
        ctx.log("no clean goodbye: %s", err)


def _check_greeting(ctx: ProbeContext, settings: MailSettings, greeting: str) -> None:
    """Check expect_greeting (when set) and record probe_failed_due_to_regex."""
    pattern = settings.expect_greeting
    failed = pattern is not None and pattern.search(greeting) is None
    ctx.sink.add("probe_failed_due_to_regex", int(failed))
    if failed and pattern is not None:
        raise StepFailed(Outcome.MISMATCH, f"greeting {greeting[:200]!r} does not match {pattern.pattern!r}")
