"""ICMP echo bursts for WAN quality: blackbox_exporter's icmp probe with N packets, loss, jitter, RTT statistics and
smokeping_prober's request counter and latency histogram.

Sockets are opened here rather than through icmplib: icmplib cannot set Don't Fragment, does not read the reply's
TTL / hop limit (it uses recv, not recvmsg) and timestamps replies in user space after the event loop wakes up. This
module asks the kernel for receive timestamps (SO_TIMESTAMPNS), so a busy event loop does not inflate the RTT.

Permissions (Linux): unprivileged datagram ICMP sockets are tried first; they need the process's group inside
`net.ipv4.ping_group_range` (the same sysctl governs IPv6). Otherwise raw sockets are used, which need root or
CAP_NET_RAW. Unlike blackbox_exporter, `dont_fragment` works on unprivileged sockets too (IP_MTU_DISCOVER applies to
Linux ping sockets).
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import ipaddress
import itertools
import math
import os
import random
import re
import socket
import struct
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import Field, field_validator, model_validator

from agent.durations import Duration
from agent.errors import Outcome
from collectors import _resolve
from collectors.base import CollectorSpec, MetricSpec, ProbeContext, Settings

BUCKETS = tuple(0.00005 * 2**i for i in range(20))
"""smokeping_prober's default buckets, prometheus.ExponentialBuckets(0.00005, 2, 20): 50µs to 26.2s."""

MAX_TRACKED = 4096
"""(check, target) pairs whose cumulative counters are kept; the least recently run pair is forgotten first."""

METRICS = (
    *_resolve.METRICS,
    MetricSpec("probe_icmp_duration_seconds", "gauge", "Duration of icmp request by phase (rtt: the mean over the "
               "replies of the burst, 0 without a reply)", ("phase",)),
    MetricSpec("probe_icmp_reply_hop_limit", "gauge", "Replied packet hop limit (TTL for ipv4), of the last reply"),
    MetricSpec("smokeping_requests_total", "counter", "Number of ping requests sent"),
    MetricSpec("smokeping_response_duration_seconds", "histogram", "A histogram of latencies for ping responses."),
    MetricSpec("egov_icmp_packets_sent", "gauge", "Echo requests sent by the last burst."),
    MetricSpec("egov_icmp_packets_received", "gauge", "Echo replies received for the last burst."),
    MetricSpec("egov_icmp_loss_ratio", "gauge", "Share of the last burst's echo requests without a reply (0-1)."),
    MetricSpec("egov_icmp_jitter_seconds", "gauge", "Mean absolute difference between the RTTs of consecutive "
               "replies of the last burst (the quantity RFC 3550 jitter estimates)."),
    MetricSpec("egov_icmp_rtt_min_seconds", "gauge", "Shortest round-trip time of the last burst."),
    MetricSpec("egov_icmp_rtt_avg_seconds", "gauge", "Mean round-trip time of the last burst."),
    MetricSpec("egov_icmp_rtt_max_seconds", "gauge", "Longest round-trip time of the last burst."),
)


class IcmpSettings(Settings):
    """blackbox_exporter's icmp options, plus the burst: `packets` echo requests `interval` apart."""

    preferred_ip_protocol: _resolve.IpProtocol = "ip6"
    ip_protocol_fallback: bool = True
    source_ip_address: str | None = None
    payload_size: int = Field(0, ge=0, le=65000, description="0: 28 bytes, as blackbox_exporter sends")
    dont_fragment: bool = False
    ttl: int = Field(64, ge=0, le=255, description="0: the system default")
    packets: int = Field(1, ge=1, le=1000)
    interval: Duration = 1.0
    min_replies: int = Field(1, ge=1, description="the run succeeds when at least this many replies arrive")

    @field_validator("source_ip_address")
    @classmethod
    def _ip_literal(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                raise ValueError(f"source_ip_address {value!r} is not an IP address") from None
        return value

    @model_validator(mode="after")
    def _replies_possible(self) -> IcmpSettings:
        if self.min_replies > self.packets:
            raise ValueError(f"min_replies {self.min_replies} exceeds packets {self.packets}")
        return self


async def probe_icmp(ctx: ProbeContext, settings: IcmpSettings) -> bool:
    """Send a burst of echo requests; success when at least `min_replies` replies arrive before the deadline."""
    totals = _totals(ctx.check, ctx.target)
    phases = {"resolve": 0.0, "setup": 0.0, "rtt": 0.0}
    try:
        return await _probe(ctx, settings, totals, phases)
    finally:
        for phase, seconds in phases.items():
            ctx.sink.add("probe_icmp_duration_seconds", seconds, phase)
        ctx.sink.add("smokeping_requests_total", totals.requests)
        ctx.sink.add_histogram("smokeping_response_duration_seconds", totals.buckets(), totals.total)


def check_icmp_target(target: str, settings: IcmpSettings) -> None:
    """A target is a host name or an IP address, nothing else (no port, scheme or path)."""
    try:
        ipaddress.ip_address(target.strip("[]") if target.startswith("[") else target)
        return
    except ValueError:
        pass
    if len(target) > 253 or not all(_LABEL.fullmatch(label) for label in target.removesuffix(".").split(".")):
        raise ValueError(f"target {target!r} is neither a host name nor an IP address")


def check_icmp_module(settings: IcmpSettings, timeout: float) -> None:
    """The whole burst must fit in the module's timeout, with the margin kept for the last replies."""
    burst = (settings.packets - 1) * settings.interval
    if burst >= timeout - _MARGIN:
        raise ValueError(f"a burst of {settings.packets} packets {settings.interval:g}s apart takes {burst:g}s, which "
                         f"does not fit in the timeout of {timeout:g}s; lower packets or interval, or raise timeout")


SPEC = CollectorSpec(
    kind="icmp",
    settings=IcmpSettings,
    probe=probe_icmp,
    metrics=METRICS,
    builtin_modules={"icmp": {"kind": "icmp", "timeout": "10s"}},
    check_target=check_icmp_target,
    check_module=check_icmp_module,
)

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_MARGIN = 0.1  # stop waiting this long before the deadline, so the results are returned, not cancelled
_DEFAULT_PAYLOAD = 28
_SO_TIMESTAMPNS = 35  # Linux; Python 3.11's socket module lacks these constants
_SO_ATTACH_FILTER = 26
_IP_RECVTTL = 12
_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_DO = 2
_IPV6_RECVHOPLIMIT = 51
_IPV6_HOPLIMIT = 52
_IPV6_DONTFRAG = 62
_TIMESPEC = struct.Struct("@ll")
_ECHO_HEADER = struct.Struct("!BBHHH")


@dataclass(slots=True)
class _Totals:
    """What smokeping_prober accumulates per target: requests sent, and replies by RTT bucket."""

    requests: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[float, float]]:
        cumulative = 0
        pairs: list[tuple[float, float]] = []
        for bound, count in zip((*BUCKETS, math.inf), self.counts, strict=True):
            cumulative += count
            pairs.append((bound, cumulative))
        return pairs


_TOTALS: OrderedDict[tuple[str, str], _Totals] = OrderedDict()


def _totals(check: str, target: str) -> _Totals:
    key = (check, target)
    totals = _TOTALS.get(key)
    if totals is None:
        totals = _TOTALS[key] = _Totals()
        if len(_TOTALS) > MAX_TRACKED:
            _TOTALS.popitem(last=False)
    else:
        _TOTALS.move_to_end(key)
    return totals


async def _probe(ctx: ProbeContext, settings: IcmpSettings, totals: _Totals, phases: dict[str, float]) -> bool:
    loop = asyncio.get_running_loop()
    burst = (settings.packets - 1) * settings.interval
    if burst >= ctx.remaining() - _MARGIN:
        return ctx.fail(Outcome.ERROR, "a burst of %d packets %gs apart takes %gs, which does not fit in the %.3gs "
                        "left of the module's timeout; lower packets or interval, or raise the timeout",
                        settings.packets, settings.interval, burst, ctx.remaining())
    started = loop.time()
    address = await _resolve.resolve(ctx, ctx.target, settings.preferred_ip_protocol, settings.ip_protocol_fallback)
    phases["resolve"] = loop.time() - started
    if address is None:
        return False
    started = loop.time()
    try:
        pinger = _Pinger(address, settings, totals)
    except _Denied as err:
        return ctx.fail(Outcome.ERROR, "%s", err)
    except OSError as err:
        return ctx.fail(Outcome.ERROR, "cannot set up an ICMP socket for %s: %s", address, err)
    phases["setup"] = loop.time() - started
    ctx.log("%s socket, echo id %d, %d packets %gs apart to %s", "raw" if pinger.raw else "datagram",
            pinger.ident, settings.packets, settings.interval, address)
    try:
        await pinger.burst(settings.packets, settings.interval, ctx.deadline - _MARGIN)
    finally:
        pinger.close()
    rtts = [pinger.rtts[index] for index in sorted(pinger.rtts)]
    sent, received = pinger.sent, len(rtts)
    ctx.sink.add("egov_icmp_packets_sent", sent)
    ctx.sink.add("egov_icmp_packets_received", received)
    if sent:
        ctx.sink.add("egov_icmp_loss_ratio", 1 - received / sent)
    if rtts:
        phases["rtt"] = sum(rtts) / received
        ctx.sink.add("egov_icmp_rtt_min_seconds", min(rtts))
        ctx.sink.add("egov_icmp_rtt_avg_seconds", phases["rtt"])
        ctx.sink.add("egov_icmp_rtt_max_seconds", max(rtts))
    if received >= 2:
        # RFC 3550 smooths |D| with gain 1/16; over 10 packets from J=0 that reaches only ~44% of the mean, so
        # the burst reports the mean itself, which is what the RFC's estimator converges to.
        ctx.sink.add("egov_icmp_jitter_seconds", sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (received - 1))
    if pinger.hop_limit is not None:
        ctx.sink.add("probe_icmp_reply_hop_limit", pinger.hop_limit)
    ctx.log("%d of %d replies from %s", received, sent, address)
    if received >= settings.min_replies:
        return True
    if received == 0 and pinger.send_error:
        return ctx.fail(Outcome.CONNECTION_FAILED, "cannot send echo requests to %s: %s", address, pinger.send_error)
    if received == 0:
        return ctx.fail(Outcome.TIMEOUT, "no echo reply from %s to %d requests", address, sent)
    return ctx.fail(Outcome.MISMATCH, "%d of %d echo replies from %s, want at least %d", received, sent, address,
                    settings.min_replies)


class _Denied(Exception):
    """Neither an unprivileged nor a raw ICMP socket may be opened."""


class _Pinger:
    """One ICMP socket for one run: sends the burst, matches replies by source, identifier and sequence."""

    def __init__(self, address: str, settings: IcmpSettings, totals: _Totals) -> None:
        self.address = address
        self.v6 = ":" in address
        self.totals = totals
        self.sent = 0
        self.rtts: dict[int, float] = {}
        """RTT in seconds by packet index (0 = the burst's first request)."""
        self.hop_limit: int | None = None
        self.send_error = ""
        self._sock, self.raw = _open_socket(self.v6)
        try:
            self.ident = self._configure(settings)
        except BaseException:
            self._sock.close()
            raise
        size = settings.payload_size or _DEFAULT_PAYLOAD
        self._payload = (b"egov-agent icmp " * (size // 16 + 1))[:size]
        self._partial_sum = _word_sum(_ECHO_HEADER.pack(8, 0, 0, self.ident, 0) + self._payload)
        self._bufsize = 60 + 8 + size + 64  # largest IPv4 header, ICMP header, payload, slack
        self._first_seq = random.randrange(1 << 16)
        self._sent_at: dict[int, tuple[int, int, float]] = {}  # seq: (index, CLOCK_REALTIME ns, loop time)
        self._failed = 0
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False

    async def burst(self, packets: int, interval: float, stop: float) -> None:
        """Send `packets` requests `interval` apart and wait for their replies, all before loop time `stop`."""
        # Timer callbacks send the packets and one future ends the burst: the coroutine wakes once, not per packet.
        self._tick(0, packets, interval, self._loop.time(), stop)
        try:
            async with asyncio.timeout_at(stop):
                await self._done
        except TimeoutError:
            pass

    def close(self) -> None:
        """Stop sending and reading, close the socket; replies arriving later are lost."""
        if self._timer is not None:
            self._timer.cancel()
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _configure(self, settings: IcmpSettings) -> int:
        sock = self._sock
        sock.setblocking(False)
        ident = random.randrange(1, 1 << 16)
        if not self.raw:  # a ping socket's bound port is its echo identifier
            wildcard = "::" if self.v6 else "0.0.0.0"
            try:
                sock.bind((settings.source_ip_address or wildcard, ident))
            except OSError as err:
                if err.errno != errno.EADDRINUSE:
                    raise
                sock.bind((settings.source_ip_address or wildcard, 0))
            ident = int(sock.getsockname()[1])
        else:
            if settings.source_ip_address:
                sock.bind((settings.source_ip_address, 0))
            _accept_only_replies_to(sock, self.v6, ident)
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        if self.v6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVHOPLIMIT, 1)
            if settings.ttl:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, settings.ttl)
            if settings.dont_fragment:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_DONTFRAG, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
            if settings.ttl:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, settings.ttl)
            if settings.dont_fragment:
                sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
        return ident

    def _send(self, index: int) -> None:
        seq = (self._first_seq + index) & 0xFFFF
        if self.v6:  # the kernel computes ICMPv6 checksums
            packet = _ECHO_HEADER.pack(128, 0, 0, self.ident, seq) + self._payload
        else:  # only the sequence number changes: add it to the sum of the rest, computed once
            packet = _ECHO_HEADER.pack(8, 0, _fold(self._partial_sum + seq), self.ident, seq) + self._payload
        self.sent += 1
        self.totals.requests += 1
        self._sent_at[seq] = (index, time.time_ns(), self._loop.time())
        try:
            self._sock.sendto(packet, (self.address, 0))
        except OSError as err:  # unreachable network, full buffer, message too long with dont_fragment: a loss
            self._failed += 1
            self.send_error = str(err)

    def _tick(self, index: int, packets: int, interval: float, start: float, stop: float) -> None:
        # Replies that arrived since the last tick wait in the socket with their kernel timestamps: reading them
        # here, not when each arrives, halves the wake-ups of a burst over a WAN.
        self._drain()
        self._send(index)
        next_at = start + (index + 1) * interval
        if index + 1 < packets and next_at < stop:
            self._timer = self._loop.call_at(next_at, self._tick, index + 1, packets, interval, start, stop)
            return
        self._timer = None
        self._drain()
        if not self._complete():
            self._loop.add_reader(self._sock.fileno(), self._drain)
            self._reading = True

    def _complete(self) -> bool:
        if len(self.rtts) + self._failed < self.sent:
            return False
        if not self._done.done():
            self._done.set_result(None)
        return True

    def _drain(self) -> None:
        while True:
            try:
                data, ancillary, _, source = self._sock.recvmsg(self._bufsize, 128)
            except OSError:  # BlockingIOError: nothing more to read
                break
            self._receive(data, ancillary, source[0])
        if self._timer is None and self.sent:
            self._complete()

    def _receive(self, data: bytes, ancillary: list[tuple[int, int, bytes]], source: str) -> None:
        received_loop = self._loop.time()
        offset = (data[0] & 0x0F) * 4 if self.raw and not self.v6 and data else 0
        if len(data) < offset + 8 or source != self.address:
            return
        kind, code, _, ident, seq = _ECHO_HEADER.unpack_from(data, offset)
        if kind != (129 if self.v6 else 0) or code != 0 or ident != self.ident:
            return
        sent = self._sent_at.get(seq)
        if sent is None or sent[0] in self.rtts:
            return
        index, sent_ns, sent_loop = sent
        rtt = received_loop - sent_loop
        hop_limit = data[8] if offset else None
        for level, kind_, value in ancillary:
            if level == socket.SOL_SOCKET and kind_ == _SO_TIMESTAMPNS and len(value) == _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack(value)
                kernel = (seconds * 1_000_000_000 + nanoseconds - sent_ns) / 1e9
                if 0 <= kernel <= rtt:  # else the wall clock stepped during the burst: keep the loop's time
                    rtt = kernel
            elif (level, kind_) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, _IPV6_HOPLIMIT)):
                hop_limit = int.from_bytes(value[:4], sys.byteorder)
        self.rtts[index] = rtt
        self.totals.observe(rtt)
        if hop_limit is not None:
            self.hop_limit = hop_limit



def _open_socket(v6: bool) -> tuple[socket.socket, bool]:
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except PermissionError:
        pass
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), True
    except PermissionError:
        raise _Denied(_denied_message()) from None


def _accept_only_replies_to(sock: socket.socket, v6: bool, ident: int) -> None:
    """Attach a classic BPF filter to a raw socket: the kernel then drops every ICMP message but our echo replies.

    A raw socket gets a copy of all ICMP traffic of the host; without the filter every concurrent burst would wake
    for every other burst's packets (iputils ping filters the same way).
    """
    import ctypes  # only raw sockets need it

    drop, accept = 0, 0xFFFF
    if v6:  # the ICMPv6 header is at offset 0
        program = [(0x30, 0, 0, 0), (0x15, 0, 3, 129), (0x28, 0, 0, 4), (0x15, 0, 1, ident),
                   (0x06, 0, 0, accept), (0x06, 0, 0, drop)]
    else:  # x = IPv4 header length, then the ICMP header at x
        program = [(0xB1, 0, 0, 0), (0x50, 0, 0, 0), (0x15, 0, 3, 0), (0x48, 0, 0, 4), (0x15, 0, 1, ident),
                   (0x06, 0, 0, accept), (0x06, 0, 0, drop)]
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in program))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, struct.pack("@HP", len(program), ctypes.addressof(code)))


def _denied_message() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as file:
            group_range = " ".join(file.read().split())
    except OSError:
        group_range = "unknown"
    return (f"cannot open an ICMP socket: unprivileged ping sockets need the process's group (gid {os.getgid()}) "
            f"inside sysctl net.ipv4.ping_group_range (now {group_range!r}), and raw sockets need root or "
            "CAP_NET_RAW; widen the sysctl or grant the capability (AmbientCapabilities=CAP_NET_RAW in the "
            "systemd unit)")


def _word_sum(data: bytes) -> int:
    """Sum of the big-endian 16-bit words of `data` (zero-padded), unfolded."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return total


def _fold(total: int) -> int:
    """The Internet checksum (RFC 1071) of words summing to `total`."""
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
