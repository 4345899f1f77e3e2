"""blackbox_exporter's IP-family preference and fallback for host names, inside a network namespace.

A name lookup through the machine's resolver would leave loopback (an AAAA query for a name /etc/hosts knows only
as IPv4 goes on to DNS). `ip netns exec` bind-mounts /etc/netns/NAME/hosts and resolv.conf over /etc, so here the
names come from our hosts file and a missing record is asked of 127.0.0.1 inside the namespace, where nothing
answers: no query leaves the namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.icmp import in_namespace, namespace
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

HOSTS = """\
127.0.0.1 localhost
127.0.0.1 v4only.egov.test
::1 v6only.egov.test
127.0.0.1 dual.egov.test
::1 dual.egov.test
"""
LISTENER = """\
import socket, sys, time
socks = []
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 9999))
    s.listen(16)
    socks.append(s)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"egov-names-{os.getpid()}"
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(HOSTS, encoding="utf-8")
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n", encoding="utf-8")
    try:
        with namespace(name):
            listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", LISTENER],
                                        stdout=subprocess.PIPE, text=True)
            try:
                assert listener.stdout is not None
                assert listener.stdout.readline().strip() == "ready"
                yield name
            finally:
                listener.terminate()
                listener.wait(timeout=10)
    finally:
        shutil.rmtree(etc, ignore_errors=True)


def probe(ns: str, target: str, settings: str = "") -> tuple[int, dict[str, float], str]:
    """`egov-agent probe` of a tcp module inside the namespace: exit code, unlabelled samples, stderr."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="egov-names-") as config:
        config.write("office: {org_id: 000.00.20.H49, name: X, level: province}\n"
                     f"modules:\n  m: {{kind: tcp, timeout: 2s, tcp: {{{settings}}}}}\n")
        config.flush()
        Path(config.name).chmod(0o644)
        done = in_namespace(ns, sys.executable, "-m", "agent", "probe", "--debug", "--config", config.name,
                            "--module", "m", target, check=False, timeout=60)
    samples = {s.name: s.value for f in text_string_to_metric_families(done.stdout) for s in f.samples}
    return done.returncode, samples, done.stderr


def test_name_with_only_ipv4_falls_back_from_the_preferred_ipv6(ns: str) -> None:
    code, got, log = probe(ns, "v4only.egov.test:9999")
    assert code == 0, log
    assert got["probe_ip_protocol"] == 4


def test_without_fallback_a_name_without_the_preferred_family_does_not_resolve(ns: str) -> None:
    code, got, log = probe(ns, "v4only.egov.test:9999", "ip_protocol_fallback: false")
    assert code == 1
    assert "Probe failed: outcome=resolve_failed" in log
    assert "cannot resolve v4only.egov.test to an IPv6 address" in log
    assert got["probe_ip_protocol"] == 0 and got["probe_ip_addr_hash"] == 0


@pytest.mark.parametrize(("preferred", "family"), [("ip6", 6), ("ip4", 4)])
def test_dual_stack_name_uses_the_preferred_family(ns: str, preferred: str, family: int) -> None:
    code, got, log = probe(ns, "dual.egov.test:9999", f"preferred_ip_protocol: {preferred}")
    assert code == 0, log
    assert got["probe_ip_protocol"] == family


def test_ipv6_only_name_with_the_default_preference(ns: str) -> None:
    code, got, log = probe(ns, "v6only.egov.test:9999")
    assert code == 0, log
    assert got["probe_ip_protocol"] == 6
