"""Real SNMP agents for tests: Debian's snmpd (on loopback, or inside a network namespace with many interfaces),
snmp_exporter beside it as the oracle, and a scripted UDP agent for faults snmpd cannot produce.

The scripted agent decodes and encodes with pysnmp/pyasn1, not with the agent's own codec, so a bug in
collectors/_snmp_ber.py cannot hide itself.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from testlib import free_port, http_get, wait_for

COMMUNITY = "testcomm"
# (user, net-snmp auth, auth password, net-snmp priv, priv password, our auth_protocol, our priv_protocol)
USERS = (
    ("usha", "SHA", "authpass-sha1", "AES", "privpass-sha1", "SHA", "AES"),
    ("usha256", "SHA-256", "authpass-sha256", "AES", "privpass-sha256", "SHA256", "AES"),
    ("usha512", "SHA-512", "authpass-sha512", "AES-256", "privpass-sha512", "SHA512", "AES256"),
    ("ushaaes256", "SHA", "authpass-shaaes256", "AES-256", "privpass-shaaes256", "SHA", "AES256"),
    ("umd5des", "MD5", "authpass-md5des", "DES", "privpass-md5des", "MD5", "DES"),
    ("ushaauth", "SHA", "authpass-shaauth", "", "", "SHA", None),
)
ORACLE = Path("/work/shared/oracles/snmp_exporter_if_mib.yml")
_names = itertools.count()
_PDU_NAMES = {"get-request": "getRequest", "get-next-request": "getNextRequest", "get-bulk-request": "getBulkRequest"}


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ns_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a command inside the namespace (nothing for the host)."""
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass
class Snmpd:
    """Debian's snmpd on 127.0.0.1:`port` (of the namespace, if any) with a v2c community and v3 users."""

    directory: Path
    port: int = field(default_factory=free_udp_port)
    netns: str | None = None
    sys_name: str = "testbed-snmpd"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Snmpd:
        """Write the config (first start only), start snmpd in the foreground and wait until it answers."""
        persist = self.directory / "persist"
        if not persist.exists():
            persist.mkdir(parents=True)
            users = "\n".join(f'createUser {u} {a} "{ap}" {p} "{pp}"' if p else f'createUser {u} {a} "{ap}"'
                              for u, a, ap, p, pp, _, _ in USERS)
            (persist / "snmpd.conf").write_text(users + "\n", encoding="utf-8")
            access = "\n".join(f"rouser {u} {'authPriv' if p else 'auth'}" for u, _, _, p, _, _, _ in USERS)
            (self.directory / "snmpd.conf").write_text(
                f"rocommunity {COMMUNITY} 127.0.0.1\nrocommunity public 127.0.0.1\n{access}\nsysName {self.sys_name}\n"
                "sysLocation testbed-rack-1\nsysContact ops@testbed.invalid\ndontLogTCPWrappersConnects yes\n",
                encoding="utf-8")
        log = self.directory / "snmpd.log"
        self.process = subprocess.Popen(
            [*ns_prefix(self.netns), "env", f"SNMP_PERSISTENT_DIR={persist}", "snmpd", "-f", "-C", "-c",
             f"{self.directory / 'snmpd.conf'},{persist / 'snmpd.conf'}", "-m", "", "-Lf", str(log),
             f"udp:127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            assert self.process is not None and self.process.poll() is None, log.read_text(errors="replace")
            return self.snmpget("1.3.6.1.2.1.1.5.0").returncode == 0

        wait_for(answers, timeout=60, interval=0.2)
        return self

    def stop(self) -> None:
        """SIGTERM by PID and wait (snmpd then writes its usmUser lines and engine boots)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def snmpget(self, oid: str) -> subprocess.CompletedProcess[str]:
        """Net-SNMP's own snmpget with the test community, as a cross-check."""
        return subprocess.run([*ns_prefix(self.netns), "snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.5", "-r", "0",
                               "-On", f"127.0.0.1:{self.port}", oid], capture_output=True, text=True, timeout=30)

    @property
    def target(self) -> str:
        """The target as a check names it."""
        return f"udp://127.0.0.1:{self.port}"


@contextmanager
def namespace(interfaces: int = 0) -> Iterator[str]:
    """A fresh network namespace with loopback and `interfaces` veth ends up (pairs, both ends inside), IPv6 off
    so no interface counts any traffic but loopback's; deleted with everything in it afterwards."""
    name = f"egov-snmp-{os.getpid()}-{next(_names)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        run_in(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        run_in(name, "ip", "link", "set", "lo", "up")
        pairs = (interfaces + 1) // 2
        if pairs:
            batch = "".join(f"link add ta{i} type veth peer name tb{i}\n" for i in range(pairs))
            batch += "".join(f"link set ta{i} up\nlink set tb{i} up\n" for i in range(pairs))
            subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True, timeout=120)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def run_in(netns: str | None, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command (in the namespace, if any) and return its output; fails the test on a non-zero exit."""
    result = subprocess.run([*ns_prefix(netns), *argv], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv} exited {result.returncode}: {result.stderr}"
    return result


class SnmpExporter:
    """prometheus-snmp-exporter 0.21 with the oracle if_mib module (auth changed to the test community)."""

    def __init__(self, directory: Path, netns: str | None = None) -> None:
        config = yaml.safe_load(ORACLE.read_text(encoding="utf-8"))
        config["if_mib"]["auth"] = {"community": COMMUNITY}
        self.config = directory / "snmp.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.netns = netns
        self.port = free_port()
        self.log = directory / "snmp_exporter.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SnmpExporter:
        """Start the exporter and wait (bounded) until it serves /metrics."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*ns_prefix(self.netns), "prometheus-snmp-exporter", f"--config.file={self.config}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, timeout=20)
        return self

    def stop(self) -> None:
        """SIGTERM by PID and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def scrape(self, target: str, module: str = "if_mib") -> str:
        """One /snmp scrape's text (through curl inside the namespace, whose loopback is not the host's)."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        url = f"http://127.0.0.1:{self.port}/snmp?{query}"
        if self.netns is None:
            status, body, _ = http_get(url, timeout=30)
            assert status == 200, body
            return body.decode()
        return run_in(self.netns, "curl", "-sf", "--max-time", "30", url).stdout

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text(errors="replace")
        url = f"http://127.0.0.1:{self.port}/metrics"
        if self.netns is None:
            return http_get(url, timeout=1)[0] == 200
        return subprocess.run([*ns_prefix(self.netns), "curl", "-sf", "-o", "/dev/null", url],
                              timeout=10).returncode == 0


# ---------------------------------------------------------------------------------------------- scripted agent

Reply = list[bytes]
Behaviour = Callable[["Request"], Reply]


@dataclass
class Request:
    """A request the scripted agent received, decoded by pysnmp."""

    raw: bytes
    message: Any
    pdu: Any
    pdu_type: str
    request_id: int
    oids: list[tuple[int, ...]]
    max_repetitions: int


class ScriptedAgent(asyncio.DatagramProtocol):
    """A v1/v2c agent on 127.0.0.1 whose answers a test scripts: `behaviour(request)` returns the datagrams to send
    back (encoded with pysnmp), after `delay` seconds."""

    def __init__(self, behaviour: Behaviour, delay: float = 0.0) -> None:
        self.behaviour = behaviour
        self.delay = delay
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> ScriptedAgent:
        """Bind to a free port on 127.0.0.1."""
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()

    @property
    def target(self) -> str:
        """The target as a check names it."""
        return f"udp://127.0.0.1:{self.port}"

    def datagram_received(self, data: bytes, addr: Any) -> None:
        request = decode_request(data)
        self.requests.append(request)
        replies = self.behaviour(request)
        loop = asyncio.get_running_loop()
        for reply in replies:
            if self.delay:
                loop.call_later(self.delay, self._send, reply, addr)
            else:
                self._send(reply, addr)

    def _send(self, reply: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


def decode_request(data: bytes) -> Request:
    """A v1/v2c request decoded by pysnmp."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    version = int(api.decodeMessageVersion(data))
    module = api.PROTOCOL_MODULES[version]
    message, _ = decoder.decode(data, asn1Spec=module.Message())
    pdu = module.apiMessage.get_pdu(message)
    oids = [tuple(oid) for oid, _ in module.apiPDU.get_varbinds(pdu)]
    kind = _PDU_NAMES.get(message["data"].getName(), message["data"].getName())
    max_repetitions = int(pdu["max-repetitions"]) if kind == "getBulkRequest" else 0
    return Request(data, message, pdu, kind, int(module.apiPDU.get_request_id(pdu)), oids, max_repetitions)


def response(request: Request, varbinds: list[tuple[tuple[int, ...], Any]], request_id: int | None = None,
             error_status: int = 0) -> bytes:
    """A response to `request` carrying `varbinds` (pyasn1 values, or None for endOfMibView), encoded by pysnmp."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api, rfc1905

    module = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    message = module.apiMessage.get_response(request.message)
    pdu = module.apiMessage.get_pdu(message)
    values = [(oid, rfc1905.endOfMibView if value is None else value) for oid, value in varbinds]
    module.apiPDU.set_varbinds(pdu, values)
    if request_id is not None:
        module.apiPDU.set_request_id(pdu, request_id)
    if error_status:
        module.apiPDU.set_error_status(pdu, error_status)
    return bytes(encoder.encode(message))


def table_agent(rows: Callable[[tuple[int, ...]], list[tuple[tuple[int, ...], Any]]]) -> Behaviour:
    """A behaviour answering every request with `rows(first requested OID)`."""
    return lambda request: [response(request, rows(request.oids[0]))]


def mib_agent(mib: dict[tuple[int, ...], Any]) -> Behaviour:
    """A well-behaved v2c agent serving `mib` (OID -> pyasn1 value): GET, GETNEXT and GETBULK in OID order."""
    import bisect

    from pysnmp.proto import rfc1905

    keys = sorted(mib)

    def answer(request: Request) -> Reply:
        if request.pdu_type == "getRequest":
            return [response(request, [(oid, mib.get(oid, rfc1905.noSuchInstance)) for oid in request.oids])]
        count = max(request.max_repetitions, 1) if request.pdu_type == "getBulkRequest" else 1
        varbinds: list[tuple[tuple[int, ...], Any]] = []
        position = bisect.bisect_right(keys, request.oids[0])
        for _ in range(count):
            if position >= len(keys):
                varbinds.append((request.oids[0] if not varbinds else varbinds[-1][0], None))
                break
            varbinds.append((keys[position], mib[keys[position]]))
            position += 1
        return [response(request, varbinds)]

    return answer


def if_table(interfaces: int) -> dict[tuple[int, ...], Any]:
    """A small IF-MIB: sysUpTime, ifNumber, ifDescr/ifType/ifOperStatus/ifLastChange/ifInOctets, ifName/
    ifHCInOctets/ifHCOutOctets/ifHighSpeed/ifAlias."""
    from pysnmp.proto import rfc1902

    mib: dict[tuple[int, ...], Any] = {
        (1, 3, 6, 1, 2, 1, 1, 3, 0): rfc1902.TimeTicks(12345),
        (1, 3, 6, 1, 2, 1, 2, 1, 0): rfc1902.Integer32(interfaces),
    }
    for i in range(1, interfaces + 1):
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 2, i)] = rfc1902.OctetString(f"port{i}")
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 3, i)] = rfc1902.Integer32(6)
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 8, i)] = rfc1902.Integer32(1 if i % 2 else 2)
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 9, i)] = rfc1902.TimeTicks(100 * i)
        mib[(1, 3, 6, 1, 2, 1, 2, 2, 1, 10, i)] = rfc1902.Counter32(4294967295 - i)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1, i)] = rfc1902.OctetString(f"ge-0/0/{i}")
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, i)] = rfc1902.Counter64(2**64 - i)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10, i)] = rfc1902.Counter64(10**9 * i)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15, i)] = rfc1902.Gauge32(1000)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18, i)] = rfc1902.OctetString(f"uplink {i}" if i == 1 else "")
    return mib
