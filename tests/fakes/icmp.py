"""ICMP test helpers: a network namespace to break things in, and an echo responder with exact delays.

The test kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off), so delay and jitter come from this responder:
it answers echo requests itself (the namespace's kernel echo replies are switched off) after the next delay of a
fixed cycle, and logs every request it saw (source, TTL or hop limit) as one JSON line. Loss is made by the kernel
with nftables (`numgen inc mod 2`), which is deterministic where netem's `loss 50%` is random.

Run as a script inside the namespace: `ip netns exec NS python tests/fakes/icmp.py --delays-ms 5,25`.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESPONDER = Path(__file__).resolve()


@contextmanager
def namespace(name: str) -> Iterator[str]:
    """A fresh network namespace with loopback up, deleted afterwards (the host's settings are never touched)."""
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        in_namespace(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def in_namespace(name: str, *argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a command inside the namespace and return its output."""
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True, check=check,
                          timeout=timeout)


@contextmanager
def responder(name: str, delays_ms: str, log_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Switch the namespace's kernel echo replies off and run the responder in it until the block ends."""
    in_namespace(name, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1", "net.ipv6.icmp.echo_ignore_all=1")
    process = subprocess.Popen(
        ["ip", "netns", "exec", name, sys.executable, str(RESPONDER), "--delays-ms", delays_ms, "--log", str(log_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # bounded: the responder prints "ready" or exits
        assert line.strip() == "ready", f"responder did not start: {line}{process.stdout.read()}"
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def requests_seen(log_path: Path) -> list[dict[str, object]]:
    """The requests the responder logged, oldest first."""
    if not log_path.exists():
        return []
    return [json.loads(line) for line in log_path.read_text().splitlines() if line]


def serve(delays_ms: list[float], log_path: Path) -> None:
    """Answer echo requests on IPv4 and IPv6 after the next delay of the cycle; a negative delay drops the request."""
    v4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    v6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    v6.setsockopt(socket.IPPROTO_IPV6, 51, 1)  # IPV6_RECVHOPLIMIT
    cycle = itertools.cycle(delays_ms)
    pending: list[tuple[float, int, socket.socket, str, bytes]] = []
    order = itertools.count()
    print("ready", flush=True)
    with log_path.open("a") as log:
        while True:
            timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else 1.0
            readable, _, _ = select.select([v4, v6], [], [], timeout)
            for sock in readable:
                data, ancillary, _, source = sock.recvmsg(70000, 64)
                request = _echo_request(sock is v6, data, ancillary)
                if request is None:
                    continue
                hop_limit, icmp = request
                delay = next(cycle)
                log.write(json.dumps({"source": source[0], "hop_limit": hop_limit, "delay_ms": delay}) + "\n")
                log.flush()
                if delay >= 0:
                    reply = _echo_reply(sock is v6, icmp)
                    heapq.heappush(pending, (time.monotonic() + delay / 1000, next(order), sock, source[0], reply))
            while pending and pending[0][0] <= time.monotonic():
                _, _, sock, destination, reply = heapq.heappop(pending)
                sock.sendto(reply, (destination, 0))


def _echo_request(v6: bool, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> tuple[int, bytes] | None:
    if v6:
        hop_limit = next((int.from_bytes(v[:4], sys.byteorder) for lvl, kind, v in ancillary if kind == 52), -1)
        icmp = data
    else:
        hop_limit, icmp = data[8], data[(data[0] & 0x0F) * 4:]
    if len(icmp) < 8 or icmp[0] != (128 if v6 else 8):
        return None
    return hop_limit, icmp


def _echo_reply(v6: bool, request: bytes) -> bytes:
    body = request[4:]
    if v6:  # the kernel fills in ICMPv6 checksums
        return bytes([129, 0, 0, 0]) + body
    unsummed = bytes([0, 0, 0, 0]) + body
    padded = unsummed + b"\0" * (len(unsummed) % 2)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    total = (total & 0xFFFF) + (total >> 16)
    total += total >> 16
    return bytes([0, 0]) + struct.pack("!H", ~total & 0xFFFF) + body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delays-ms", required=True, help="comma-separated reply delays, cycled; -1 drops")
    parser.add_argument("--log", required=True, type=Path)
    args = parser.parse_args()
    serve([float(part) for part in args.delays_ms.split(",")], args.log)
