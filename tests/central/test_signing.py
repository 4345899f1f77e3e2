"""Signed configs: the envelope, `egov-agent sign` (files, --dir, --generate-key) and the config_source settings."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from testlib import egov_agent_command

from agent.config import load_config, parse_config
from agent.errors import ConfigError
from agent.signing import (
    SIGNATURE_PREFIX,
    SignatureError,
    load_public_keys,
    strip_signature,
    verify_config,
)


def test_signed_file_is_the_config_with_one_line_in_front(keys, central) -> None:
    body = central.office_config()
    signed = keys.sign(body, version=7)
    first, _, rest = signed.partition(b"\n")
    assert rest == body and strip_signature(signed) == body
    assert first.startswith(SIGNATURE_PREFIX)
    fields = json.loads(first[len(SIGNATURE_PREFIX):].rsplit(b" ", 1)[0])
    assert fields["sha256"] == hashlib.sha256(body).hexdigest()
    assert (fields["org_id"], fields["version"]) == (central.office, 7)
    # still a valid agent config: the signature line is a YAML comment
    assert parse_config(signed, "signed").office.org_id == central.office
    envelope = verify_config(signed, load_public_keys(keys.public_file), central.office, time.time())
    assert (envelope.version, envelope.sha256) == (7, fields["sha256"])


def test_signature_verifies_independently_of_our_code(keys, central) -> None:
    """The documented message: MESSAGE_PREFIX + the JSON text of the line, Ed25519, base64."""
    signed = keys.sign(central.office_config(), version=3)
    line = signed.split(b"\n", 1)[0][len(SIGNATURE_PREFIX):]
    fields_text, signature = line.rsplit(b" ", 1)
    keys.private.public_key().verify(base64.b64decode(signature), b"egov-agent config signature v1\n" + fields_text)


@pytest.mark.parametrize(("change", "reason"), [
    pytest.param(lambda s: s.replace(b"host-v1", b"host-v9"), "bad_signature", id="body tampered"),
    pytest.param(lambda s: s[:-10], "bad_signature", id="body cut"),
    pytest.param(lambda s: s.replace(b'"version":5', b'"version":6'), "bad_signature", id="version changed"),
    pytest.param(lambda s: s.split(b"\n", 1)[1], "malformed", id="unsigned"),
    pytest.param(lambda s: s.replace(b"egov-agent-signature: v1 {", b"egov-agent-signature: v1 ["), "malformed",
                 id="bad json"),
    pytest.param(lambda s: b"# egov-agent-signature: v1 " + b"x" * 5000, "malformed", id="no end of line"),
])
def test_changed_files_are_refused(keys, central, change, reason) -> None:
    signed = keys.sign(central.office_config(), version=5)
    with pytest.raises(SignatureError) as caught:
        verify_config(change(signed), load_public_keys(keys.public_file), central.office, time.time())
    assert caught.value.reason == reason


def test_wrong_key_office_and_window_are_refused(keys, central) -> None:
    public = load_public_keys(keys.public_file)
    body, now = central.office_config(), time.time()
    cases = [
        (keys.sign(body, 1, key=keys.stranger), central.office, "bad_signature"),
        (keys.sign(body, 1, org_id=central.other_office), central.office, "wrong_office"),
        (keys.sign(body, 1, not_before=now + 7200, not_after=now + 9000), central.office, "not_yet_valid"),
        (keys.sign(body, 1, not_before=now - 9000, not_after=now - 7200), central.office, "expired"),
    ]
    for signed, office, reason in cases:
        with pytest.raises(SignatureError) as caught:
            verify_config(signed, public, office, now)
        assert caught.value.reason == reason, reason
    # without a clock (the last known good config at start-up) the window is not checked
    old = keys.sign(body, 1, not_before=now - 9000, not_after=now - 7200)
    assert verify_config(old, public, central.office).version == 1


def test_public_keys_as_pem_and_raw_base64(tmp_path, keys, central) -> None:
    raw = keys.stranger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    both = tmp_path / "keys.pub"
    both.write_text(keys.public_file.read_text() + "# the next key\n" + base64.b64encode(raw).decode() + "\n")
    public = load_public_keys(both)
    assert len(public) == 2
    signed = keys.sign(central.office_config(), 2, key=keys.stranger)
    assert verify_config(signed, public, central.office, time.time()).version == 2
    for text, message in [("", "no Ed25519 public key"), ("bm90IGEga2V5\n", "neither PEM nor")]:
        bad = tmp_path / "bad.pub"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_public_keys(bad)


@pytest.mark.slow
def test_generate_key_then_sign_files_with_the_cli(tmp_path, central) -> None:
    key = tmp_path / "province.key"
    result = _sign("--generate-key", str(key))
    assert result.returncode == 0, result.stderr
    assert key.stat().st_mode & 0o777 == 0o600 and Path(f"{key}.pub").exists()
    assert _sign("--generate-key", str(key)).returncode == 1, "never overwrites a key"
    config = tmp_path / "office.yaml"
    config.write_bytes(central.office_config())
    result = _sign("--key", str(key), "--version", "42", "--valid-for", "2d", str(config))
    assert result.returncode == 0, result.stderr
    signed = (tmp_path / "signed" / "office.yaml").read_bytes()
    envelope = verify_config(signed, load_public_keys(f"{key}.pub"), central.office, time.time())
    assert envelope.version == 42
    assert envelope.not_after - envelope.not_before == 2 * 86400 + 3600
    # signing the signed file again replaces the line instead of stacking a second one
    result = _sign("--key", str(key), "--version", "43", "--out", str(tmp_path / "again"),
                   str(tmp_path / "signed" / "office.yaml"))
    assert result.returncode == 0, result.stderr
    assert strip_signature((tmp_path / "again" / "office.yaml").read_bytes()) == central.office_config()


@pytest.mark.slow
def test_cli_refuses_invalid_configs_and_mismatched_offices(tmp_path, central) -> None:
    key = tmp_path / "k"
    assert _sign("--generate-key", str(key)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(central.office_config().replace(b"module: host_fast", b"module: nope"))
    good = tmp_path / "good.yaml"
    good.write_bytes(central.office_config())
    result = _sign("--key", str(key), str(good), str(bad))
    assert result.returncode == 1
    assert "unknown module 'nope'" in result.stderr and "nothing written" in result.stderr
    assert not (tmp_path / "signed").exists()
    result = _sign("--key", str(key), "--office", central.other_office, str(good))
    assert result.returncode == 1 and f"not --office {central.other_office}" in result.stderr
    assert _sign("--key", str(key)).returncode == 2
    assert _sign("--key", str(tmp_path / "missing"), str(good)).returncode == 2


@pytest.mark.slow
def test_sign_dir_signs_what_inventory_generate_wrote(tmp_path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("""\
hierarchies:
  - {name: qn-2012, levels: [province, district, commune]}
offices:
  - {org_id: 000.00.00.H49, name: UBND tỉnh Quảng Nam, level: province, parent_id: null, hierarchy: qn-2012,
     agent: "10.49.0.10:9470", wan_gateway: 10.49.0.1, services: [portal]}
  - {org_id: 000.00.15.H49, name: UBND huyện Núi Thành, level: district, parent_id: 000.00.00.H49,
     hierarchy: qn-2012, wan_gateway: 10.49.15.1, services: [dms]}
""", encoding="utf-8")
    out = tmp_path / "out"
    generated = subprocess.run([*egov_agent_command(), "inventory", "generate", str(inventory), "--out", str(out)],
                               capture_output=True, text=True, timeout=60, check=False)
    assert generated.returncode == 0, generated.stderr
    key = tmp_path / "k"
    assert _sign("--generate-key", str(key)).returncode == 0
    (out / "signed").mkdir()
    (out / "signed" / "000.00.99.H49.yaml").write_text("stale")
    result = _sign("--key", str(key), "--dir", str(out), "--version", "9")
    assert result.returncode == 0, result.stderr
    assert "signed 2 configs" in result.stdout and "1 stale" in result.stdout
    public = load_public_keys(f"{key}.pub")
    for name in ("000.00.00.H49", "000.00.15.H49"):
        signed = (out / "signed" / f"{name}.yaml").read_bytes()
        assert verify_config(signed, public, name, time.time()).version == 9
        assert strip_signature(signed) == (out / "agents" / f"{name}.yaml").read_bytes()
    assert not (out / "signed" / "000.00.99.H49.yaml").exists()
    rules = yaml.safe_load((out / "prometheus" / "config_versions.rules.yml").read_text())["groups"][0]["rules"]
    assert rules == [{"record": "egov_config_published_version", "expr": "vector(9)", "labels": {"org_id": name}}
                     for name in ("000.00.00.H49", "000.00.15.H49")]
    check = subprocess.run(["promtool", "check", "rules", str(out / "prometheus" / "config_versions.rules.yml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(("source", "message"), [
    pytest.param("url: http://127.0.0.1/x.yaml", "config_source.url: String should match pattern", id="http"),
    pytest.param("timeout: 5m\n  interval: 1m", "timeout must be shorter than interval", id="timeout"),
    pytest.param("jitter: 2h", "jitter must not be longer than interval", id="jitter"),
    pytest.param("max_bytes: 10GiB", "config_source.max_bytes: Input should be less than", id="max_bytes"),
    pytest.param("tls: {insecure_skip_verify: true}", "insecure_skip_verify is refused", id="skip verify"),
    pytest.param("public_key: /nonexistent.pub", "cannot read public key file /nonexistent.pub", id="no key"),
    pytest.param("surprise: 1", "config_source.surprise: unknown key", id="unknown key"),
])
def test_config_source_settings_are_validated_at_load(tmp_path, keys, central, source, message) -> None:
    key, value = source.split(":", 1)
    lines = {"url": "https://127.0.0.1:1/x.yaml", "public_key": str(keys.public_file)}
    body = "".join(f"  {k}: {v}\n" for k, v in lines.items() if k != key)
    path = tmp_path / "agent.yaml"
    path.write_text(f"office: {{org_id: {central.office}, name: x, level: province}}\n"
                    f"config_source:\n{body}  {key}:{value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in caught.value.render()
    assert "line " in caught.value.render()


def test_config_source_defaults(tmp_path, keys, central) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(f"office: {{org_id: {central.office}, name: x, level: province}}\n"
                    f"config_source: {{url: 'https://config.example/a.yaml', public_key: {keys.public_file}, "
                    "max_bytes: 512KiB}\n", encoding="utf-8")
    settings = load_config(path).model.config_source
    assert (settings.interval, settings.jitter, settings.timeout, settings.max_bytes) == (300.0, None, 10.0, 524288)
    assert yaml.safe_load(path.read_text())["config_source"]["max_bytes"] == "512KiB"


def _sign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*egov_agent_command(), "sign", *args], capture_output=True, text=True, timeout=60,
                          check=False)
