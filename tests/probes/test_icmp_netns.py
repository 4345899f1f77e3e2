"""The icmp kind inside network namespaces the tests create: unprivileged sockets, loss, jitter, DF, TTL, source.

Each test makes its own namespace (`ip netns add`), changes sysctls, nftables rules and the MTU only there, runs
`python -m agent probe` in it (`ip netns exec`), and deletes the namespace at teardown. Needs root, iproute2 and
nftables (tests/run installs them).
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fakes.icmp import in_namespace, namespace, requests_seen, responder

pytestmark = pytest.mark.slow

_names = itertools.count()
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@pytest.fixture
def ns() -> object:
    with namespace(f"egov-icmp-{os.getpid()}-{next(_names)}") as name:
        yield name


def probe(ns: str, target: str, settings: str = "", timeout: str = "2s",
          user: int | None = None) -> tuple[int, dict[str, float], str]:
    """Run `egov-agent probe` in the namespace; returns exit code, samples ({name}{le|phase} -> value), stderr."""
    # a world-readable file in /tmp: the other user cannot enter pytest's temporary folders
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="egov-icmp-") as config:
        config.write("office: {org_id: 000.00.20.H49, name: X, level: province}\n"
                     f"modules:\n  m: {{kind: icmp, timeout: {timeout}, icmp: {{{settings}}}}}\n")
        config.flush()
        Path(config.name).chmod(0o644)
        argv = [sys.executable, "-m", "agent", "probe", "--debug", "--config", config.name, "--module", "m", target]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=60, cwd="/")
    samples: dict[str, float] = {}
    for line in done.stdout.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(_LABEL.findall(match.group(2)))
            key = match.group(1) + "".join(f"{{{labels[k]}}}" for k in ("le", "phase") if k in labels)
            samples[key] = float(match.group(3))
    return done.returncode, samples, done.stderr


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
def test_unprivileged_datagram_socket_when_the_sysctl_allows(ns: str, tmp_path: Path, target: str) -> None:
    in_namespace(ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    code, got, log = probe(ns, target, "packets: 3, interval: 10ms", user=65534)
    assert code == 0, log
    assert "datagram socket" in log
    assert (got["egov_icmp_packets_received"], got["probe_icmp_reply_hop_limit"]) == (3, 64)


def test_no_socket_allowed_names_the_sysctl_and_the_capability(ns: str, tmp_path: Path) -> None:
    in_namespace(ns, "sysctl", "-qw", "net.ipv4.ping_group_range=1 0")
    code, got, log = probe(ns, "127.0.0.1", user=65534)
    assert code == 1
    assert "net.ipv4.ping_group_range (now '1 0')" in log and "CAP_NET_RAW" in log and "gid 65534" in log
    assert got["probe_success"] == 0


@pytest.mark.parametrize(("target", "family"), [("127.0.0.1", "icmp"), ("::1", "icmpv6")])
def test_loss_made_by_the_kernel(ns: str, tmp_path: Path, target: str, family: str) -> None:
    # every second echo request is dropped on arrival, as a lossy link would (netem is not in this kernel, and
    # numgen is deterministic where netem's loss is random)
    in_namespace(ns, "nft", f"add table inet t; add chain inet t in {{ type filter hook input priority 0; }}; "
                 f"add rule inet t in {family} type echo-request numgen inc mod 2 == 1 drop")
    code, got, log = probe(ns, target, "packets: 10, interval: 20ms")
    assert code == 0, log
    assert (got["egov_icmp_packets_sent"], got["egov_icmp_packets_received"]) == (10, 5)
    assert got["egov_icmp_loss_ratio"] == 0.5
    assert got["smokeping_requests_total"] == 10 and got["smokeping_response_duration_seconds_count"] == 5
    # lost replies are waited for until just before the deadline, never past it
    assert 1.8 < got["probe_duration_seconds"] < 2.0

    code, got, log = probe(ns, target, "packets: 10, interval: 20ms, min_replies: 6", timeout="1s")
    assert code == 1
    assert "5 of 10 echo replies" in log and "want at least 6" in log
    assert got["probe_duration_seconds"] < 1.0


def test_all_lost_is_a_timeout_within_the_deadline(ns: str, tmp_path: Path) -> None:
    in_namespace(ns, "nft", "add table inet t; add chain inet t in { type filter hook input priority 0; }; "
                 "add rule inet t in icmp type echo-request drop")
    code, got, log = probe(ns, "127.0.0.1", "packets: 3, interval: 100ms", timeout="1s")
    assert code == 1
    assert "no echo reply from 127.0.0.1 to 3 requests" in log
    assert got["egov_icmp_loss_ratio"] == 1
    assert got["probe_icmp_duration_seconds{rtt}"] == 0
    assert "egov_icmp_rtt_avg_seconds" not in got and "egov_icmp_jitter_seconds" not in got
    assert got["probe_duration_seconds"] < 1.0


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
def test_jitter_and_ttl_with_delayed_replies(ns: str, tmp_path: Path, target: str) -> None:
    seen = tmp_path / "requests.jsonl"
    # replies alternate 1 ms and 100 ms late; the responder (a Python process on a shared machine) can only add
    # delay, so the bounds leave room above
    with responder(ns, "1,100", seen):
        code, got, log = probe(ns, target, "packets: 10, interval: 150ms, ttl: 7")
    assert code == 0, log
    assert got["egov_icmp_packets_received"] == 10
    assert got["egov_icmp_jitter_seconds"] == pytest.approx(0.099, abs=0.015)
    assert 0.001 <= got["egov_icmp_rtt_min_seconds"] < 0.0256
    assert 0.100 <= got["egov_icmp_rtt_max_seconds"] < 0.2048
    assert got["egov_icmp_rtt_avg_seconds"] == pytest.approx(0.0505, abs=0.01)
    assert got["smokeping_response_duration_seconds_bucket{0.0256}"] == 5
    assert got["smokeping_response_duration_seconds_bucket{0.0512}"] == 5
    assert got["smokeping_response_duration_seconds_bucket{0.2048}"] == 10
    assert [r["hop_limit"] for r in requests_seen(seen)] == [7] * 10


def test_source_ip_address(ns: str, tmp_path: Path) -> None:
    seen = tmp_path / "requests.jsonl"
    with responder(ns, "0", seen):
        code, _, log = probe(ns, "127.0.0.1", "source_ip_address: 127.0.0.2, packets: 2, interval: 10ms")
    assert code == 0, log
    assert {r["source"] for r in requests_seen(seen)} == {"127.0.0.2"}


@pytest.mark.parametrize("target", ["127.0.0.1", "::1"])
@pytest.mark.parametrize("unprivileged", [False, True])
def test_dont_fragment(ns: str, tmp_path: Path, target: str, unprivileged: bool) -> None:
    in_namespace(ns, "ip", "link", "set", "lo", "mtu", "1500")
    if unprivileged:
        in_namespace(ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
    code, _, log = probe(ns, target, "payload_size: 3000, packets: 2, interval: 10ms")
    assert code == 0, log
    code, got, log = probe(ns, target, "payload_size: 3000, dont_fragment: true, packets: 2, interval: 10ms")
    assert code == 1
    assert ("datagram socket" if unprivileged else "raw socket") in log
    assert "cannot send echo requests" in log and "Message too long" in log
    assert got["egov_icmp_loss_ratio"] == 1


def test_local_firewall_drop_is_a_connection_failure(ns: str, tmp_path: Path) -> None:
    # a drop on the way out fails the send itself (EPERM): the host's own firewall, not the link
    in_namespace(ns, "nft", "add table inet t; add chain inet t out { type filter hook output priority 0; }; "
                 "add rule inet t out icmp type echo-request drop")
    code, got, log = probe(ns, "127.0.0.1", "packets: 3, interval: 10ms", timeout="1s")
    assert code == 1
    assert "cannot send echo requests to 127.0.0.1: [Errno 1] Operation not permitted" in log
    assert got["egov_icmp_loss_ratio"] == 1
    assert got["probe_duration_seconds"] < 0.5
