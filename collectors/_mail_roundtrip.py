"""The mail round trip: submit a canary (STARTTLS/TLS + AUTH), find it over IMAP, delete it, clean up leftovers.

Order: log in to IMAP first (so a broken mailbox fails before anything is sent), delete canaries older than
`cleanup_after` left by earlier runs or a crash, submit the canary, poll the mailbox (NOOP + UID SEARCH every
`poll_interval`) until it shows, delete it. Delivery time runs from the server accepting the canary (the answer to
DATA) to the poll that found it (polls start 20 ms apart and back off to `poll_interval`).

A canary's Subject is `egov-canary <token>`, the token being `<unix time>.<random hex>`; its Message-ID carries
the same token. Leftovers are found by the Subject prefix and aged by the server's INTERNALDATE, so a clock
difference between agent and mail server does not delete young canaries early.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from typing import TYPE_CHECKING

from agent.errors import Outcome
from collectors import _mail_smtp, _resolve
from collectors._mail_imap import ImapClient
from collectors._mail_sessions import open_imap, open_smtp, quietly
from collectors._mail_steps import StepFailed, Steps
from collectors.base import ProbeContext
from collectors.tcp import split_host_port

if TYPE_CHECKING:
    from collectors.mail import MailSettings

SUBJECT_PREFIX = "egov-canary"
_FIRST_POLL = 0.02
_CLEANED: dict[tuple[str, str], int] = {}
"""Leftover canaries deleted per (check, target) since the agent started: the counter's value."""


async def run(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str, port: int) -> bool:
    """One round trip; records egov_mail_roundtrip_* and returns success (StepFailed for the failed step)."""
    key = (ctx.check, ctx.target)
    _CLEANED.setdefault(key, 0)
    success = False
    try:
        success = await _round_trip(ctx, steps, settings, host, address, port)
        return success
    finally:
        ctx.sink.add("egov_mail_roundtrip_success", int(success))
        ctx.sink.add("egov_mail_roundtrip_canaries_cleaned_total", _CLEANED[key])


def new_token(now: float | None = None) -> str:
    """A unique canary token: `<unix time>.<16 random hex digits>`."""
    return f"{int(now if now is not None else time.time())}.{secrets.token_hex(8)}"


def canary(token: str, sender: str, recipient: str) -> EmailMessage:
    """The canary message for a token."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"{SUBJECT_PREFIX} {token}"
    message["Message-ID"] = f"<{SUBJECT_PREFIX}.{token}@egov-agent.invalid>"
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"Mail round-trip test of egov-agent ({token}). It is deleted automatically.\n")
    return message


async def _round_trip(ctx: ProbeContext, steps: Steps, settings: MailSettings, host: str, address: str,
                      port: int) -> bool:
    trip = settings.roundtrip
    auth = settings.auth
    assert trip is not None and auth is not None  # the settings model guarantees both
    imap_auth = trip.imap_auth or auth
    imap_host, imap_port = split_host_port(trip.imap_server)
    imap_address = await _resolve.lookup(imap_host, settings.preferred_ip_protocol, settings.ip_protocol_fallback)
    if imap_address is None:
        steps.failed = "imap_connect"
        raise StepFailed(Outcome.RESOLVE_FAILED, f"imap_connect: cannot resolve {imap_host}")
    server_name = settings.tls_config.server_name or imap_host
    stream, client = await open_imap(ctx, steps, trip.imap_tls, settings.tls_config, imap_auth, server_name,
                                     imap_address, imap_port, settings, record_tls=False)
    try:
        async with steps.step("imap_select"):
            await client.select(trip.mailbox)
        async with steps.step("cleanup"):
            await _clean_leftovers(ctx, client, trip.cleanup_after, trip.max_cleanup)
        token = new_token()
        sender = trip.sender or auth.username
        recipient = trip.recipient or imap_auth.username
        smtp = await open_smtp(ctx, steps, settings, host, address, port)
        try:
            async with steps.step("smtp_send"):
                await _mail_smtp.send(smtp, canary(token, sender, recipient), sender, recipient, ctx.remaining())
            loop = asyncio.get_running_loop()
            accepted = loop.time()
            ctx.log("canary %s accepted for %s", token, recipient)
            await _mail_smtp.quit_quietly(smtp, min(0.5, ctx.remaining()))
        finally:
            _mail_smtp.abort(smtp)
        async with steps.step("delivery"):
            uids = await _poll(client, token, trip.poll_interval)
        ctx.sink.add("egov_mail_roundtrip_delivery_seconds", loop.time() - accepted)
        async with steps.step("delete"):
            await client.uid_delete(uids)
        await quietly(ctx, client.logout())
        return True
    finally:
        stream.abort()


async def _poll(client: ImapClient, token: str, interval: float) -> list[int]:
    """UIDs of the canary with this token, polling until it shows (the step's deadline bounds the loop).

    The pause between polls starts at 20 ms and doubles up to `interval`: local delivery usually takes tens of
    milliseconds, so the delivery time stays precise without polling a slow server many times a second.
    """
    pause = _FIRST_POLL
    while True:
        uids = await client.uid_search("SUBJECT", f'"{SUBJECT_PREFIX} {token}"')
        if uids:
            return uids
        await asyncio.sleep(min(pause, interval))
        pause *= 2
        await client.noop()


async def _clean_leftovers(ctx: ProbeContext, client: ImapClient, older_than: float, limit: int) -> None:
    uids = await client.uid_search("SUBJECT", f'"{SUBJECT_PREFIX} "')
    if not uids:
        return
    uids = sorted(uids)[:limit]  # the oldest first; the rest wait for the next runs
    dates = await client.uid_internal_dates(uids)
    cutoff = time.time() - older_than
    old = []
    for uid, text in dates.items():
        try:
            arrived = parsedate_to_datetime(_rfc2822(text)).timestamp()
        except (TypeError, ValueError):
            ctx.log("canary UID %d has an unreadable INTERNALDATE %r; left alone", uid, text)
            continue
        if arrived < cutoff:
            old.append(uid)
    ctx.log("%d canaries in the mailbox, %d older than %gs", len(uids), len(old), older_than)
    if old:
        await client.uid_delete(old)
        _CLEANED[(ctx.check, ctx.target)] += len(old)


def _rfc2822(internal_date: str) -> str:
    """IMAP's `27-Nov-2026 16:01:53 +0000` as RFC 2822's `27 Nov 2026 16:01:53 +0000`."""
    return internal_date.strip().replace("-", " ", 2)
