"""The real agent process against a real nginx serving signed configs over TLS on loopback (issue 11)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from fakes.nginx import make_nginx
from testlib import AgentProcess, http_post, wait_for

pytestmark = pytest.mark.slow
PATH = "signed/000.00.20.H49.yaml"


@pytest.fixture
def nginx(tmp_path: Path):
    server = make_nginx(tmp_path)
    yield server
    server.stop()


def _value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first series of `name` whose labels include `labels`."""
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            return float(match.group(2))
    return None


def _running(agent: AgentProcess, source: str, version: str, check: str) -> bool:
    text = agent.metrics()
    return (_value(text, "egov_agent_config_info", source=source, version=version) == 1
            and _value(text, "probe_success", check=check) is not None)


def _failures(agent: AgentProcess, reason: str) -> float:
    return _value(agent.metrics(), "egov_agent_config_fetch_failures_total", reason=reason) or 0.0


def test_agent_follows_signed_configs_and_refuses_bad_ones(tmp_path, nginx, keys, central, start_agent) -> None:
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    nginx.start()
    agent = start_agent(central.bootstrap(f"{nginx.url}/{PATH}", keys, nginx.ca_file, tmp_path / "state"))
    wait_for(lambda: _running(agent, "central", "1", "host-v1"), timeout=10)

    nginx.publish(PATH, keys.sign(central.office_config("host-v2"), version=2))
    wait_for(lambda: _running(agent, "central", "2", "host-v2"), timeout=20)
    wait_for(lambda: _value(agent.metrics(), "probe_success", check="host-v1") is None, timeout=10)

    v3 = central.office_config("host-v3")
    refused = [
        ("bad_signature", keys.sign(v3, 3).replace(b"host-v3", b"host-vX")),      # tampered after signing
        ("bad_signature", keys.sign(v3, 3, key=keys.stranger)),                    # signed by someone else
        ("wrong_office", keys.sign(central.office_config("host-v3", org_id=central.other_office), 3,
                                   org_id=central.other_office)),
    ]
    seen: dict[str, float] = {}
    for reason, data in refused:
        before = seen.get(reason, _failures(agent, reason))
        nginx.publish(PATH, data)
        wait_for(lambda r=reason, b=before: _failures(agent, r) >= b + 2, timeout=20)  # polled again and again
        seen[reason] = _failures(agent, reason)
        assert _running(agent, "central", "2", "host-v2"), f"{reason}: the running config must stay"
    log = agent.log()
    assert log.count("central config not accepted") == 3, log  # once per distinct failure, not per poll
    assert log.count("does not verify with any configured public key") == 1
    assert log.count("do not match the signed sha256") == 1

    nginx.publish(PATH, keys.sign(v3, 3))
    wait_for(lambda: _running(agent, "central", "3", "host-v3"), timeout=20)
    text = agent.metrics()
    assert (_value(text, "egov_agent_config_version") == 3
            and _value(text, "egov_agent_config_last_reload_successful") == 1)
    # a local reload re-reads the bootstrap and keeps the central config on top of it
    assert http_post(f"{agent.url}/-/reload")[0] == 200
    assert _running(agent, "central", "3", "host-v3")
    assert _value(agent.metrics(), "probe_success", check="host-local") is None
    assert agent.stop() == 0


def test_agent_starts_from_last_known_good_and_recovers(tmp_path, nginx, keys, central, start_agent) -> None:
    text = central.bootstrap(f"{nginx.url}/{PATH}", keys, nginx.ca_file, tmp_path / "state")
    nginx.publish(PATH, keys.sign(central.office_config("host-v1"), version=1))
    # 1. the province is unreachable and nothing was ever fetched: the local file runs
    agent = start_agent(text)
    wait_for(lambda: _running(agent, "local", "", "host-local"), timeout=10)
    assert _failures(agent, "unreachable") >= 1
    # 2. the province comes back: the agent switches to its config
    nginx.start()
    wait_for(lambda: _running(agent, "central", "1", "host-v1"), timeout=20)
    assert agent.stop(signal.SIGTERM) == 0
    # 3. commune WAN down at boot: the last known good config runs, with its age
    nginx.stop()
    agent = start_agent(text)
    wait_for(lambda: _running(agent, "last_known_good", "1", "host-v1"), timeout=10)
    assert _value(agent.metrics(), "egov_agent_config_age_seconds") is not None
    assert "starting from the last known good config" in agent.log()
    # 4. the link returns with a newer config published meanwhile
    nginx.publish(PATH, keys.sign(central.office_config("host-v2"), version=2))
    nginx.start()
    wait_for(lambda: _running(agent, "central", "2", "host-v2"), timeout=20)
    assert "config fetch works again" in agent.log()
    assert agent.stop() == 0
