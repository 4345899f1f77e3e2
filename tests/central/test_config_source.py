"""agent/config_source.py in process: fetch over real TLS, every refusal reason, last known good, logged once."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
import trustme
from fakes.nginx import Nginx, make_nginx
from prometheus_client import CollectorRegistry, generate_latest

from agent.config import Config, load_config
from agent.config_source import REASONS, ConfigSource, ConfigStatus

pytestmark = pytest.mark.slow
PATH = "signed/000.00.20.H49.yaml"


@pytest.fixture
def nginx(tmp_path: Path):
    server = make_nginx(tmp_path)
    server.start()
    yield server
    server.stop()


def _source(tmp_path: Path, central, keys, url: str, ca_file: Path, extra: str = "") -> tuple[ConfigSource, Path]:
    path = tmp_path / "agent.yaml"
    path.write_text(central.bootstrap(url, keys, ca_file, tmp_path / "state", extra), encoding="utf-8")
    status = ConfigStatus(lambda: {"org_id": central.office, "level": "commune"})
    source = ConfigSource.for_config(load_config(path), status)
    assert source is not None
    return source, path


class _Applier:
    """Stands for Agent.reload: composes the bootstrap with what the source accepted, as the agent does."""

    def __init__(self, source: ConfigSource, path: Path) -> None:
        self.source, self.path = source, path
        self.applied: list[Config] = []

    async def __call__(self) -> tuple[bool, str]:
        self.applied.append(self.source.effective(load_config(self.path)))
        return True, "ok"


def _metrics(status: ConfigStatus) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(status)
    return generate_latest(registry).decode()


async def test_fetch_new_config_then_conditional_polls(tmp_path, nginx: Nginx, keys, central) -> None:
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    source, path = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    config = await source.startup()
    assert [c.name for c in config.checks] == ["host-v1"]
    # the bootstrap keeps web, config_source and the state dir
    assert config.agent.state_dir == str(tmp_path / "state") and config.model.config_source is not None
    assert source.status.source == "central" and source.status.version == "1"
    assert (tmp_path / "state" / "config_source" / "current.yaml").read_bytes().endswith(
        central.office_config("host-v1"))
    apply = _Applier(source, path)
    await source.poll_once(apply)
    assert apply.applied == [] and sum(source.status.failures.values()) == 0
    assert '"GET /signed/000.00.20.H49.yaml HTTP/1.1" 304' in (nginx.prefix / "access.log").read_text()
    nginx.publish(PATH, keys.sign(central.office_config("host-v2"), version=2))
    await source.poll_once(apply)
    assert [c.name for c in apply.applied[-1].checks] == ["host-v2"]
    text = _metrics(source.status)
    assert 'egov_agent_config_info{level="commune",org_id="000.00.20.H49",sha256="' in text
    assert 'source="central",version="2"} 1.0' in text
    assert 'egov_agent_config_version{level="commune",org_id="000.00.20.H49"} 2.0' in text
    for reason in REASONS:
        labels = f'level="commune",org_id="000.00.20.H49",reason="{reason}"'
        assert f"egov_agent_config_fetch_failures_total{{{labels}}} 0.0" in text
    assert "egov_agent_config_last_fetch_success_timestamp_seconds" in text


async def test_refused_configs_keep_the_running_one_and_are_logged_once(tmp_path, nginx: Nginx, keys, central,
                                                                         caplog) -> None:
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=5))
    source, path = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    await source.startup()
    apply = _Applier(source, path)
    now = time.time()
    good_v6 = central.office_config("host-v6")
    cases = {
        "bad_signature": keys.sign(good_v6, 6).replace(b"host-v6", b"host-v7"),
        "wrong_office": keys.sign(central.office_config("host-v6", org_id=central.other_office), 6,
                                  org_id=central.other_office),
        "not_yet_valid": keys.sign(good_v6, 6, not_before=now + 86400 * 365, not_after=now + 86400 * 400),
        "expired": keys.sign(good_v6, 6, not_before=now - 86400 * 400, not_after=now - 86400 * 365),
        "rollback": keys.sign(central.office_config("host-v4"), 4),
        "invalid_config": keys.sign(good_v6.replace(b"module: host_fast", b"module: missing"), 6),
        "too_large": keys.sign(good_v6 + b"#" * 5000 + b"\n", 6),
        "malformed": good_v6,
    }
    for reason, data in cases.items():
        nginx.publish(PATH, data)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agent.config_source"):
            for _ in range(3):
                await source.poll_once(apply)
        assert source.status.failures[reason] == 3, (reason, source.status.failures)
        logged = [r for r in caplog.records if "not accepted" in r.getMessage()]
        assert len(logged) == 1, (reason, [r.__dict__.get("kv") for r in logged])
        assert logged[0].__dict__["kv"]["reason"] == reason
        assert apply.applied == [] and source.status.version == "5", reason
    # the body of another office signed for ours is still another office's config
    nginx.publish(PATH, keys.sign(central.office_config("host-v6", org_id=central.other_office), 6))
    await source.poll_once(apply)
    assert source.status.failures["wrong_office"] == 4
    assert sum(source.status.failures.values()) == 3 * len(cases) + 1
    # and a good one is accepted again
    nginx.publish(PATH, keys.sign(good_v6, 6))
    await source.poll_once(apply)
    assert [c.name for c in apply.applied[-1].checks] == ["host-v6"] and source.status.version == "6"


async def test_network_faults(tmp_path, keys, central, scripted_https, caplog) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = scripted_https(ca)
    server.body = keys.sign(central.office_config("host-v1"), version=1)
    source, path = _source(tmp_path, central, keys, f"{server.url}/{PATH}", ca_file)
    await source.startup()
    assert source.status.version == "1"
    apply = _Applier(source, path)
    server.body = keys.sign(central.office_config("host-v2"), version=2)
    for mode, reason in [("truncate", "truncated"), ("flood", "too_large"), ("hang", "timeout")]:
        server.mode = mode
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agent.config_source"):
            for _ in range(2):
                started = time.monotonic()
                await source.poll_once(apply)
                assert time.monotonic() - started < 3, "bounded by config_source.timeout (900ms)"
        assert source.status.failures[reason] == 2, (mode, source.status.failures)
        assert len([r for r in caplog.records if "not accepted" in r.getMessage()]) == 1, mode
        assert source.status.version == "1" and apply.applied == []
    server.mode = "serve"
    await source.poll_once(apply)
    assert source.status.version == "2"


async def test_unreachable_http_status_and_untrusted_tls(tmp_path, nginx: Nginx, keys, central) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    cases = [
        (f"https://127.0.0.1:{closed}/{PATH}", nginx.ca_file, "unreachable"),
        (f"{nginx.url}/signed/missing.yaml", nginx.ca_file, "http_status"),
        (f"{nginx.url}/{PATH}", _other_ca(tmp_path), "tls"),
    ]
    nginx.publish(PATH, keys.sign(central.office_config(), version=1))
    for url, ca_file, reason in cases:
        source, _ = _source(tmp_path, central, keys, url, ca_file)
        config = await source.startup()
        assert source.status.failures[reason] == 1, (reason, source.status.failures)
        assert source.status.source == "local" and [c.name for c in config.checks] == ["host-local"]


async def test_last_known_good_at_start_up_and_recovery(tmp_path, nginx: Nginx, keys, central) -> None:
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    source, path = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    await source.startup()
    nginx.stop()
    again, _ = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    config = await again.startup()
    assert [c.name for c in config.checks] == ["host-v1"]
    assert again.status.source == "last_known_good" and again.status.failures["unreachable"] == 1
    text = _metrics(again.status)
    assert 'source="last_known_good",version="1"} 1.0' in text and "egov_agent_config_age_seconds" in text
    nginx.start()
    await again.poll_once(_Applier(again, path))
    assert again.status.source == "central", "the province confirmed it (304)"


async def test_tampered_last_known_good_is_ignored(tmp_path, nginx: Nginx, keys, central) -> None:
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    source, _ = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    await source.startup()
    nginx.stop()
    saved = tmp_path / "state" / "config_source" / "current.yaml"
    saved.write_bytes(saved.read_bytes().replace(b"host-v1", b"host-vX"))
    again, _ = _source(tmp_path, central, keys, f"{nginx.url}/{PATH}", nginx.ca_file)
    config = await again.startup()
    assert again.status.source == "local" and [c.name for c in config.checks] == ["host-local"]


async def test_client_certificate_required_by_nginx(tmp_path, keys, central) -> None:
    client_ca = trustme.CA()
    server = make_nginx(tmp_path, client_ca=client_ca)
    server.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    server.start()
    try:
        source, _ = _source(tmp_path, central, keys, f"{server.url}/{PATH}", server.ca_file)
        await source.startup()
        assert source.status.source == "local" and source.status.failures["http_status"] == 1, "nginx: 400"
        client = client_ca.issue_cert("000.00.20.H49.agents.example")
        client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
        client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
        tls = (f'  tls: {{ca_file: "{server.ca_file}", cert_file: "{tmp_path / "client.pem"}", '
               f'key_file: "{tmp_path / "client.key"}"}}')
        path = tmp_path / "agent.yaml"
        text = central.bootstrap(f"{server.url}/{PATH}", keys, server.ca_file, tmp_path / "state")
        path.write_text("\n".join(tls if line.startswith("  tls:") else line for line in text.splitlines()) + "\n")
        with_cert = ConfigSource.for_config(load_config(path), ConfigStatus(dict))
        assert with_cert is not None
        await with_cert.startup()
        assert with_cert.status.source == "central"
    finally:
        server.stop()


def _other_ca(tmp_path: Path) -> Path:
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path
