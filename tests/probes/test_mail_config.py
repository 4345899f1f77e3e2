"""The mail kind's settings: refused at load when they could send a password in clear text or cannot work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import builtin_modules, parse_config
from agent.errors import ConfigError
from collectors import _mail_roundtrip, mail


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret-Passw0rd\n", encoding="utf-8")
    return path


def load(body: str) -> object:
    text = "office: {org_id: 000.00.20.H49, name: test, level: province}\nmodules:\n" + body
    return parse_config(text.encode(), "agent.yaml")


def errors_of(body: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(body)
    return caught.value.render()


def test_a_full_roundtrip_module_loads(secret: Path) -> None:
    config = load(f"""\
  mail_rt:
    kind: mail
    timeout: 30s
    mail:
      protocol: roundtrip
      tls_config: {{server_name: mail.example.gov.vn, min_version: TLS12}}
      auth: {{username: probe@example.gov.vn, password: {{file: {secret}}}}}
      roundtrip:
        imap_server: mail.example.gov.vn:993
        imap_tls: tls
        poll_interval: 500ms
        cleanup_after: 30m
""")
    settings = config.modules["mail_rt"].mail  # type: ignore[attr-defined]
    assert settings.roundtrip.cleanup_after == 1800
    assert settings.auth.password.reveal() == "s3cret-Passw0rd"
    assert "s3cret" not in repr(settings)


def test_auth_without_tls_is_refused_with_its_location(secret: Path) -> None:
    rendered = errors_of(f"""\
  smtp_plain:
    kind: mail
    mail:
      protocol: smtp
      tls: none
      auth: {{username: probe, password: {{file: {secret}}}}}
""")
    assert "agent.yaml: line 6: modules.smtp_plain.mail: auth with tls: none" in rendered
    assert "would send the password in clear text" in rendered


@pytest.mark.parametrize(("mail_body", "message"), [
    ("{protocol: roundtrip, roundtrip: {imap_server: 'mail:993'}}", "protocol roundtrip needs auth"),
    ("{protocol: roundtrip, auth: AUTH}", "protocol roundtrip needs a roundtrip block"),
    ("{protocol: smtp, roundtrip: {imap_server: 'mail:993'}}", "roundtrip settings apply to protocol roundtrip"),
    ("{protocol: roundtrip, auth: AUTH, roundtrip: {imap_server: 'mail:143', imap_tls: none}}",
     "imap_tls: none would send the probe mailbox's password in clear text"),
    ("{protocol: roundtrip, auth: AUTH, roundtrip: {imap_server: 'mail'}}", "has no port"),
    ("{protocol: imap, auth: {username: u, password: {file: SECRET}, mechanism: LOGIN}}",
     "auth.mechanism applies to SMTP only"),
    ("{protocol: smtp, auth: {username: u, password: inline}}", "never inline"),
    ("{protocol: smtp, auth: {username: \"a\\nb\", password: {file: SECRET}}}", "should match pattern"),
    ("{protocol: smtp, expect_greeting: '(unclosed'}", "invalid regular expression"),
    ("{protocol: smtp, source_ip_address: not-an-ip}", "is not an IP address"),
    ("{protocol: gopher}", "protocol"),
])
def test_bad_settings_fail_at_load(secret: Path, mail_body: str, message: str) -> None:
    body = mail_body.replace("AUTH", f"{{username: u, password: {{file: {secret}}}}}").replace("SECRET", str(secret))
    rendered = errors_of(f"  m:\n    kind: mail\n    mail: {body}\n")
    assert message in rendered
    assert "modules.m" in rendered


def test_poll_interval_must_fit_the_timeout(secret: Path) -> None:
    rendered = errors_of(f"""\
  m:
    kind: mail
    timeout: 2s
    mail:
      protocol: roundtrip
      auth: {{username: u, password: {{file: {secret}}}}}
      roundtrip: {{imap_server: "mail:993", poll_interval: 1s}}
""")
    assert "poll_interval must be at most a quarter of the module's timeout (2s)" in rendered


def test_builtin_modules() -> None:
    modules = builtin_modules()
    assert modules["smtp_starttls"].kind == modules["imap_starttls"].kind == "tcp"  # blackbox_exporter's own
    expected = {"smtps": ("smtp", "tls"), "imaps": ("imap", "tls"), "pop3_starttls": ("pop3", "starttls"),
                "pop3s": ("pop3", "tls")}
    for name, (protocol, tls) in expected.items():
        assert modules[name].kind == "mail"
        assert (modules[name].mail.protocol, modules[name].mail.tls) == (protocol, tls)
        assert modules[name].mail.auth is None


def test_canary_token_and_message() -> None:
    token = _mail_roundtrip.new_token(now=1_800_000_000.7)
    stamp, _, random_part = token.partition(".")
    assert stamp == "1800000000" and len(random_part) == 16
    assert _mail_roundtrip.new_token() != _mail_roundtrip.new_token()
    message = _mail_roundtrip.canary(token, "a@x.invalid", "b@x.invalid")
    assert message["Subject"] == f"egov-canary {token}"
    assert message["Message-ID"] == f"<egov-canary.{token}@egov-agent.invalid>"


def test_importing_the_collectors_does_not_import_aiosmtplib() -> None:
    code = "import sys, collectors; print(sorted(m for m in sys.modules if m.startswith('aiosmtplib')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30, check=True)
    assert done.stdout.decode().strip() == "[]"


def test_every_metric_is_declared_once() -> None:
    names = [spec.name for spec in mail.METRICS]
    assert len(names) == len(set(names))
    assert {"egov_mail_step_duration_seconds", "egov_mail_failed_step_info", "egov_mail_roundtrip_success",
            "egov_mail_roundtrip_delivery_seconds", "egov_mail_roundtrip_canaries_cleaned_total",
            "probe_ssl_earliest_cert_expiry", "probe_tls_version_info", "probe_failed_due_to_regex"} <= set(names)


def test_check_config_warns_about_unverified_servers_getting_the_password(secret: Path) -> None:
    config = load(f"""\
  m:
    kind: mail
    mail:
      protocol: imap
      tls: tls
      tls_config: {{insecure_skip_verify: true}}
      auth: {{username: u, password: {{file: {secret}}}}}
""")
    warnings = config.warnings()  # type: ignore[attr-defined]
    assert warnings == ["modules.m: mail: auth with tls_config.insecure_skip_verify sends the password to a server "
                        "whose certificate is not checked"]
