"""The mail kind against scripted loopback servers, for faults a real Postfix or Dovecot does not make.

Bad greetings, servers that never answer or never stop talking, STARTTLS withheld (credentials must never be
sent: the scripted server records every line it read), STARTTLS refused, TLS expected but not spoken.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.blackbox import samples_of
from fakes.tcp import Certs, ScriptedServer, make_certs

from agent.config import builtin_modules
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import mail, tcp

EHLO_NO_STARTTLS = b"250-mail.testbed.invalid\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret-Passw0rd\n", encoding="utf-8")
    return path


async def probe(settings: dict[str, Any], target: str, module_timeout: float = 2.0) -> ProbeResult:
    """One run through the real runner, as the scheduler does it."""
    return await run_job(Job("c", target, "m", "mail", 60.0, module_timeout, mail.SPEC,
                             mail.MailSettings.model_validate(settings)))


def failed_step(result: ProbeResult) -> str | None:
    failed = [dict(s.labels)["step"] for s in result.samples if s.name == "egov_mail_failed_step_info"]
    return failed[0] if failed else None


def credentials_seen(server: ScriptedServer) -> list[bytes]:
    """Lines the server read that carry or announce credentials."""
    words = (b"AUTH", b"LOGIN", b"USER", b"PASS", b"AUTHENTICATE")
    return [line for line in server.received if any(word in line.upper() for word in words)]


# --- greetings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "greeting", "error"), [
    ("smtp", b"554 5.3.2 too busy, go away\r\n", "smtp_greeting: greeting 554 5.3.2 too busy, go away"),
    ("smtp", b"HELLO there\r\n", "smtp_greeting: Malformed SMTP response line: HELLO there"),
    ("imap", b"HTTP/1.1 400 Bad Request\r\n", "imap_greeting: not an IMAP greeting: 'HTTP/1.1 400 Bad Request'"),
    ("imap", b"* BYE too many connections\r\n", "imap_greeting: the server refused the session: "
                                                 "'* BYE too many connections'"),
    ("pop3", b"-ERR [SYS/TEMP] try later\r\n", "pop3_greeting: not a POP3 greeting: '-ERR [SYS/TEMP] try later'"),
])
async def test_bad_greeting_is_protocol_error(protocol: str, greeting: bytes, error: str) -> None:
    async with ScriptedServer([("send", greeting), ("wait",)]) as server:
        result = await probe({"protocol": protocol}, server.target)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error.strip() == error
    assert failed_step(result) == f"{protocol}_greeting"


async def test_greeting_regex_mismatch() -> None:
    script = [("send", b"220 other.example ESMTP Exim\r\n"), ("wait",)]
    async with ScriptedServer(script) as server:
        result = await probe({"protocol": "smtp", "expect_greeting": r"^220 mail\.testbed\.invalid "},
                             server.target)
    assert result.outcome is Outcome.MISMATCH
    assert samples_of(result.samples)["probe_failed_due_to_regex"] == 1


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_silent_server_ends_at_the_deadline(protocol: str) -> None:
    async with ScriptedServer([("wait",)]) as server:
        started = time.monotonic()
        result = await probe({"protocol": protocol}, server.target, module_timeout=0.6)
        elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == f"{protocol}_greeting: no answer within the module's timeout"
    assert failed_step(result) == f"{protocol}_greeting"
    assert 0.5 < elapsed < 0.9


# --- STARTTLS withheld or refused: no credential ever leaves ----------------------------------------------------


async def test_smtp_without_starttls_never_sends_credentials(certs: Certs, secret: Path) -> None:
    script = [("send", b"220 mail.testbed.invalid ESMTP\r\n"), ("expect", b"EHLO"), ("send", EHLO_NO_STARTTLS),
              ("wait",)]
    settings = {"protocol": "smtp", "tls_config": {"ca_file": str(certs.ca_file)},
                "auth": {"username": "probe@testbed.invalid", "password": {"file": str(secret)}}}
    async with ScriptedServer(script) as server:
        result = await probe(settings, server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert result.error == "smtp_starttls: the server does not offer STARTTLS"
    assert failed_step(result) == "smtp_starttls"
    assert server.received == [b"EHLO egov-agent"]
    assert not credentials_seen(server)


async def test_smtp_starttls_refused(certs: Certs) -> None:
    script = [("send", b"220 mail.testbed.invalid ESMTP\r\n"), ("expect", b"EHLO"),
              ("send", b"250-mail.testbed.invalid\r\n250 STARTTLS\r\n"), ("expect", b"STARTTLS"),
              ("send", b"454 4.7.0 TLS not available due to local problem\r\n"), ("wait",)]
    async with ScriptedServer(script) as server:
        result = await probe({"protocol": "smtp", "tls_config": {"ca_file": str(certs.ca_file)}}, server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert "454" in result.error


async def test_imap_without_starttls_never_sends_credentials(certs: Certs, secret: Path) -> None:
    script = [("send", b"* OK ready\r\n"), ("expect", b"E001 CAPABILITY"),
              ("send", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nE001 OK done\r\n"), ("wait",)]
    settings = {"protocol": "imap", "tls_config": {"ca_file": str(certs.ca_file)},
                "auth": {"username": "probe", "password": {"file": str(secret)}}}
    async with ScriptedServer(script) as server:
        result = await probe(settings, server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert result.error == "imap_starttls: the server does not offer STARTTLS"
    assert server.received == [b"E001 CAPABILITY"]
    assert not credentials_seen(server)


async def test_pop3_without_stls_never_sends_credentials(certs: Certs, secret: Path) -> None:
    script = [("send", b"+OK POP3 ready\r\n"), ("expect", b"CAPA"), ("send", b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
              ("wait",)]
    settings = {"protocol": "pop3", "tls_config": {"ca_file": str(certs.ca_file)},
                "auth": {"username": "probe", "password": {"file": str(secret)}}}
    async with ScriptedServer(script) as server:
        result = await probe(settings, server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert result.error == "pop3_starttls: the server does not offer STLS (STARTTLS)"
    assert server.received == [b"CAPA"]
    assert not credentials_seen(server)


async def test_imap_starttls_then_login_over_tls(certs: Certs, secret: Path) -> None:
    script = [("send", b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"), ("expect", b"E001 STARTTLS"),
              ("send", b"E001 OK go\r\n"), ("starttls",), ("expect", b"E002 CAPABILITY"),
              ("send", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nE002 OK\r\n"), ("expect", b"E003 LOGIN"),
              ("send", b"E003 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"), ("wait",)]
    settings = {"protocol": "imap", "tls_config": {"ca_file": str(certs.ca_file)},
                "auth": {"username": 'pro"be', "password": {"file": str(secret)}}}
    async with ScriptedServer(script, starttls=certs.server_context()) as server:
        result = await probe(settings, server.target)
    assert result.outcome is Outcome.AUTH_FAILED, result.error
    assert result.error == "imap_login: login answered NO [AUTHENTICATIONFAILED] Authentication failed."
    # The quoted string escapes the quote; the password went only over TLS and is not in the run's log.
    assert server.received[2] == b'E003 LOGIN "pro\\"be" "s3cret-Passw0rd"'
    assert all("s3cret" not in line.message for line in result.lines)
    assert samples_of(result.samples)["probe_ssl_earliest_cert_expiry"] == certs.not_after.timestamp()


# --- TLS expected, streams that never end ---------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "step"), [("smtp", "smtp_greeting"), ("imap", "imap_tls"),
                                                ("pop3", "pop3_tls")])
async def test_implicit_tls_against_a_plain_server(certs: Certs, protocol: str, step: str) -> None:
    script = [("send", b"220 hello in clear text\r\n"), ("wait",)]
    async with ScriptedServer(script) as server:
        result = await probe({"protocol": protocol, "tls": "tls", "tls_config": {"ca_file": str(certs.ca_file)}},
                             server.target)
    assert result.outcome is Outcome.TLS_FAILED, result.error
    assert failed_step(result) == step


async def test_imap_endless_untagged_lines_are_capped() -> None:
    script = [("send", b"* OK ready\r\n"), ("endless_lines",)]
    async with ScriptedServer(script) as server:
        started = time.monotonic()
        result = await probe({"protocol": "imap", "tls": "starttls"}, server.target, module_timeout=5.0)
        elapsed = time.monotonic() - started
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "untagged lines" in result.error
    assert elapsed < 2.0


async def test_smtp_endless_multiline_reply_is_capped() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 flood ESMTP\r\n")
        await reader.readline()
        chunk = (b"250-" + b"x" * 70 + b"\r\n") * 1000
        try:
            while True:
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        result = await probe({"protocol": "smtp"}, f"127.0.0.1:{port}", module_timeout=5.0)
        elapsed = time.monotonic() - started
    finally:
        server.close()
        await server.wait_closed()
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error == "smtp_ehlo: the server sent more than 1048576 bytes"
    assert elapsed < 2.0


async def test_builtin_smtp_starttls_fails_when_starttls_is_not_offered(certs: Certs) -> None:
    # blackbox_exporter's tcp module: without `250-STARTTLS` after EHLO it never upgrades, and fails.
    script = [("send", b"220 mail.testbed.invalid ESMTP Postfix\r\n"), ("expect", b"EHLO"),
              ("send", EHLO_NO_STARTTLS), ("wait",)]
    settings = builtin_modules()["smtp_starttls"].tcp
    async with ScriptedServer(script) as server:
        result = await run_job(Job("c", server.target, "smtp_starttls", "mail", 60.0, 0.5, tcp.SPEC, settings))
    assert not result.success
    assert result.outcome is Outcome.TIMEOUT
    assert "^250-STARTTLS" in result.error
    assert not any(s.name.startswith("probe_ssl") for s in result.samples)
    assert server.received == [b"EHLO prober"]


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_garbage_from_the_server_is_an_outcome_never_a_crash(protocol: str) -> None:
    chunks = [random.Random(seed).randbytes(random.Random(seed).randint(0, 300)) for seed in range(12)]
    chunks += [b"\r\n" * 3, b"* OK [CAPABILITY " + b"A" * 5000 + b"\r\n", b"+OK\r\n{99999999}\r\n", b"220-\r\n" * 50,
               b"* OK ready\r\n* 1 FETCH {5}\r\nab", "* OK é\r\n".encode("latin-1")]
    for blob in chunks:
        async with ScriptedServer([("send", blob), ("close",)]) as server:
            result = await probe({"protocol": protocol, "tls": "starttls"}, server.target, module_timeout=0.5)
        assert result.outcome is not Outcome.ERROR, (blob, result.error)
        assert not result.success or protocol == "pop3", (blob, result.error)
