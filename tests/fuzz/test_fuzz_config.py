"""Fuzzed config files: random YAML structures and mutated real configs give a ConfigError or a config, nothing else.

Both loaders are covered: the agent config (agent.config.parse_config) and the web config (load_web_config).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testlib import REPO

from agent.config import parse_config
from agent.errors import ConfigError
from agent.webconfig import load_web_config

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
KEYS = ("office", "org_id", "name", "level", "parent_id", "hierarchy", "levels", "web", "listen_address",
        "config_file", "idle_timeout", "agent", "state_dir", "modules", "checks", "kind", "timeout", "targets",
        "interval", "service", "module", "auth", "auths", "remote_write", "url", "queue", "http", "tcp", "dns",
        "icmp", "snmp", "host", "file", "env", "tls_server_config", "basic_auth_users", "http_server_config",
        "headers", "cert_file", "key_file", "client_auth_type", "min_version", "rate_limit", "burst")
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["30s", "0s", "-1s", "1e400", "http_2xx", "host", "commune", "TLS12",
                                           "127.0.0.1:0", "[::1]:9470", "{file: /dev/null}", "*", "&a", "~"]),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), children,
                                               max_size=6)),
    max_leaves=40,
)
EXAMPLES = sorted(p for p in (REPO / "config").rglob("*.yaml") if p.is_file())


def _text_of(tree: object) -> bytes:
    try:
        return yaml.safe_dump(tree, allow_unicode=True).encode()
    except (yaml.YAMLError, ValueError, OverflowError):
        return repr(tree).encode()


@pytest.mark.slow
@FUZZ
@given(TREES)
def test_random_structures(tree: object) -> None:
    try:
        parse_config(_text_of(tree), "fuzz.yaml")
    except ConfigError as err:
        assert err.issues and "Traceback" not in err.render()


@pytest.mark.slow
@FUZZ
@given(st.dictionaries(st.sampled_from(["office", "modules", "checks", "web", "agent", "auths", "remote_write",
                                        "hierarchy"]), TREES, max_size=6))
def test_random_sections(tree: dict[str, object]) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(_text_of(tree), "fuzz.yaml")


@FUZZ
@given(st.sampled_from(EXAMPLES), st.data())
def test_mutated_real_configs(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, max(0, len(raw) - 1)))
        action = data.draw(st.sampled_from(["flip", "delete", "insert", "duplicate_line", "truncate"]))
        if action == "flip" and raw:
            raw[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "delete":
            del raw[position:position + data.draw(st.integers(1, 20))]
        elif action == "insert":
            raw[position:position] = data.draw(st.sampled_from([b":", b"- ", b"{", b"]", b"\t", b"\x00", b"\xff",
                                                                b"&x ", b"*x", b"!!python/object ", b"\n  ",
                                                                b"'", b'"', b"%YAML 1.2\n---\n"]))
        elif action == "duplicate_line":
            end = raw.find(b"\n", position)
            start = raw.rfind(b"\n", 0, position) + 1
            raw[start:start] = raw[start:end + 1]
        else:
            del raw[position:]
    with contextlib.suppress(ConfigError):
        parse_config(bytes(raw), str(path))


@FUZZ
@given(st.one_of(TREES, st.dictionaries(st.sampled_from(["tls_server_config", "http_server_config",
                                                         "basic_auth_users", "rate_limit"]), TREES, max_size=4)))
def test_web_config(tmp_path: Path, tree: object) -> None:
    path = tmp_path / "web.yml"  # the same file for every example: only its text changes
    path.write_bytes(_text_of(tree))
    try:
        load_web_config(path)
    except ConfigError as err:
        assert err.render().startswith(str(path))
