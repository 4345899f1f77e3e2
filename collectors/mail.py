"""Mail probes (kind `mail`): SMTP, IMAP and POP3 sessions with TLS and AUTH, and the submit-to-IMAP round trip.

Credentials are only ever sent over TLS: the settings refuse `auth` with `tls: none`, and a server that does not
offer STARTTLS fails the run (outcome tls_failed) before any credential is sent.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from agent.durations import Duration
from agent.errors import Outcome
from agent.secrets import SecretValue
from collectors import _mail_steps, _resolve, _tls
from collectors._dialogue import Regex
from collectors._mail_steps import StepFailed, Steps
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings
from collectors.tcp import check_ip, split_host_port

TlsMode = Literal["starttls", "tls", "none"]
"""starttls: plain connection upgraded with STARTTLS/STLS (required); tls: TLS from the first byte (465, 993, 995)."""

ROUNDTRIP_METRICS = (
    MetricSpec("egov_mail_roundtrip_success", "gauge",
               "1 if the canary was submitted, found over IMAP and deleted within the timeout, else 0."),
    MetricSpec("egov_mail_roundtrip_delivery_seconds", "gauge",
               "Seconds from the server accepting the canary (end of DATA) to finding it over IMAP."),
    MetricSpec("egov_mail_roundtrip_canaries_cleaned_total", "counter",
               "Leftover canaries of earlier runs deleted, since the agent started."),
)
METRICS = (
    MetricSpec("probe_failed_due_to_regex", "gauge", "Indicates if probe failed due to regex"),
    *_mail_steps.METRICS,
    *ROUNDTRIP_METRICS,
    *_resolve.METRICS,
    *_tls.METRICS,
)

_Address = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^\s<>@\"]+@[^\s<>@\"]+$")]
_Text = Annotated[str, Field(min_length=1, max_length=320, pattern=r"^[^\r\n\x00]+$")]


class MailAuth(Settings):
    """Credentials for SMTP AUTH, IMAP LOGIN or POP3 USER/PASS; the password is a secret ({file:} or {env:})."""

    username: _Text
    password: SecretValue
    mechanism: Literal["PLAIN", "LOGIN"] = "PLAIN"
    """SMTP only: the one AUTH mechanism tried (a failed attempt is never retried with another)."""


class Roundtrip(Settings):
    """Where the canary sent through the target (submission) is looked for, and how leftovers are cleaned."""

    imap_server: str
    """host:port of the IMAP server holding the probe mailbox."""
    imap_tls: TlsMode = "starttls"
    imap_auth: MailAuth | None = None
    """Login of the probe mailbox; default: the module's `auth`."""
    sender: _Address | None = None
    """Envelope and From address; default: the module's auth username."""
    recipient: _Address | None = None
    """The probe mailbox's address; default: the IMAP username."""
    mailbox: _Text = "INBOX"
    poll_interval: Duration = 0.25
    cleanup_after: Duration = 600.0
    """Canaries older than this (by the server's arrival time) are deleted by every run, leftovers of crashes too."""
    max_cleanup: Annotated[int, Field(ge=1, le=10_000)] = 500

    @field_validator("imap_server")
    @classmethod
    def _server(cls, value: str) -> str:
        split_host_port(value)
        return value

    @model_validator(mode="after")
    def _tls(self) -> Roundtrip:
        if self.imap_tls == "none":
            raise ValueError("imap_tls: none would send the probe mailbox's password in clear text; use starttls "
                             "or tls")
        return self


class MailSettings(Settings):
    """One SMTP, IMAP or POP3 session (greeting, TLS, optional login), or the submission-to-IMAP round trip."""

    protocol: Literal["smtp", "imap", "pop3", "roundtrip"]
    tls: TlsMode = "starttls"
    tls_config: _tls.TlsConfig = Field(default_factory=_tls.TlsConfig)
    auth: MailAuth | None = None
    ehlo: Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-\[\]:]{1,255}$")] = "egov-agent"
    """The name sent with EHLO (set the agent host's FQDN where the server checks it)."""
    expect_greeting: Regex | None = None
    """A regular expression the greeting line must match (probe_failed_due_to_regex is 1 when it does not)."""
    mailbox: _Text = "INBOX"
    """IMAP: the mailbox selected after LOGIN."""
    preferred_ip_protocol: _resolve.IpProtocol = "ip6"
    ip_protocol_fallback: bool = True
    source_ip_address: str | None = None
    roundtrip: Roundtrip | None = None

    @field_validator("source_ip_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return check_ip(value)

    @model_validator(mode="after")
    def _consistent(self) -> MailSettings:
        if self.auth is not None and self.tls == "none":
            raise ValueError("auth with tls: none would send the password in clear text; use tls: starttls "
                             "(the server must offer STARTTLS) or tls: tls")
        if self.protocol == "roundtrip":
            if self.roundtrip is None:
                raise ValueError("protocol roundtrip needs a roundtrip block (imap_server, ...)")
            if self.auth is None:
                raise ValueError("protocol roundtrip needs auth: the canary is submitted with SMTP AUTH")
            if self.tls == "none":
                raise ValueError("protocol roundtrip needs tls: starttls or tls for the submission")
        elif self.roundtrip is not None:
            raise ValueError(f"roundtrip settings apply to protocol roundtrip, not {self.protocol}")
        if self.auth is not None and self.auth.mechanism != "PLAIN" and self.protocol in ("imap", "pop3"):
            raise ValueError(f"auth.mechanism applies to SMTP only; {self.protocol} uses its own login")
        return self


async def probe_mail(ctx: ProbeContext, settings: MailSettings) -> bool:
    """Run the session the settings describe against the target host:port; success when every step passed."""
    from collectors import _mail_roundtrip, _mail_sessions

    try:
        host, port = split_host_port(ctx.target)
    except ValueError as err:
        return ctx.fail(Outcome.ERROR, "%s", err)
    address = await _resolve.resolve(ctx, host, settings.preferred_ip_protocol, settings.ip_protocol_fallback)
    if address is None:
        if settings.protocol == "roundtrip":
            ctx.sink.add("egov_mail_roundtrip_success", 0)
        return False
    steps = Steps(ctx)
    try:
        if settings.protocol == "roundtrip":
            return await _mail_roundtrip.run(ctx, steps, settings, host, address, port)
        await _mail_sessions.PROBES[settings.protocol](ctx, steps, settings, host, address, port)
        return True
    except StepFailed as err:
        return ctx.fail(err.outcome, "%s", err)
    finally:
        steps.record()


def check_mail_target(target: str, settings: MailSettings) -> None:
    """The target is host:port (the SMTP server for smtp and roundtrip, else the IMAP or POP3 server)."""
    split_host_port(target)


def check_mail_module(settings: MailSettings, timeout: float) -> None:
    """A round trip must leave time to poll: its poll interval must be well under the module's timeout."""
    if settings.roundtrip is not None and settings.roundtrip.poll_interval * 4 > timeout:
        raise ValueError(f"roundtrip.poll_interval must be at most a quarter of the module's timeout ({timeout:g}s)")


def mail_warnings(settings: MailSettings) -> list[str]:
    """Allowed but weak: a password sent to a server whose certificate is not verified."""
    found = []
    if settings.auth is not None and settings.tls_config.insecure_skip_verify:
        found.append("mail: auth with tls_config.insecure_skip_verify sends the password to a server whose "
                     "certificate is not checked")
    return found


SPEC = CollectorSpec(
    kind="mail",
    settings=MailSettings,
    probe=probe_mail,
    metrics=METRICS,
    builtin_modules={
        "smtps": {"kind": "mail", "timeout": "10s", "mail": {"protocol": "smtp", "tls": "tls"}},
        "imaps": {"kind": "mail", "timeout": "10s", "mail": {"protocol": "imap", "tls": "tls"}},
        "pop3_starttls": {"kind": "mail", "timeout": "10s", "mail": {"protocol": "pop3"}},
        "pop3s": {"kind": "mail", "timeout": "10s", "mail": {"protocol": "pop3", "tls": "tls"}},
    },
    check_target=check_mail_target,
    check_module=check_mail_module,
    warnings=mail_warnings,
)
