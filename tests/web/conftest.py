"""Fixtures of the web-surface tests: a PKI made with trustme, TLS clients, and the agent with a web config."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
import trustme
from fakes.webclient import PASSWORDS, Pki, request
from testlib import OFFICE_YAML, AgentProcess, wait_for


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    server_ca = trustme.CA(key_type=trustme.KeyType.RSA)
    server = server_ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    server.cert_chain_pems[0].write_to_path(str(base / "server.crt"))
    server.private_key_pem.write_to_path(str(base / "server.key"))
    server_ca.cert_pem.write_to_path(str(base / "ca.pem"))
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(base / "client_ca.pem"))
    rogue_ca = trustme.CA()
    rogue_ca.cert_pem.write_to_path(str(base / "rogue_ca.pem"))
    now = datetime.datetime.now(datetime.UTC)
    leaves = {
        "good": client_ca.issue_cert("client1.test"),
        "other_san": client_ca.issue_cert("client2.test"),
        "rogue": rogue_ca.issue_cert("client1.test"),
        "expired": client_ca.issue_cert("client1.test", not_before=now - datetime.timedelta(days=30),
                                        not_after=now - datetime.timedelta(days=1)),
    }
    clients = {}
    for name, leaf in leaves.items():
        crt, key = base / f"client_{name}.crt", base / f"client_{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(crt))
        leaf.private_key_pem.write_to_path(str(key))
        clients[name] = (crt, key)
    return Pki(base, server_ca, base / "server.crt", base / "server.key", base / "ca.pem",
               base / "client_ca.pem", base / "rogue_ca.pem", clients)


@pytest.fixture(scope="session")
def hashes() -> dict[str, str]:
    """bcrypt hashes of PASSWORDS in Go's $2y$ spelling, as htpasswd writes them."""
    return {user: bcrypt.hashpw(pw.encode(), bcrypt.gensalt(10)).decode().replace("$2b$", "$2y$", 1)
            for user, pw in PASSWORDS.items()}


@pytest.fixture
def web_agent(start_agent: Callable[..., AgentProcess], tmp_path: Path) -> Callable[..., AgentProcess]:
    """Factory: the agent (no checks) with a web config text; waits until it answers `ready_ctx`/`ready_auth`."""
    count = [0]

    def start(web_yml: str, *, ready_ctx: ssl.SSLContext | None = None,
              ready_auth: tuple[str, str] | None = None, agent_yaml: str = OFFICE_YAML,
              web_dir: Path | None = None) -> AgentProcess:
        folder = web_dir or tmp_path
        path = folder / f"web-{count[0]}.yml"
        count[0] += 1
        path.write_text(web_yml, encoding="utf-8")
        agent = start_agent(agent_yaml, "--web.config.file", str(path), wait_ready=False)

        def ready() -> bool:
            if agent.process.poll() is not None:
                raise AssertionError(f"agent exited with {agent.process.returncode}:\n{agent.log()}")
            return request(agent.address, "/-/ready", ctx=ready_ctx, auth=ready_auth, timeout=2).status == 200

        wait_for(ready, timeout=20)
        return agent

    return start
