"""The mail kind against Debian's real Postfix and Dovecot (tests/fakes/mailstack.py) on loopback.

SMTP on the plain, submission and SMTPS ports, IMAP and POP3 with STARTTLS and implicit TLS, wrong passwords, an
untrusted certificate, the round trip (delivery, deletion, leftovers of earlier runs), the `probe` command line.
Each failed login comes from its own loopback address: Dovecot's anvil slows repeated failures from one address.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fakes.blackbox import Blackbox, parse_samples, samples_of
from fakes.mailstack import MailStack
from testlib import AgentProcess, egov_agent_command, free_port, wait_for

from agent.config import builtin_modules
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import _mail_roundtrip, _tls, mail

pytestmark = pytest.mark.slow

PROBE = "probe@testbed.invalid"
ALICE = "alice@testbed.invalid"


@pytest.fixture(scope="module")
def stack() -> Iterator[MailStack]:
    with MailStack() as running:
        yield running


@pytest.fixture(scope="module")
def secrets_dir(stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "probe").write_text(stack.password(PROBE) + "\n", encoding="utf-8")
    (directory / "wrong").write_text("not-the-password\n", encoding="utf-8")
    return directory


def auth(secrets_dir: Path, secret: str = "probe", user: str = PROBE) -> dict[str, Any]:
    return {"username": user, "password": {"file": str(secrets_dir / secret)}}


async def probe(settings: dict[str, Any], target: str, module_timeout: float = 5.0,
                check: str = "c") -> ProbeResult:
    """One run through the real runner, as the scheduler does it."""
    return await run_job(Job(check, target, "m", "mail", 60.0, module_timeout, mail.SPEC,
                             mail.MailSettings.model_validate(settings)))


def steps_of(result: ProbeResult) -> list[str]:
    return [dict(s.labels)["step"] for s in result.samples if s.name == "egov_mail_step_duration_seconds"]


def failed_step(result: ProbeResult) -> str | None:
    failed = [dict(s.labels)["step"] for s in result.samples if s.name == "egov_mail_failed_step_info"]
    assert len(failed) <= 1
    return failed[0] if failed else None


def assert_no_secret(result: ProbeResult, stack: MailStack) -> None:
    text = "\n".join([result.error, *(line.message for line in result.lines), *map(str, result.samples)])
    for password in stack.users.values():
        assert password not in text


# --- SMTP ------------------------------------------------------------------------------------------------------


async def test_submission_starttls_and_auth(stack: MailStack, secrets_dir: Path) -> None:
    settings = {"protocol": "smtp", "tls_config": {"ca_file": str(stack.cert_file)}, "auth": auth(secrets_dir),
                "expect_greeting": "^220 mail.testbed.invalid ESMTP"}
    result = await probe(settings, stack.target("submission"))
    assert result.success, result.error
    assert steps_of(result) == ["smtp_connect", "smtp_greeting", "smtp_ehlo", "smtp_starttls", "smtp_auth"]
    values = samples_of(result.samples)
    assert values["probe_ssl_earliest_cert_expiry"] == stack.cert_not_after
    assert values["probe_ssl_last_chain_expiry_timestamp_seconds"] == stack.cert_not_after
    assert values["probe_failed_due_to_regex"] == 0
    assert any(key.startswith("probe_tls_version_info{version=\"TLS 1.") for key in values)
    assert failed_step(result) is None
    assert_no_secret(result, stack)


async def test_smtps_implicit_tls_and_auth_login(stack: MailStack, secrets_dir: Path) -> None:
    settings = {"protocol": "smtp", "tls": "tls", "tls_config": {"ca_file": str(stack.cert_file)},
                "auth": {**auth(secrets_dir), "mechanism": "LOGIN"}}
    result = await probe(settings, stack.target("smtps"))
    assert result.success, result.error
    assert steps_of(result) == ["smtp_connect", "smtp_greeting", "smtp_ehlo", "smtp_auth"]
    assert samples_of(result.samples)["probe_ssl_earliest_cert_expiry"] == stack.cert_not_after


async def test_port_25_offers_starttls_but_no_auth(stack: MailStack, secrets_dir: Path) -> None:
    tls = {"ca_file": str(stack.cert_file)}
    plain = await probe({"protocol": "smtp", "tls_config": tls}, stack.target("smtp"))
    assert plain.success, plain.error
    with_auth = await probe({"protocol": "smtp", "tls_config": tls, "auth": auth(secrets_dir)}, stack.target("smtp"))
    assert with_auth.outcome is Outcome.AUTH_FAILED
    assert with_auth.error == "smtp_auth: the server offers no AUTH"
    assert failed_step(with_auth) == "smtp_auth"


async def test_wrong_password_is_auth_failed(stack: MailStack, secrets_dir: Path) -> None:
    settings = {"protocol": "smtp", "tls_config": {"ca_file": str(stack.cert_file)},
                "auth": auth(secrets_dir, "wrong"), "source_ip_address": "127.0.0.21"}
    result = await probe(settings, stack.target("submission"))
    assert result.outcome is Outcome.AUTH_FAILED
    assert result.error.startswith("smtp_auth: authentication refused: 535 ")
    assert failed_step(result) == "smtp_auth"
    assert_no_secret(result, stack)
    # One attempt only, from our address: Postfix logged exactly one failed PLAIN authentication for it.
    wanted = "SASL PLAIN authentication failed"
    assert _wait_log(stack.postfix_log, wanted).count(wanted) == 1
    assert "SASL LOGIN authentication failed" not in stack.postfix_log.read_text()


async def test_untrusted_certificate_is_tls_failed(stack: MailStack, secrets_dir: Path) -> None:
    result = await probe({"protocol": "smtp", "auth": auth(secrets_dir)}, stack.target("submission"))
    assert result.outcome is Outcome.TLS_FAILED
    assert "certificate verify failed" in result.error
    assert failed_step(result) == "smtp_starttls"


# --- IMAP and POP3 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "listener", "tls", "steps"), [
    ("imap", "imap", "starttls", ["imap_connect", "imap_greeting", "imap_starttls", "imap_login", "imap_select"]),
    ("imap", "imaps", "tls", ["imap_connect", "imap_tls", "imap_greeting", "imap_login", "imap_select"]),
    ("pop3", "pop3", "starttls", ["pop3_connect", "pop3_greeting", "pop3_starttls", "pop3_login", "pop3_stat"]),
    ("pop3", "pop3s", "tls", ["pop3_connect", "pop3_tls", "pop3_greeting", "pop3_login", "pop3_stat"]),
])
async def test_imap_and_pop3_login(stack: MailStack, secrets_dir: Path, protocol: str, listener: str, tls: str,
                                   steps: list[str]) -> None:
    settings = {"protocol": protocol, "tls": tls, "tls_config": {"ca_file": str(stack.cert_file)},
                "auth": auth(secrets_dir)}
    result = await probe(settings, stack.target(listener))
    assert result.success, result.error
    assert steps_of(result) == steps
    assert samples_of(result.samples)["probe_ssl_earliest_cert_expiry"] == stack.cert_not_after
    assert_no_secret(result, stack)


@pytest.mark.parametrize(("protocol", "listener", "source"), [("imap", "imap", "127.0.0.22"),
                                                               ("pop3", "pop3s", "127.0.0.23")])
async def test_imap_and_pop3_wrong_password(stack: MailStack, secrets_dir: Path, protocol: str, listener: str,
                                            source: str) -> None:
    settings = {"protocol": protocol, "tls": "tls" if listener.endswith("s") else "starttls",
                "tls_config": {"ca_file": str(stack.cert_file)}, "auth": auth(secrets_dir, "wrong"),
                "source_ip_address": source}
    result = await probe(settings, stack.target(listener))
    assert result.outcome is Outcome.AUTH_FAILED, result.error
    assert failed_step(result) == f"{protocol}_login"
    assert_no_secret(result, stack)


async def test_builtin_pop3_starttls_without_config(stack: MailStack, monkeypatch: pytest.MonkeyPatch) -> None:
    # The built-in module verifies against the system's CAs: point them at the stack's certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(stack.cert_file))
    _tls.client_context.cache_clear()
    try:
        result = await run_job(Job("c", stack.target("pop3"), "pop3_starttls", "mail", 60.0, 10.0, mail.SPEC,
                                   builtin_modules()["pop3_starttls"].mail))
    finally:
        _tls.client_context.cache_clear()
    assert result.success, result.error
    assert steps_of(result) == ["pop3_connect", "pop3_greeting", "pop3_starttls"]


# --- round trip ------------------------------------------------------------------------------------------------


def roundtrip(stack: MailStack, secrets_dir: Path, **trip: Any) -> dict[str, Any]:
    return {"protocol": "roundtrip", "tls_config": {"ca_file": str(stack.cert_file)}, "auth": auth(secrets_dir),
            "roundtrip": {"imap_server": stack.target("imap"), **trip}}


async def test_roundtrip_delivers_and_deletes_the_canary(stack: MailStack, secrets_dir: Path) -> None:
    before = stack.messages(PROBE)
    started = time.monotonic()
    result = await probe(roundtrip(stack, secrets_dir), stack.target("submission"))
    elapsed = time.monotonic() - started
    assert result.success, result.error
    values = samples_of(result.samples)
    assert values["egov_mail_roundtrip_success"] == 1
    assert 0 < values["egov_mail_roundtrip_delivery_seconds"] < elapsed
    assert steps_of(result) == ["imap_connect", "imap_greeting", "imap_starttls", "imap_login", "imap_select",
                                "cleanup", "smtp_connect", "smtp_greeting", "smtp_ehlo", "smtp_starttls",
                                "smtp_auth", "smtp_send", "delivery", "delete"]
    # The certificate metrics describe the submission server only (one series each).
    assert values["probe_ssl_earliest_cert_expiry"] == stack.cert_not_after
    assert stack.messages(PROBE) == before  # delivered (Postfix logged it) and deleted
    log = _wait_log(stack.postfix_log, "status=sent")
    assert "to=<probe@testbed.invalid>" in log
    assert_no_secret(result, stack)


async def test_roundtrip_cleans_only_old_leftover_canaries(stack: MailStack, secrets_dir: Path) -> None:
    now = time.time()
    old = [_leftover(stack, f"{int(now) - 7200}.{i:016x}", now - 7200) for i in range(3)]
    young = _leftover(stack, f"{int(now) - 60}.{7:016x}", now - 60)
    other = _leftover(stack, None, now - 7200)  # an ordinary old message in the probe mailbox stays
    check = "leftovers"
    first = await probe(roundtrip(stack, secrets_dir, cleanup_after="30m"), stack.target("submission"), check=check)
    assert first.success, first.error
    assert samples_of(first.samples)["egov_mail_roundtrip_canaries_cleaned_total"] == 3
    names = {path.name.split(":")[0] for path in stack.messages(PROBE)}
    assert not any(path.name in names for path in old)
    assert young.name in names and other.name in names
    # The counter keeps its value across runs; a second run finds nothing old.
    second = await probe(roundtrip(stack, secrets_dir, cleanup_after="30m"), stack.target("submission"),
                         check=check)
    assert samples_of(second.samples)["egov_mail_roundtrip_canaries_cleaned_total"] == 3
    # With a shorter age the young one goes too.
    third = await probe(roundtrip(stack, secrets_dir, cleanup_after="30s"), stack.target("submission"), check=check)
    assert samples_of(third.samples)["egov_mail_roundtrip_canaries_cleaned_total"] == 4
    assert [path.name.split(":")[0] for path in stack.messages(PROBE)] == [other.name]
    other.unlink(missing_ok=True)
    for path in stack.messages(PROBE):
        path.unlink()


async def test_roundtrip_times_out_when_the_canary_never_arrives(stack: MailStack, secrets_dir: Path) -> None:
    # Delivered to alice, looked for in the probe mailbox: never found; the run ends at its deadline.
    settings = roundtrip(stack, secrets_dir, recipient=ALICE, poll_interval="100ms")
    started = time.monotonic()
    result = await probe(settings, stack.target("submission"), module_timeout=1.5)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == "delivery: no answer within the module's timeout"
    assert failed_step(result) == "delivery"
    assert 1.4 < elapsed < 1.9
    values = samples_of(result.samples)
    assert values["egov_mail_roundtrip_success"] == 0
    assert "egov_mail_roundtrip_delivery_seconds" not in values


async def test_roundtrip_imap_down(stack: MailStack, secrets_dir: Path) -> None:
    settings = roundtrip(stack, secrets_dir)
    settings["roundtrip"]["imap_server"] = f"127.0.0.1:{free_port()}"
    result = await probe(settings, stack.target("submission"))
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert failed_step(result) == "imap_connect"
    assert samples_of(result.samples)["egov_mail_roundtrip_success"] == 0


# --- the command line and blackbox_exporter --------------------------------------------------------------------


def test_cli_builtin_smtp_starttls_and_blackbox_agree(stack: MailStack, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "SSL_CERT_FILE": str(stack.cert_file)}
    ours = subprocess.run([*egov_agent_command(), "probe", "--module", "smtp_starttls", stack.target("submission")],
                          capture_output=True, timeout=30, env=env)
    assert ours.returncode == 0, ours.stderr.decode()
    our_samples = parse_samples(ours.stdout.decode().splitlines(), drop_labels=("check", "module", "service",
                                                                                "target", "org_id", "level"))
    # blackbox_exporter's example smtp_starttls, same script, same trust store
    module = builtin_modules()["smtp_starttls"].tcp
    script = [{key: (value.pattern if hasattr(value, "pattern") else value) for key, value in step.items() if value}
              for step in (s.model_dump() for s in module.query_response)]
    monkeypatch.setenv("SSL_CERT_FILE", str(stack.cert_file))
    tcp = {"query_response": script, "preferred_ip_protocol": "ip4"}
    blackbox = Blackbox(tmp_path, {"smtp_starttls": {"prober": "tcp", "timeout": "5s", "tcp": tcp}})
    blackbox.start()
    try:
        theirs = blackbox.probe("smtp_starttls", stack.target("submission"))
    finally:
        blackbox.stop()
    assert theirs["probe_success"] == our_samples["probe_success"] == 1
    assert theirs["probe_ssl_earliest_cert_expiry"] == our_samples["probe_ssl_earliest_cert_expiry"] \
        == stack.cert_not_after


def test_cli_mail_module_from_config(stack: MailStack, secrets_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"""\
office: {{org_id: 000.00.20.H49, name: test, level: province}}
modules:
  submission:
    kind: mail
    timeout: 5s
    mail:
      protocol: smtp
      tls_config: {{ca_file: {stack.cert_file}}}
      auth: {{username: {PROBE}, password: {{file: {secrets_dir / 'probe'}}}}}
""", encoding="utf-8")
    done = subprocess.run([*egov_agent_command(), "probe", "--config", str(config), "--module", "submission",
                           stack.target("submission"), "--debug"], capture_output=True, timeout=30)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, err
    assert 'egov_mail_step_duration_seconds{' in out and 'step="smtp_auth"' in out
    assert "smtp_auth" in err  # the debug log names the steps
    assert stack.password(PROBE) not in out + err


def _leftover(stack: MailStack, token: str | None, mtime: float) -> Path:
    """A message written straight into the probe Maildir, as a crashed run would leave it; mtime = arrival."""
    box = stack.maildir(PROBE)
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
        os.chown(box / sub, 8, 8)
        os.chown(box, 8, 8)
    message = EmailMessage()
    message["From"] = message["To"] = PROBE
    message["Subject"] = f"{_mail_roundtrip.SUBJECT_PREFIX} {token}" if token else "an ordinary message"
    message.set_content("left over\n")
    path = box / "new" / f"{int(mtime)}.M{time.monotonic_ns()}P{os.getpid()}.leftover"
    path.write_bytes(message.as_bytes())
    os.chown(path, 8, 8)
    os.utime(path, (mtime, mtime))
    return path


def _wait_log(path: Path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text(errors="replace")
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.05)


def test_agent_runs_the_round_trip_and_exports_it(stack: MailStack, secrets_dir: Path,
                                                  start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent(f"""\
office: {{org_id: 000.00.20.H49, name: test, level: province}}
modules:
  rt:
    kind: mail
    timeout: 1500ms
    mail:
      protocol: roundtrip
      tls_config: {{ca_file: {stack.cert_file}}}
      auth: {{username: {PROBE}, password: {{file: {secrets_dir / 'probe'}}}}}
      roundtrip: {{imap_server: "{stack.target('imap')}"}}
checks:
  - {{name: mail-roundtrip, module: rt, service: mail, targets: ["{stack.target('submission')}"], interval: 2s}}
""")

    def exported() -> dict[str, float] | None:
        samples = parse_samples(agent.metrics().splitlines(), drop_labels=("org_id", "level", "module", "target"))
        key = 'egov_mail_roundtrip_success{check="mail-roundtrip",service="mail"}'
        return samples if key in samples else None

    samples = wait_for(exported, timeout=20)
    assert isinstance(samples, dict)
    assert samples['egov_mail_roundtrip_success{check="mail-roundtrip",service="mail"}'] == 1
    assert samples['probe_success{check="mail-roundtrip",service="mail"}'] == 1
    assert 0 < samples['egov_mail_roundtrip_delivery_seconds{check="mail-roundtrip",service="mail"}'] < 1.5
    assert stack.password(PROBE) not in agent.log()
