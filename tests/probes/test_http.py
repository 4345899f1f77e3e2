"""The http kind against real aiohttp servers on 127.0.0.1/127.0.0.2 with trustme certificates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.http import EXPIRED_NOT_AFTER, LAST_MODIFIED_EPOCH, PASSWORD, SESSION, USERNAME, Certs, Servers, Site
from pydantic import TypeAdapter
from testlib import free_port

from agent.config import module_model
from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import COLLECTORS

SPEC = COLLECTORS["http"]
PHASES = ("resolve", "connect", "tls", "processing", "transfer")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    running = Servers()
    yield running
    running.close()


@pytest.fixture(scope="module")
def plain(servers: Servers) -> Site:
    return servers.site()


@pytest.fixture(scope="module")
def other_host(servers: Servers) -> Site:
    return servers.site("127.0.0.2")


@pytest.fixture(scope="module")
def tls_sites(servers: Servers, certs: Certs) -> dict[str, Site]:
    return {which: servers.site(tls=certs.server_context(which))
            for which in ("valid", "expired", "wrong_host", "self_signed")}


def settings(**http: Any) -> Any:
    """The module's http settings as the config loader builds them (defaults, secrets, regexes)."""
    module = TypeAdapter(module_model()).validate_python({"kind": "http", "timeout": "5s", "http": http})
    return module.http


async def probe(target: str, seconds: float = 3.0, **http: Any) -> tuple[ProbeResult, dict[str, float]]:
    result = await run_job(Job("web", target, "m", "portal", seconds + 1, seconds, SPEC, settings(**http)))
    return result, values(result)


def values(result: ProbeResult) -> dict[str, float]:
    """Samples by name, label values appended in braces: {'probe_http_duration_seconds{tls}': ...}."""
    return {s.name + ("{" + ",".join(v for _, v in s.labels) + "}" if s.labels else ""): s.value
            for s in result.samples}


def ca(certs: Certs) -> dict[str, Any]:
    return {"tls_config": {"ca_file": str(certs.ca_file)}}


async def test_plain_200_reports_blackbox_metrics(plain: Site) -> None:
    result, got = await probe(plain.url + "/")
    assert result.success, result.error
    assert got["probe_http_status_code"] == 200
    assert got["probe_http_version"] == 1.1
    assert got["probe_http_ssl"] == 0
    assert got["probe_http_redirects"] == 0
    assert got["probe_failed_due_to_regex"] == 0
    body_length = len("<html><title>Cổng thông tin điện tử</title>Xin chào</html>".encode())
    assert got["probe_http_content_length"] == got["probe_http_uncompressed_body_length"] == body_length
    assert got["probe_http_last_modified_timestamp_seconds"] == LAST_MODIFIED_EPOCH
    assert got["probe_ip_protocol"] == 4
    assert {f"probe_http_duration_seconds{{{p}}}" for p in PHASES} <= got.keys()
    assert got["probe_http_duration_seconds{tls}"] == 0
    for phase in ("connect", "processing", "transfer"):
        assert 0 < got[f"probe_http_duration_seconds{{{phase}}}"] < 1
    assert not any(name.startswith("probe_ssl") for name in got)
    request = plain.seen[-1]
    assert request["headers"]["User-Agent"].startswith("egov-agent/")
    assert "Accept-Encoding" not in request["headers"]


async def test_every_declared_metric_and_nothing_else(plain: Site) -> None:
    result, _ = await probe(plain.url + "/json", extract=[{"name": "n", "json_path": "data.items[0].count"}])
    assert {s.name for s in result.samples} <= set(SPEC.catalog)


@pytest.mark.parametrize(("path", "http", "outcome", "status"), [
    ("/status/404", {}, Outcome.MISMATCH, 404),
    ("/status/404", {"valid_status_codes": [404, 410]}, Outcome.SUCCESS, 404),
    ("/status/200", {"valid_status_codes": [204]}, Outcome.MISMATCH, 200),
    ("/status/503", {}, Outcome.MISMATCH, 503),
    ("/status/204", {}, Outcome.SUCCESS, 204),
], ids=["404", "404 allowed", "200 not listed", "503", "204"])
async def test_status_codes(plain: Site, path: str, http: dict[str, Any], outcome: Outcome, status: int) -> None:
    result, got = await probe(plain.url + path, **http)
    assert result.outcome is outcome, result.error
    assert got["probe_http_status_code"] == status


async def test_redirect_chain_is_followed_and_counted(plain: Site) -> None:
    result, got = await probe(plain.url + "/redirect/3")
    assert result.success, result.error
    assert (got["probe_http_redirects"], got["probe_http_status_code"]) == (3, 200)
    assert [r["path"] for r in plain.seen[-4:]] == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]


async def test_redirect_not_followed_counts_one_like_blackbox(plain: Site) -> None:
    result, got = await probe(plain.url + "/redirect/3", follow_redirects=False)
    assert result.outcome is Outcome.MISMATCH
    assert (got["probe_http_redirects"], got["probe_http_status_code"]) == (1, 302)
    result, _ = await probe(plain.url + "/redirect/3", follow_redirects=False, valid_status_codes=[302])
    assert result.success, result.error


async def test_redirect_loop_fails_after_ten(plain: Site) -> None:
    before = len(plain.seen)
    result, got = await probe(plain.url + "/loop")
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert result.error == "more than 10 redirects (a loop)"
    assert (got["probe_http_redirects"], got["probe_http_status_code"]) == (11, 302)
    assert len(plain.seen) - before == 11


async def test_redirect_to_other_scheme_is_refused(plain: Site) -> None:
    result, _ = await probe(plain.url + "/redirect-to?url=ftp://127.0.0.1/x")
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "non-http(s)" in result.error


@pytest.mark.parametrize("credentials", [
    {"basic_auth": {"username": "canbo", "password": {"env": "EGOV_TEST_HTTP_PASSWORD"}}},
    {"bearer_token": {"env": "EGOV_TEST_HTTP_PASSWORD"}},
], ids=["basic_auth", "bearer_token"])
async def test_credentials_go_to_the_target_only_never_cross_host(
    plain: Site, other_host: Site, credentials: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EGOV_TEST_HTTP_PASSWORD", "bí-mật")
    hop = f"{plain.url}/redirect-to?url={other_host.url}/echo"
    result, got = await probe(hop, **credentials)
    assert result.success, result.error
    assert got["probe_http_redirects"] == 1
    sent_to_target = plain.seen[-1]["headers"]
    sent_elsewhere = other_host.seen[-1]["headers"]
    assert sent_to_target["Authorization"].split()[0] in ("Basic", "Bearer")
    assert "Authorization" not in sent_elsewhere
    # back on the target's host (same host, other path) it is sent again
    back = f"{plain.url}/redirect-to?url={other_host.url}/redirect-to%3Furl%3D{plain.url}/echo"
    result, got = await probe(back, **credentials)
    assert result.success, result.error
    assert got["probe_http_redirects"] == 2
    assert "Authorization" in plain.seen[-1]["headers"]
    assert "bí-mật" not in " ".join(line.message for line in result.lines) + result.error


async def test_post_with_body_and_headers(plain: Site) -> None:
    result, _ = await probe(plain.url + "/echo", method="post", body='{"ping": 1}',
                            headers={"Content-Type": "application/json", "X-Office": "000.00.20.H49"})
    assert result.success, result.error
    request = plain.seen[-1]
    assert request["method"] == "POST"
    assert request["body"] == '{"ping": 1}'
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Office"] == "000.00.20.H49"


async def test_303_after_post_turns_into_get(plain: Site) -> None:
    result, _ = await probe(f"{plain.url}/redirect-to?code=303&url=/echo", method="POST", body="x=1")
    assert result.success, result.error
    assert [(r["method"], r["path"], r["body"]) for r in plain.seen[-2:]] == [
        ("POST", "/redirect-to?code=303&url=/echo", "x=1"), ("GET", "/echo", "")]


async def test_body_regexes(plain: Site) -> None:
    result, got = await probe(plain.url + "/", fail_if_body_not_matches_regexp=["Cổng thông tin"],
                              fail_if_body_matches_regexp=["(?i)lỗi|error"])
    assert result.success, result.error
    assert got["probe_failed_due_to_regex"] == 0
    result, got = await probe(plain.url + "/", fail_if_body_matches_regexp=["Xin chào"])
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "body matches 'Xin chào'"
    assert got["probe_failed_due_to_regex"] == 1
    result, got = await probe(plain.url + "/", fail_if_body_not_matches_regexp=["thủ tục hành chính"])
    assert result.outcome is Outcome.MISMATCH
    assert got["probe_failed_due_to_regex"] == 1


async def test_header_matchers(plain: Site) -> None:
    deny = {"header": "x-frame-options", "regexp": "^(DENY|SAMEORIGIN)$"}
    result, _ = await probe(plain.url + "/", fail_if_header_not_matches=[deny],
                            fail_if_header_matches=[{"header": "Set-Cookie", "regexp": ".*", "allow_missing": True}])
    assert result.success, result.error
    result, got = await probe(plain.url + "/", fail_if_header_matches=[{"header": "X-Frame-Options", "regexp": "DENY"}])
    assert (result.outcome, got["probe_failed_due_to_regex"]) == (Outcome.MISMATCH, 1)
    assert result.error == "header X-Frame-Options matches 'DENY'"
    result, _ = await probe(plain.url + "/", fail_if_header_not_matches=[{"header": "X-Missing", "regexp": "x"}])
    assert result.error == "missing header X-Missing"


async def test_http_version_and_ssl_rules(plain: Site, tls_sites: dict[str, Site], certs: Certs) -> None:
    assert (await probe(plain.url + "/", valid_http_versions=["HTTP/1.1"]))[0].success
    result, _ = await probe(plain.url + "/", valid_http_versions=["HTTP/2.0"])
    assert result.error == "HTTP version HTTP/1.1 is not in valid_http_versions ['HTTP/2.0']"
    result, _ = await probe(plain.url + "/", fail_if_not_ssl=True)
    assert result.outcome is Outcome.MISMATCH
    result, _ = await probe(tls_sites["valid"].url + "/", fail_if_ssl=True, **ca(certs))
    assert result.outcome is Outcome.MISMATCH
    assert (await probe(tls_sites["valid"].url + "/", fail_if_not_ssl=True, **ca(certs)))[0].success


async def test_valid_tls_reports_phases_and_certificate(tls_sites: dict[str, Site], certs: Certs) -> None:
    result, got = await probe(tls_sites["valid"].url + "/", **ca(certs))
    assert result.success, result.error
    assert got["probe_http_ssl"] == 1
    for phase in ("connect", "tls", "processing", "transfer"):
        assert 0 < got[f"probe_http_duration_seconds{{{phase}}}"] < 1, phase
    assert got["probe_ssl_earliest_cert_expiry"] == certs.not_after("valid")
    assert got["probe_ssl_last_chain_expiry_timestamp_seconds"] == certs.not_after("valid")
    assert got["probe_tls_version_info{TLS 1.3}"] == 1


@pytest.mark.parametrize(("which", "http", "reason"), [
    ("expired", "ca", "certificate has expired"),
    ("self_signed", "ca", "self-signed certificate"),
    ("wrong_host", "ca", "IP address mismatch"),
    ("valid", "system", "unable to get local issuer certificate"),
], ids=["expired", "self-signed", "wrong host", "unknown CA"])
async def test_bad_certificates_fail_tls(tls_sites: dict[str, Site], certs: Certs, which: str, http: str,
                                         reason: str) -> None:
    started = time.monotonic()
    result, got = await probe(tls_sites[which].url + "/", **(ca(certs) if http == "ca" else {}))
    assert time.monotonic() - started < 1
    assert result.outcome is Outcome.TLS_FAILED
    assert result.error.startswith(f"TLS handshake with 127.0.0.1:{tls_sites[which].url.rsplit(':', 1)[1]} failed")
    assert reason in result.error
    assert (got["probe_http_ssl"], got["probe_http_status_code"]) == (0, 0)
    # unlike blackbox, the expiry of the rejected certificate is kept (an expired one must keep alerting)
    assert "probe_ssl_earliest_cert_expiry" in got
    assert "probe_ssl_last_chain_expiry_timestamp_seconds" not in got
    if which == "expired":
        assert got["probe_ssl_earliest_cert_expiry"] == EXPIRED_NOT_AFTER.timestamp()


async def test_insecure_skip_verify_and_server_name(tls_sites: dict[str, Site], certs: Certs) -> None:
    result, _ = await probe(tls_sites["self_signed"].url + "/", tls_config={"insecure_skip_verify": True})
    assert result.success, result.error
    result, _ = await probe(tls_sites["wrong_host"].url + "/",
                            tls_config={"ca_file": str(certs.ca_file), "server_name": "other.test"})
    assert result.success, result.error
    # a Host header names the TLS server too, as in blackbox
    result, _ = await probe(tls_sites["wrong_host"].url + "/", headers={"Host": "other.test"}, **ca(certs))
    assert result.success, result.error
    assert tls_sites["wrong_host"].seen[-1]["headers"]["Host"] == "other.test"


async def test_connection_refused() -> None:
    address = f"127.0.0.1:{free_port()}"
    result, got = await probe(f"http://{address}/")
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert result.error == f"cannot connect to {address}: Connection refused"
    assert got["probe_http_status_code"] == 0


async def test_ipv6_loopback(servers: Servers) -> None:
    site = servers.site("::1")
    result, got = await probe(site.url + "/", preferred_ip_protocol="ip6", ip_protocol_fallback=False)
    assert result.success, result.error
    assert got["probe_ip_protocol"] == 6
    assert site.seen[-1]["headers"]["Host"] == site.url.removeprefix("http://")


async def test_name_that_does_not_resolve() -> None:
    # The idna codec refuses a 64-character label before any packet is sent: no query leaves the host.
    result, got = await probe(f"http://{'a' * 64}.invalid:8080/")
    assert result.outcome is Outcome.RESOLVE_FAILED
    assert got["probe_http_status_code"] == 0
    assert "probe_http_duration_seconds{resolve}" in got


async def test_garbage_instead_of_http_is_a_protocol_error(servers: Servers) -> None:
    address = servers.raw(reply=b"SSH-2.0-OpenSSH_9.2\r\n")
    result, _ = await probe(f"http://{address}/")
    assert result.outcome is Outcome.PROTOCOL_ERROR, result.error


async def test_plain_http_server_behind_https_url_fails_tls(plain: Site) -> None:
    result, _ = await probe(plain.url.replace("http://", "https://") + "/")
    assert result.outcome is Outcome.TLS_FAILED
    assert "WRONG_VERSION_NUMBER" in result.error or "wrong version number" in result.error


@pytest.mark.parametrize(("path", "stage"), [
    ("/slow", "waiting for the response"),
    ("/trickle", "reading the body"),
], ids=["slow answer", "trickling body"])
async def test_slow_servers_time_out_in_time(plain: Site, path: str, stage: str) -> None:
    started = time.monotonic()
    result, got = await probe(plain.url + path, seconds=0.5)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert 0.45 <= elapsed <= 0.6
    assert stage in result.error
    assert "probe_http_duration_seconds{connect}" in got


async def test_stalled_tls_handshake_times_out(servers: Servers) -> None:
    address = servers.raw(reply=None)
    started = time.monotonic()
    result, _ = await probe(f"https://{address}/", seconds=0.4)
    assert result.outcome is Outcome.TIMEOUT
    assert time.monotonic() - started <= 0.5
    assert "in the TLS handshake" in result.error


async def test_endless_body_stops_at_the_limit(plain: Site) -> None:
    result, got = await probe(plain.url + "/endless", body_size_limit="256KB")
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "body larger than body_size_limit (262144 bytes)"
    assert got["probe_http_uncompressed_body_length"] == 262144


async def test_gzip_bomb_fails_without_eating_memory(plain: Site) -> None:
    import resource

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, got = await probe(plain.url + "/gzip-bomb", compression="gzip", body_size_limit="4MB",
                              fail_if_body_matches_regexp=["never"])
    assert result.outcome is Outcome.MISMATCH, result.error
    assert got["probe_http_uncompressed_body_length"] == 4 << 20
    assert got["probe_http_content_length"] == -1
    assert plain.seen[-1]["headers"]["Accept-Encoding"] == "gzip"
    # the body kept for the regex is at most the limit; the peak grows by far less than 16 GiB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 << 10


@pytest.mark.parametrize(("kind", "compression"), [("gzip", "gzip"), ("zlib", "deflate"), ("raw", "deflate")])
async def test_compressed_bodies_are_decoded(plain: Site, kind: str, compression: str) -> None:
    text = "Sở Thông tin và Truyền thông " * 100
    result, got = await probe(f"{plain.url}/compressed?as={kind}", compression=compression,
                              fail_if_body_not_matches_regexp=["Truyền thông Sở"])
    assert result.success, result.error
    assert got["probe_http_uncompressed_body_length"] == len(text.encode())
    assert got["probe_http_content_length"] < len(text.encode())


async def test_compression_expected_but_body_plain_fails(plain: Site) -> None:
    result, _ = await probe(plain.url + "/", compression="gzip")
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "cannot read the body" in result.error


async def test_json_extraction(plain: Site) -> None:
    extract = [
        {"name": "first", "json_path": "data.items[0].count"},
        {"name": "last", "json_path": "$.data.items[-1]['count']"},
        {"name": "total", "json_path": "data.total"},
        {"name": "enabled", "json_path": "data.enabled"},
        {"name": "items", "count_regex": '"count"'},
    ]
    result, got = await probe(plain.url + "/json", extract=extract)
    assert result.success, result.error
    assert {k: v for k, v in got.items() if k.startswith("egov_http_extracted")} == {
        "egov_http_extracted_value{first}": 42, "egov_http_extracted_value{last}": 7.5,
        "egov_http_extracted_value{total}": 1234, "egov_http_extracted_value{enabled}": 1,
        "egov_http_extracted_value{items}": 2,
    }
    assert result.partial_errors == {}


async def test_missing_path_or_bad_json_keeps_the_probe_and_the_rest(plain: Site) -> None:
    extract = [{"name": "gone", "json_path": "data.items[5].count"},
               {"name": "text", "json_path": "data.name"},
               {"name": "ok", "json_path": "data.items[1].count"}]
    result, got = await probe(plain.url + "/json", extract=extract)
    assert result.success, result.error
    assert got["egov_http_extracted_value{ok}"] == 7.5
    assert "egov_http_extracted_value{gone}" not in got and "egov_http_extracted_value{text}" not in got
    assert result.partial_errors == {"extract": 2}
    warnings = [line.message for line in result.lines if line.level == "warning"]
    assert warnings == ["extract gone: data.items[5].count: no 5 in the JSON body",
                        'extract text: data.name is "x", not a number']
    result, got = await probe(plain.url + "/not-json", extract=[{"name": "n", "json_path": "a"},
                                                                 {"name": "braces", "count_regex": "[{]"}])
    assert result.success
    assert got["egov_http_extracted_value{braces}"] == 1
    assert result.partial_errors == {"extract": 1}


async def test_login_then_page_shares_cookies(plain: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    monkeypatch.setenv("EGOV_TEST_DMS_USER", USERNAME)
    steps = [
        {"name": "login_form", "url": "/login", "fail_if_body_not_matches_regexp": ['name="csrf"']},
        {"name": "login", "url": "/login", "method": "POST", "follow_redirects": False, "valid_status_codes": [303],
         "form": {"username": {"env": "EGOV_TEST_DMS_USER"}, "password": {"file": str(secret)}, "note": "x y"}},
        {"name": "inbox", "url": f"{plain.url}/dashboard", "fail_if_body_not_matches_regexp": ["Văn bản đến"],
         "extract": [{"name": "pending", "count_regex": "chờ xử lý"}]},
    ]
    result, got = await probe(plain.url + "/", steps=steps, headers={"X-Agent": "dms"})
    assert result.success, result.error
    for step in ("login_form", "login", "inbox"):
        assert got[f"egov_http_step_success{{{step}}}"] == 1
        assert 0 < got[f"egov_http_step_duration_seconds{{{step}}}"] < 1
    assert got["egov_http_extracted_value{pending}"] == 1
    login, inbox = plain.seen[-2:]
    assert login["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "password=m%E1%BA%ADt-kh%E1%BA%A9u-1" in login["body"]
    assert f"session={SESSION}" in inbox["headers"]["Cookie"]
    assert inbox["headers"]["X-Agent"] == "dms"
    assert PASSWORD not in json.dumps([line.message for line in result.lines])


async def test_failing_step_is_named(plain: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGOV_TEST_DMS_PASSWORD", "wrong")
    steps = [
        {"name": "login", "url": "/login", "method": "POST",
         "form": {"username": USERNAME, "password": {"env": "EGOV_TEST_DMS_PASSWORD"}}},
        {"name": "inbox", "url": "/dashboard"},
    ]
    result, got = await probe(plain.url + "/", steps=steps)
    assert result.outcome is Outcome.MISMATCH
    assert result.error == "step login: status code 401, want 2xx"
    assert got["egov_http_step_success{login}"] == 0
    assert "egov_http_step_success{inbox}" not in got
    assert got["probe_http_status_code"] == 401
    assert any(line.message.startswith("step login failed") for line in result.lines)


async def test_timeout_in_a_step_is_named(plain: Site) -> None:
    steps = [{"name": "home", "url": "/"}, {"name": "report", "url": "/slow"}]
    result, got = await probe(plain.url + "/", seconds=0.5, steps=steps)
    assert result.outcome is Outcome.TIMEOUT
    assert result.error.startswith("step report: no answer within the module's timeout")
    assert (got["egov_http_step_success{home}"], got["egov_http_step_success{report}"]) == (1, 0)


async def test_proxy_url_carries_the_request(servers: Servers, plain: Site) -> None:
    proxy = servers.site("127.0.0.2")  # the app answers absolute-form requests as a proxy that serves them itself
    result, _ = await probe(plain.url + "/echo", proxy_url=proxy.url)
    assert result.success, result.error
    assert proxy.seen[-1]["path"] == "/echo"
    assert proxy.seen[-1]["headers"]["Host"] == plain.url.removeprefix("http://")


async def test_concurrent_probes_do_not_mix_timings(tls_sites: dict[str, Site], plain: Site, certs: Certs) -> None:
    jobs = [probe(tls_sites["valid"].url + "/", **ca(certs)) for _ in range(10)]
    jobs += [probe(plain.url + "/") for _ in range(10)]
    results = await asyncio.gather(*jobs)
    for result, got in results[:10]:
        assert result.success and got["probe_http_duration_seconds{tls}"] > 0
    for result, got in results[10:]:
        assert result.success and got["probe_http_duration_seconds{tls}"] == 0
