"""Config loading: one invalid file per validation rule with its exact message, secrets, durations, schema."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import (
    Secret,
    builtin_modules,
    config_schema,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from agent.errors import ConfigError
from collectors import COLLECTORS

REPO = Path(__file__).resolve().parents[2]
INVALID = sorted((REPO / "tests/testdata/config/invalid").glob("*.yaml"))


def expected_messages(path: Path) -> list[str]:
    """The `# expect: ...` lines at the top of a test config.

    `{kinds}` stands for the registered kinds and `{modules}` / `{modules:a,b}` for the built-in modules (plus
    a, b), so adding a kind or a built-in module does not rewrite every expectation.
    """
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    expected = [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]
    return [re.sub(r"\{kinds\}|\{modules(?::([^}]*))?\}", _placeholder, line) for line in expected]


def _placeholder(match: re.Match[str]) -> str:
    if match.group(0) == "{kinds}":
        return ", ".join(sorted(COLLECTORS))
    extra = [name for name in (match.group(1) or "").split(",") if name]
    return ", ".join(sorted({*builtin_modules(), *extra}))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_reports_exact_message(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    got = [str(issue) for issue in caught.value.issues]
    assert got == expected_messages(path)
    assert all(line.startswith(f"{path}: ") for line in caught.value.render().splitlines())


@pytest.mark.parametrize("path", INVALID[:3], ids=[p.stem for p in INVALID[:3]])
def test_check_config_exits_1_with_message_and_no_traceback(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert expected_messages(path)[0] in done.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.render() == f"{tmp_path / 'nope.yaml'}: cannot read config: No such file or directory"


def test_unreadable_config_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.render() == f"{tmp_path}: cannot read config: Is a directory"


@pytest.mark.parametrize(
    "path",
    [REPO / "config/agent.yaml", *sorted((REPO / "config/examples").glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.checks


def test_empty_file_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        parse_config(b"", "empty.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("200ms", 0.2), ("1.5s", 1.5), ("7d", 604800), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 s", "-5s", "s", "1.s", "5sec", 5, None, True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_two_level_hierarchy_is_accepted() -> None:
    config = parse_config(
        b"office: {org_id: 000.00.20.H49, name: Phuong Hai Chau, level: commune, parent_id: 000.00.00.H17}\n"
        b"hierarchy: {name: dn-2025, levels: [province, commune]}\n",
        "two-level.yaml",
    )
    assert config.hierarchy.levels == ["province", "commune"]


def test_secret_from_file_and_env_never_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel

    from agent.config import SecretValue

    class WithSecret(BaseModel):
        password: SecretValue

    secret_file = tmp_path / "pw"
    secret_file.write_text("S3CR3T-file\n")
    monkeypatch.setenv("EGOV_TEST_SECRET", "S3CR3T-env")
    from_file = WithSecret.model_validate({"password": {"file": str(secret_file)}}).password
    from_env = WithSecret.model_validate({"password": {"env": "EGOV_TEST_SECRET"}}).password
    assert isinstance(from_file, Secret)
    assert from_file.reveal() == "S3CR3T-file"
    assert from_env.reveal() == "S3CR3T-env"
    shown = " ".join([repr(from_file), str(from_env), repr(WithSecret(password=from_env)),
                      json.dumps(WithSecret(password=from_env).model_dump(mode="json"))])
    assert "S3CR3T" not in shown
    assert "env:EGOV_TEST_SECRET" in shown


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inline-password", "a secret is given as {file: PATH} or {env: VARIABLE}, never inline"),
        ({"env": "EGOV_TEST_UNSET_VARIABLE"}, "environment variable EGOV_TEST_UNSET_VARIABLE is not set or empty"),
        ({"file": "/nonexistent/pw"}, "cannot read secret file /nonexistent/pw: No such file or directory"),
    ],
)
def test_bad_secrets(value: object, message: str) -> None:
    from pydantic import BaseModel, ValidationError

    from agent.config import SecretValue

    class WithSecret(BaseModel):
        password: SecretValue

    with pytest.raises(ValidationError) as caught:
        WithSecret.model_validate({"password": value})
    assert message in str(caught.value)
    assert "inline-password" not in str(caught.value).split("input_value")[0]


def test_schema_file_matches_models() -> None:
    shipped = json.loads((REPO / "config/schema.json").read_text(encoding="utf-8"))
    assert shipped == config_schema(), "config/schema.json is stale: run `egov-agent schema > config/schema.json`"


def test_readme_configuration_example_is_valid(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Configuration", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    password = tmp_path / "push.pw"
    password.write_text("not-a-real-password\n", encoding="utf-8")
    config = parse_config(block.replace("/etc/egov-agent/push.pw", str(password)).encode(), "README.md")
    assert {check.module for check in config.checks} >= {"wan_icmp", "smtp_starttls", "portal_content"}
    assert len(config.remote_write) == 1


def test_check_config_warns_about_weak_snmp_but_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "office: {org_id: 000.00.20.H49, name: X, level: province}\n"
        "modules:\n"
        "  router_v3: {kind: snmp, snmp: {include: [system], auth: {version: 3, username: mon,\n"
        "              security_level: authNoPriv, auth_protocol: MD5, password: {env: EGOV_TEST_SNMP_PW}}}}\n"
        "checks:\n"
        "  - {name: switch, module: if_mib, service: wan, targets: ['udp://127.0.0.1:11161'], interval: 1m}\n"
        "  - {name: router, module: router_v3, service: wan, targets: ['udp://127.0.0.1:11161'], interval: 1m}\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, "-m", "agent", "check-config", str(config)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "EGOV_TEST_SNMP_PW": "authpass-12345"})
    assert done.returncode == 0, done.stderr
    assert f"{config}: warning: built-in module if_mib: SNMP version 2 sends the community in clear text" in done.stderr
    assert f"{config}: warning: modules.router_v3: security_level authNoPriv does not encrypt" in done.stderr
    assert f"{config}: warning: modules.router_v3: auth_protocol MD5 is obsolete" in done.stderr
    assert "authpass-12345" not in done.stderr + done.stdout


def test_named_auths_reach_the_snmp_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.lifecycle import jobs_from_config

    monkeypatch.setenv("EGOV_TEST_SNMP_AUTH", "authpass-12345")
    monkeypatch.setenv("EGOV_TEST_SNMP_PRIV", "privpass-12345")
    config = parse_config(
        b"office: {org_id: 000.00.20.H49, name: X, level: province}\n"
        b"auths:\n"
        b"  office_router: {version: 3, username: mon, security_level: authPriv, auth_protocol: SHA256,\n"
        b"                  password: {env: EGOV_TEST_SNMP_AUTH}, priv_protocol: AES,\n"
        b"                  priv_password: {env: EGOV_TEST_SNMP_PRIV}}\n"
        b"checks:\n"
        b"  - {name: router, module: if_mib, auth: office_router, service: wan, targets: ['udp://127.0.0.1:1'],\n"
        b"     interval: 1m}\n"
        b"  - {name: switch, module: if_mib, service: wan, targets: ['udp://127.0.0.1:2'], interval: 1m}\n",
        "auths.yaml",
    )
    jobs = {job.check: job for job in jobs_from_config(config)}
    assert jobs["router"].settings.auth.version == 3
    assert jobs["router"].settings.auth.username == "mon"
    assert jobs["switch"].settings.auth == config.auths["public_v2"]
    assert jobs["router"].fingerprint != jobs["switch"].fingerprint
