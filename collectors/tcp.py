"""TCP probe with blackbox_exporter's meaning: connect to host:port, optionally TLS, then a query_response script."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re

from pydantic import Field, field_validator, model_validator

from agent.errors import Outcome
from collectors import _dialogue, _resolve, _tls
from collectors.base import CollectorSpec, ProbeContext, Settings

METRICS = (*_resolve.METRICS, *_tls.METRICS, *_dialogue.METRICS)

_HOST_RE = re.compile(r"^[^\s/@?#\[\]:]+$")


class TcpSettings(Settings):
    """blackbox_exporter's tcp module: address family choice, source address, TLS and the dialogue script."""

    preferred_ip_protocol: _resolve.IpProtocol = "ip6"
    ip_protocol_fallback: bool = True
    source_ip_address: str | None = None
    query_response: tuple[_dialogue.QueryStep, ...] = ()
    tls: bool = False
    tls_config: _tls.TlsConfig = Field(default_factory=_tls.TlsConfig)

    @field_validator("source_ip_address")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        return check_ip(value)

    @model_validator(mode="after")
    def _script(self) -> TcpSettings:
        _dialogue.check_script(self.query_response, self.tls)
        return self


async def probe_tcp(ctx: ProbeContext, settings: TcpSettings) -> bool:
    """Connect to the target (TLS if set) and run the script; success when every step passed."""
    try:
        host, port = split_host_port(ctx.target)
    except ValueError as err:
        return ctx.fail(Outcome.ERROR, "%s", err)
    address = await _resolve.resolve(ctx, host, settings.preferred_ip_protocol, settings.ip_protocol_fallback)
    if address is None:
        return False
    local = (settings.source_ip_address, 0) if settings.source_ip_address else None
    ctx.log("connecting to %s port %d", address, port)
    try:
        async with _dialogue.within(ctx):
            reader, writer = await asyncio.open_connection(address, port, local_addr=local,
                                                           limit=_dialogue.MAX_LINE)
    except TimeoutError:
        return ctx.fail(Outcome.TIMEOUT, "connecting to %s port %d timed out", address, port)
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else str(err)
        return ctx.fail(Outcome.CONNECTION_FAILED, "cannot connect to %s port %d: %s", address, port, reason)
    ctx.log("connected")
    try:
        if settings.tls and not await _dialogue.start_tls(ctx, writer, settings.tls_config, host):
            return False
        return await _dialogue.run(ctx, reader, writer, settings.query_response, settings.tls_config, host)
    finally:
        # No graceful close: a TLS close_notify exchange could keep the socket for 30 s after a broken peer.
        writer.transport.abort()


def check_tcp_target(target: str, settings: TcpSettings) -> None:
    """The target must be host:port or [IPv6]:port with a port from 1 to 65535."""
    split_host_port(target)


def split_host_port(target: str, default_port: int | None = None) -> tuple[str, int]:
    """(host, port) of `host:port`, `[v6]:port`, or with a default port also `host`, `[v6]` and bare `v6`."""
    port_text: str | None
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or not _is_ipv6(host) or (rest and not rest.startswith(":")):
            raise ValueError(f"target {target!r} is not [IPv6 address]:port")
        port_text = rest[1:] if rest else None
    elif target.count(":") == 1:
        host, _, port_text = target.partition(":")
    elif ":" not in target or (default_port is not None and _is_ipv6(target)):
        host, port_text = target, None
    else:
        raise ValueError(f"target {target!r} is not host:port (write an IPv6 address as [2001:db8::1]:port)")
    if not host.startswith("[") and ":" not in host and not _HOST_RE.match(host):
        raise ValueError(f"target {target!r} has no valid host name before the port")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"target {target!r} has no port: write host:port")
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"target {target!r} has an invalid port {port_text!r}: use a number from 1 to 65535")
    return host, int(port_text)


def check_ip(value: str | None) -> str | None:
    """An IP address as text (normalized), or None; ValueError for anything else."""
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


SPEC = CollectorSpec(
    kind="tcp",
    settings=TcpSettings,
    probe=probe_tcp,
    metrics=METRICS,
    builtin_modules={
        "tcp_connect": {"kind": "tcp", "timeout": "10s"},
        "smtp_starttls": {"kind": "tcp", "timeout": "5s", "tcp": {"query_response": [
            {"expect": "^220 ([^ ]+) ESMTP (.+)$"},
            {"send": "EHLO prober\r"},
            {"expect": "^250-STARTTLS"},
            {"send": "STARTTLS\r"},
            {"expect": "^220"},
            {"starttls": True},
            {"send": "EHLO prober\r"},
            {"expect": "^250-AUTH"},
            {"send": "QUIT\r"},
        ]}},
        "imap_starttls": {"kind": "tcp", "timeout": "5s", "tcp": {"query_response": [
            {"expect": "OK.*STARTTLS"},
            {"send": ". STARTTLS"},
            {"expect": "OK"},
            {"starttls": True},
            {"send": ". capability"},
            {"expect": "CAPABILITY IMAP4rev1"},
        ]}},
        # blackbox ships "^+OK", which Go reads as (^)+OK and which never matches a POP3 greeting; this is the intent.
        "pop3s_banner": {"kind": "tcp", "timeout": "10s", "tcp": {
            "query_response": [{"expect": r"^\+OK"}], "tls": True}},
        "ssh_banner": {"kind": "tcp", "timeout": "10s", "tcp": {"query_response": [
            {"expect": "^SSH-2.0-"},
            {"send": "SSH-2.0-blackbox-ssh-check"},
        ]}},
    },
    check_target=check_tcp_target,
)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False
