"""Name resolution with blackbox_exporter's IP-family preference and fallback, and its metrics."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Literal

from agent.errors import Outcome
from collectors.base import MetricSpec, ProbeContext

IpProtocol = Literal["ip4", "ip6"]

METRICS = (
    MetricSpec("probe_dns_lookup_time_seconds", "gauge", "Returns the time taken for probe dns lookup in seconds"),
    MetricSpec("probe_ip_protocol", "gauge", "Specifies whether probe ip protocol is IP4 or IP6"),
    MetricSpec("probe_ip_addr_hash", "gauge", "Specifies the hash of IP address. It's useful to detect if the IP "
               "address changes."),
)

_FAMILIES = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}


async def resolve(ctx: ProbeContext, host: str, preferred: IpProtocol = "ip6", fallback: bool = True) -> str | None:
    """The address to probe for `host`: an IP literal as is, else the first of the preferred family.

    Records probe_dns_lookup_time_seconds, probe_ip_protocol and probe_ip_addr_hash; on failure calls
    ctx.fail(RESOLVE_FAILED) and returns None. Only one address is tested, as blackbox_exporter does.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    address = await lookup(host, preferred, fallback)
    ctx.sink.add("probe_dns_lookup_time_seconds", loop.time() - started)
    if address is None:
        # blackbox_exporter reports both as 0 when the name does not resolve.
        ctx.sink.add("probe_ip_protocol", 0)
        ctx.sink.add("probe_ip_addr_hash", 0)
        families = "IPv4 or IPv6" if fallback else ("IPv6" if preferred == "ip6" else "IPv4")
        ctx.fail(Outcome.RESOLVE_FAILED, "cannot resolve %s to an %s address", host, families)
        return None
    ctx.sink.add("probe_ip_protocol", 6 if ":" in address else 4)
    ctx.sink.add("probe_ip_addr_hash", fnv32a(ipaddress.ip_address(address).packed))
    ctx.log("resolved %s to %s", host, address)
    return address


async def lookup(host: str, preferred: IpProtocol = "ip6", fallback: bool = True) -> str | None:
    """The first address of `host` in the preferred family (then the other if `fallback`), or None; no metrics."""
    address = _ip_literal(host)
    if address is None:
        address = await _lookup(host, preferred)
        if address is None and fallback:
            address = await _lookup(host, "ip4" if preferred == "ip6" else "ip6")
    return address


def fnv32a(data: bytes) -> int:
    """32-bit FNV-1a of the address bytes, as blackbox_exporter hashes the probed address."""
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def _lookup(host: str, protocol: IpProtocol) -> str | None:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, family=_FAMILIES[protocol], type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return None
    for _, _, _, _, sockaddr in infos:
        return str(sockaddr[0])
    return None
