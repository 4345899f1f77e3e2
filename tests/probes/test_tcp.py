"""The tcp kind against real loopback servers: connect, banners, dialogues, STARTTLS, TLS, misbehaving peers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.blackbox import samples_of
from fakes.tcp import POP3_SCRIPT, SSH_SCRIPT, Certs, ScriptedServer, imap_script, make_certs, smtp_script
from pydantic import ValidationError
from testlib import free_port

from agent.config import builtin_modules
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import tcp
from collectors._dialogue import MAX_LINE, MAX_READ, expand
from collectors._tls import TlsConfig
from collectors.tcp import TcpSettings, check_tcp_target, split_host_port


async def probe(settings: TcpSettings | dict[str, Any], target: str, module_timeout: float = 2.0) -> ProbeResult:
    """One run through the real runner, as the scheduler does it."""
    if isinstance(settings, dict):
        settings = TcpSettings.model_validate(settings)
    return await run_job(Job("c", target, "m", "other", 60.0, module_timeout, tcp.SPEC, settings))


def builtin(name: str, ca_file: Path | None = None) -> TcpSettings:
    """A built-in module's settings, trusting `ca_file` when given."""
    settings: TcpSettings = builtin_modules()[name].tcp
    if ca_file is None:
        return settings
    return settings.model_copy(update={"tls_config": TlsConfig(ca_file=str(ca_file))})


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path)


# --- connect -------------------------------------------------------------------------------------------------


async def test_connect_success_records_blackbox_metrics() -> None:
    async with ScriptedServer([("wait",)]) as server:
        result = await probe({}, server.target)
    assert result.success, result.error
    values = samples_of(result.samples)
    assert values["probe_ip_protocol"] == 4
    assert values["probe_failed_due_to_regex"] == 0
    assert values["probe_failed_due_to_bytes"] == 0
    assert "probe_dns_lookup_time_seconds" in values
    assert not any(name.startswith("probe_ssl") for name in values)


async def test_ipv6_literal_target() -> None:
    async with ScriptedServer([("send", b"hello\r\n"), ("wait",)], host="::1") as server:
        result = await probe({"query_response": [{"expect": "^hello$"}]}, server.target)
    assert result.success, result.error
    assert samples_of(result.samples)["probe_ip_protocol"] == 6


async def test_connection_refused() -> None:
    result = await probe({}, f"127.0.0.1:{free_port()}")
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert "Connection refused" in result.error
    # blackbox 0.28 registers the query_response gauges only once connected
    assert "probe_failed_due_to_regex" not in samples_of(result.samples)


async def test_source_ip_address_is_used() -> None:
    async with ScriptedServer([("wait",)]) as server:
        result = await probe({"source_ip_address": "127.0.0.2"}, server.target)
    assert result.success, result.error
    assert server.peers == ["127.0.0.2"]


# --- query_response ------------------------------------------------------------------------------------------


async def test_ssh_banner_builtin() -> None:
    async with ScriptedServer(SSH_SCRIPT) as server:
        result = await probe(builtin("ssh_banner"), server.target)
    assert result.success, result.error
    assert server.received == [b"SSH-2.0-blackbox-ssh-check"]


async def test_expect_skips_lines_until_one_matches() -> None:
    script = [("send", b"* hello\r\n* more\r\n220 ready\r\n"), ("wait",)]
    async with ScriptedServer(script) as server:
        result = await probe({"query_response": [{"expect": r"^220 (\w+)$"}]}, server.target)
    assert result.success, result.error
    assert 'read line "* more"' in "\n".join(line.message for line in result.lines).replace("'", '"')


async def test_send_expands_groups_of_the_same_steps_expect() -> None:
    script = [("send", b"PING :abc123 extra\r\n"), ("expect", b"PONG"), ("send", b":srv 001 prober\r\n"),
              ("wait",)]
    steps = [
        {"send": "NICK prober"},
        {"expect": "PING :([^ ]+) (?P<rest>.*)", "send": "PONG ${1} $rest $$ ${9}x $1x"},
        {"send": "literal ${1}"},
        {"expect": "^:[^ ]+ 001"},
    ]
    async with ScriptedServer([("expect", b"NICK"), *script]) as server:
        result = await probe({"query_response": steps}, server.target)
    assert result.success, result.error
    assert server.received[:2] == [b"NICK prober", b"PONG abc123 extra $ x "]


async def test_expect_labels_become_probe_expect_info() -> None:
    script = [("send", b"220 mail.quangnam.gov.vn ESMTP Postfix (Debian)\r\n"), ("wait",)]
    steps = [{"expect": r"^220 (?P<host>[^ ]+) ESMTP (.+)$",
              "labels": [{"name": "banner_host", "value": "${host}"}, {"name": "software", "value": "$2"}]}]
    async with ScriptedServer(script) as server:
        result = await probe({"query_response": steps}, server.target)
    assert result.success, result.error
    info = [s for s in result.samples if s.name == "probe_expect_info"]
    assert [(dict(s.labels), s.value) for s in info] == [
        ({"banner_host": "mail.quangnam.gov.vn", "software": "Postfix (Debian)"}, 1.0)]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${1}", "ab"), ("$1", "ab"), ("$1x", ""), ("${1}x", "abx"), ("$name", "cd"), ("${name}!", "cd!"),
        ("$$1", "$1"), ("$", "$"), ("a$", "a$"), ("${1", "${1"), ("$-", "$-"), ("$01", ""), ("$0", "ab-cd"),
        ("$3", ""), ("$missing", ""), ("${2}", "cd"), ("x$ny", "x"),
    ],
)
def test_expand_follows_go_regexp_expand(template: str, expected: str) -> None:
    match = re.search(r"(\w+)-(?P<name>\w+)", "ab-cd")
    assert match is not None
    assert expand(template, match) == expected


async def test_peer_closing_before_the_expected_line_is_a_mismatch() -> None:
    async with ScriptedServer([("send", b"500 go away\r\n"), ("close",)]) as server:
        result = await probe({"query_response": [{"expect": "^220"}]}, server.target)
    assert result.outcome is Outcome.MISMATCH
    assert samples_of(result.samples)["probe_failed_due_to_regex"] == 1
    assert "closed before a line matched '^220'" in result.error


async def test_last_line_without_newline_still_counts() -> None:
    async with ScriptedServer([("send", b"220 ready"), ("close",)]) as server:
        result = await probe({"query_response": [{"expect": "^220 ready$"}]}, server.target)
    assert result.success, result.error


async def test_silent_server_times_out_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    async with ScriptedServer([("wait",)]) as server:
        started = loop.time()
        result = await probe({"query_response": [{"expect": "^220"}]}, server.target, module_timeout=0.5)
        elapsed = loop.time() - started
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == "no line matching '^220' within the timeout"
    assert 0.45 <= elapsed < 0.6
    assert samples_of(result.samples)["probe_failed_due_to_regex"] == 0


async def test_endless_line_is_cut_at_the_line_limit() -> None:
    loop = asyncio.get_running_loop()
    async with ScriptedServer([("endless_line",)]) as server:
        started = loop.time()
        with traced_peak() as peak:
            result = await probe({"query_response": [{"expect": "^220"}]}, server.target, module_timeout=5)
        elapsed = loop.time() - started
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error == f"a line longer than {MAX_LINE} bytes while waiting for '^220'"
    assert elapsed < 1.0
    assert peak[0] < 2 * 1024 * 1024, peak


async def test_endless_lines_stop_after_the_read_cap() -> None:
    async with ScriptedServer([("endless_lines",)]) as server:
        with traced_peak() as peak:
            result = await probe({"query_response": [{"expect": "^220"}]}, server.target, module_timeout=10)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error == f"read more than {MAX_READ} bytes without a line matching '^220'"
    assert len(result.lines) < 100
    assert peak[0] < 4 * 1024 * 1024, peak  # lines are dropped as read: the server's buffers dominate


@contextlib.contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Peak bytes Python allocated inside the block (server and probe together), in a one-item list."""
    peak = [0]
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


async def test_reset_by_peer_is_a_connection_failure() -> None:
    async with ScriptedServer([("send", b"* partial"), ("reset",)]) as server:
        result = await probe({"query_response": [{"expect": "^220"}]}, server.target)
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert "reset" in result.error.lower()


async def test_expect_bytes() -> None:
    async with ScriptedServer([("send", b"S"), ("wait",)]) as server:
        good = await probe({"query_response": [{"expect_bytes": "S"}]}, server.target)
        bad = await probe({"query_response": [{"expect_bytes": "N"}]}, server.target)
    async with ScriptedServer([("close",)]) as server:
        closed = await probe({"query_response": [{"expect_bytes": "S"}]}, server.target)
    assert good.success, good.error
    assert bad.outcome is Outcome.MISMATCH
    assert samples_of(bad.samples)["probe_failed_due_to_bytes"] == 1
    assert closed.outcome is Outcome.MISMATCH
    assert samples_of(closed.samples)["probe_failed_due_to_bytes"] == 0


# --- TLS -----------------------------------------------------------------------------------------------------


def assert_tls_metrics(result: ProbeResult, certs: Certs) -> None:
    values = samples_of(result.samples)
    assert values['probe_tls_version_info{version="TLS 1.3"}'] == 1
    assert values["probe_ssl_earliest_cert_expiry"] == certs.not_after.timestamp()
    assert values["probe_ssl_last_chain_expiry_timestamp_seconds"] == certs.not_after.timestamp()


async def test_smtp_starttls_builtin(certs: Certs) -> None:
    async with ScriptedServer(smtp_script(), starttls=certs.server_context()) as server:
        result = await probe(builtin("smtp_starttls", certs.ca_file), server.target)
    assert result.success, result.error
    assert server.received == [b"EHLO prober", b"STARTTLS", b"EHLO prober", b"QUIT"]
    assert_tls_metrics(result, certs)


async def test_smtp_starttls_builtin_refuses_an_unknown_ca(certs: Certs) -> None:
    async with ScriptedServer(smtp_script(), starttls=certs.server_context()) as server:
        result = await probe(builtin("smtp_starttls"), server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert "certificate verify failed" in result.error


async def test_smtp_without_starttls_offer_reads_until_the_deadline() -> None:
    script = [("send", b"220 mail.testbed.invalid ESMTP x\r\n"), ("expect", b"EHLO"),
              ("send", b"250-mail\r\n250 8BITMIME\r\n"), ("wait",)]
    async with ScriptedServer(script) as server:
        result = await probe(builtin("smtp_starttls"), server.target, module_timeout=0.5)
    # blackbox reads on until the deadline: the server keeps the connection open after its EHLO answer
    assert result.outcome is Outcome.TIMEOUT
    assert result.error == "no line matching '^250-STARTTLS' within the timeout"


async def test_imap_starttls_builtin(certs: Certs) -> None:
    async with ScriptedServer(imap_script(), starttls=certs.server_context()) as server:
        result = await probe(builtin("imap_starttls", certs.ca_file), server.target)
    assert result.success, result.error
    assert server.received == [b". STARTTLS", b". capability"]
    assert_tls_metrics(result, certs)


async def test_pop3s_banner_builtin(certs: Certs) -> None:
    async with ScriptedServer(POP3_SCRIPT, tls=certs.server_context()) as server:
        result = await probe(builtin("pop3s_banner", certs.ca_file), server.target)
    assert result.success, result.error
    assert_tls_metrics(result, certs)


async def test_tls_server_name_checks(certs: Certs) -> None:
    async with ScriptedServer(POP3_SCRIPT, tls=certs.server_context()) as server:
        wrong = await probe({"tls": True, "tls_config": {"ca_file": str(certs.ca_file),
                                                         "server_name": "mail.example.vn"}}, server.target)
        # ip4 first: /etc/hosts answers, the machine's DNS server (outside loopback) is never asked
        by_name = await probe({"tls": True, "tls_config": {"ca_file": str(certs.ca_file)},
                               "preferred_ip_protocol": "ip4"}, f"localhost:{server.port}")
        skip = await probe({"tls": True, "tls_config": {"insecure_skip_verify": True}}, server.target)
    assert wrong.outcome is Outcome.TLS_FAILED
    assert "mail.example.vn" in wrong.error
    assert by_name.success, by_name.error
    assert skip.success, skip.error


async def test_expired_certificate_fails_tls(tmp_path: Path) -> None:
    expired = make_certs(tmp_path, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    async with ScriptedServer(POP3_SCRIPT, tls=expired.server_context()) as server:
        result = await probe({"tls": True, "tls_config": {"ca_file": str(expired.ca_file)}}, server.target)
    assert result.outcome is Outcome.TLS_FAILED
    assert "expired" in result.error


async def test_tls_against_a_silent_plain_server_times_out() -> None:
    async with ScriptedServer([("wait",)]) as server:
        result = await probe({"tls": True}, server.target, module_timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT
    assert result.error.startswith("TLS handshake with 127.0.0.1 not finished")


async def test_starttls_refused_by_a_closing_server(certs: Certs) -> None:
    script = [("send", b"220 x ESMTP y\r\n"), ("expect", b"STARTTLS"), ("send", b"220 go\r\n"), ("close",)]
    steps = [{"expect": "^220"}, {"send": "STARTTLS\r"}, {"expect": "^220"}, {"starttls": True}]
    async with ScriptedServer(script) as server:
        result = await probe({"query_response": steps, "tls_config": {"ca_file": str(certs.ca_file)}},
                             server.target)
    assert result.outcome is Outcome.TLS_FAILED


# --- config and targets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [("127.0.0.1:25", ("127.0.0.1", 25)), ("mail.quangnam.gov.vn:587", ("mail.quangnam.gov.vn", 587)),
     ("[::1]:22", ("::1", 22)), ("[2001:db8::1]:65535", ("2001:db8::1", 65535))],
)
def test_split_host_port(target: str, expected: tuple[str, int]) -> None:
    assert split_host_port(target) == expected
    check_tcp_target(target, TcpSettings())


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mail.example.vn", "has no port: write host:port"),
        ("mail.example.vn:0", "has an invalid port '0'"),
        ("mail.example.vn:70000", "has an invalid port '70000'"),
        ("mail.example.vn:smtp", "has an invalid port 'smtp'"),
        ("::1:22", "is not host:port (write an IPv6 address as [2001:db8::1]:port)"),
        ("smtp://mail.example.vn:25", "is not host:port"),
        ("[mail.example.vn]:25", "is not [IPv6 address]:port"),
        (":25", "has no valid host name"),
        ("a b:25", "has no valid host name"),
    ],
)
def test_bad_targets_are_refused(target: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_tcp_target(target, TcpSettings())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query_response": [{"expect": "^+OK"}]}, "invalid regular expression '^+OK': nothing to repeat"),
        ({"query_response": [{"expect": "a", "expect_bytes": "b"}]}, "expect and expect_bytes are mutually exclusive"),
        ({"tls": True, "query_response": [{"starttls": True}]}, "a starttls step needs a plain connection"),
        ({"query_response": [{"starttls": True}, {"starttls": True}]}, "only one step can use starttls"),
        ({"source_ip_address": "office-router"}, "'office-router' is not an IP address"),
        ({"preferred_ip_protocol": "ip5"}, "Input should be 'ip4' or 'ip6'"),
        ({"query_response": [{"send": "x", "labels": [{"name": "v", "value": "$1"}]}]}, "labels need an expect"),
        ({"query_response": [{"expect": "x", "labels": [{"name": "target", "value": "$1"}]}]}, "set by the agent"),
        ({"query_response": [{"expect": "x", "labels": [{"name": "v", "value": "a"}, {"name": "v", "value": "b"}]}]},
         "label names must be unique"),
        ({"query_response": [{"send": "x", "bogus": 1}]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_at_load(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        TcpSettings.model_validate(body)


def test_builtin_modules_have_blackbox_definitions() -> None:
    modules = builtin_modules()
    assert modules["tcp_connect"].tcp == TcpSettings()
    smtp = [step.model_dump(mode="json", exclude_defaults=True) for step in modules["smtp_starttls"].tcp.query_response]
    assert smtp == [
        {"expect": "^220 ([^ ]+) ESMTP (.+)$"}, {"send": "EHLO prober\r"}, {"expect": "^250-STARTTLS"},
        {"send": "STARTTLS\r"}, {"expect": "^220"}, {"starttls": True}, {"send": "EHLO prober\r"},
        {"expect": "^250-AUTH"}, {"send": "QUIT\r"},
    ]
    assert modules["smtp_starttls"].timeout == modules["imap_starttls"].timeout == 5
    assert modules["pop3s_banner"].tcp.tls
    assert modules["pop3s_banner"].tcp.query_response[0].expect.pattern == r"^\+OK"


@pytest.mark.slow
async def test_probe_command_line() -> None:
    async with ScriptedServer(SSH_SCRIPT) as server:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent", "probe", "--module", "ssh_banner", server.target],
            capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "probe_success{" in done.stdout and re.search(r"^probe_success\{.*\} 1$", done.stdout, re.M)
    assert re.search(r"^probe_failed_due_to_regex\{.*\} 0$", done.stdout, re.M)
