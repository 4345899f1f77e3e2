"""exporter-toolkit's server tests (TestServerBehaviour, TestUsers, TestBasicAuthCache, TestByPassBasicAuthVuln,
TestHTTPHeaders, TestConfigReloading) against the real agent process over real TLS with trustme certificates."""

from __future__ import annotations

import http.client
import shutil
import ssl
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trustme
from fakes.webclient import PASSWORDS, Pki, client_context, request
from testlib import wait_for

pytestmark = pytest.mark.slow

HEADERS = {
    "X-Frame-Options": "deny",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-XSS-Protection": "1",
    "Content-Security-Policy": "default-src 'self'",
}


def tls(pki: Pki, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pki.server_crt}\n  key_file: {pki.server_key}\n{extra}"


def users(hashes: dict[str, str]) -> str:
    return "basic_auth_users:\n" + "".join(f"  {user}: {hashed}\n" for user, hashed in hashes.items())


def headers_yaml() -> str:
    return "http_server_config:\n  headers:\n" + "".join(f'    {k}: "{v}"\n' for k, v in HEADERS.items())


def fails(address: str, ctx: ssl.SSLContext | None, path: str = "/metrics") -> bool:
    """True when the request cannot complete (handshake refused, connection closed)."""
    try:
        request(address, path, ctx=ctx, timeout=5)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_versions_and_plain_clients(web_agent, pki: Pki) -> None:
    agent = web_agent(tls(pki), ready_ctx=client_context(pki))
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        reply = request(agent.address, ctx=client_context(pki, min_version=version, max_version=version))
        assert reply.status == 200 and reply.version == {ssl.TLSVersion.TLSv1_2: "TLSv1.2"}.get(version, "TLSv1.3")
        assert reply.headers["Server"] == "egov-agent"
    old = client_context(pki, max_version=ssl.TLSVersion.TLSv1_1, min_version=ssl.TLSVersion.TLSv1,
                         ciphers="DEFAULT:@SECLEVEL=0")
    assert fails(agent.address, old), "a TLS 1.1 client got in"
    assert fails(agent.address, None), "plain HTTP was answered on the TLS port"
    assert "Traceback" not in agent.log()


def test_empty_web_config_serves_plain_http(web_agent, pki: Pki) -> None:
    agent = web_agent("")
    assert request(agent.address).status == 200
    assert fails(agent.address, client_context(pki))


def test_cipher_suites_and_server_preference(web_agent, pki: Pki) -> None:
    listed = ("  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
              "  - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  min_version: TLS12\n  max_version: TLS12\n")
    server_order = web_agent(tls(pki, listed), ready_ctx=client_context(pki))
    client_order = web_agent(tls(pki, listed + "  prefer_server_cipher_suites: false\n"),
                             ready_ctx=client_context(pki))
    tls12 = {"max_version": ssl.TLSVersion.TLSv1_2}
    reply = request(server_order.address, ctx=client_context(pki, ciphers="ECDHE-RSA-AES128-GCM-SHA256", **tls12))
    assert reply.status == 200 and reply.cipher == "ECDHE-RSA-AES128-GCM-SHA256"
    assert fails(server_order.address, client_context(pki, ciphers="ECDHE-RSA-AES256-SHA", **tls12))
    both = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"
    assert request(server_order.address, ctx=client_context(pki, ciphers=both, **tls12)).cipher == \
        "ECDHE-RSA-AES128-GCM-SHA256"
    assert request(client_order.address, ctx=client_context(pki, ciphers=both, **tls12)).cipher == \
        "ECDHE-RSA-AES256-GCM-SHA384"


def test_curve_preferences(web_agent, pki: Pki) -> None:
    agent = web_agent(tls(pki, "  min_version: TLS13\n  curve_preferences: [CurveP521]\n"),
                      ready_ctx=client_context(pki, curve="secp521r1"))
    assert request(agent.address, ctx=client_context(pki, curve="secp521r1")).status == 200
    assert fails(agent.address, client_context(pki, curve="secp384r1"))


def test_client_certificates_against_the_named_ca_only(web_agent, pki: Pki) -> None:
    mtls = (f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.client_ca_pem}\n"
            "  client_allowed_sans: [client1.test]\n")
    agent = web_agent(tls(pki, mtls), ready_ctx=client_context(pki, "good"))
    assert request(agent.address, ctx=client_context(pki, "good")).status == 200
    assert fails(agent.address, client_context(pki)), "no client certificate got in"
    assert fails(agent.address, client_context(pki, "rogue")), "a certificate of another CA got in"
    assert fails(agent.address, client_context(pki, "expired")), "an expired certificate got in"
    assert request(agent.address, ctx=client_context(pki, "other_san")).status == 403  # right CA, SAN not allowed
    optional = web_agent(tls(pki, f"  client_auth_type: VerifyClientCertIfGiven\n"
                                  f"  client_ca_file: {pki.client_ca_pem}\n"), ready_ctx=client_context(pki))
    assert request(optional.address, ctx=client_context(pki)).status == 200
    assert request(optional.address, ctx=client_context(pki, "good")).status == 200
    assert fails(optional.address, client_context(pki, "rogue"))


def test_basic_auth_users_over_tls(web_agent, pki: Pki, hashes: dict[str, str]) -> None:
    ctx = client_context(pki)
    agent = web_agent(tls(pki, users(hashes) + headers_yaml()), ready_ctx=ctx, ready_auth=("alice", "alice123"))
    anonymous = request(agent.address, ctx=ctx)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"] == "Basic"
    for user in ("carol", "dave"):
        assert request(agent.address, ctx=ctx, auth=(user, PASSWORDS[user])).status == 200
    assert request(agent.address, ctx=ctx, auth=("dave", "bad")).status == 401
    assert request(agent.address, ctx=ctx, auth=("nonexistent", "nonexistent")).status == 401
    for _ in range(2):  # TestBasicAuthWithFakepassword: cold cache, then cached
        assert request(agent.address, ctx=ctx, auth=("fakeuser", "fakepassword")).status == 401
    for password in ("a" * 73, "alice123" + "x" * 100, "é" * 40):  # over bcrypt's 72 bytes: 401, never 500
        assert request(agent.address, ctx=ctx, auth=("alice", password)).status == 401
    for header in ("Basic !!!", "Basic " + "YWxpY2U=", "Bearer alice123", "Basic", "basic  YWxpY2U6YWxpY2UxMjM=x",
                   "Basic /w==:"):
        assert request(agent.address, ctx=ctx, headers={"Authorization": header}).status == 401, header
    assert request(agent.address, ctx=ctx, auth=(b"\xff\xfe", b"alice123")).status == 401
    assert request(agent.address, "/probe?target=127.0.0.2", ctx=ctx).status == 401
    assert request(agent.address, "/probe?target=127.0.0.2", ctx=ctx, auth=("alice", "alice123")).status == 404
    assert "Traceback" not in agent.log()


def test_cve_2022_46146_cache_poisoning(web_agent, hashes: dict[str, str]) -> None:
    agent = web_agent(users(hashes), ready_auth=("alice", "alice123"))
    # Poison: a user name that ends in alice's hash, with the password the dummy hash was made from.
    assert request(agent.address, auth=("alice" + hashes["alice"], "fakepassword")).status == 401
    # Then alice with a password that starts with a hash: must not reuse the poisoned entry.
    assert request(agent.address, auth=("alice", hashes["alice"] + "fakepassword")).status == 401
    dummy_like = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
    assert request(agent.address, auth=("alice", dummy_like + "fakepassword")).status == 401
    assert request(agent.address, auth=("alice", "alice123")).status == 200


def test_basic_auth_cache_under_concurrency(web_agent, hashes: dict[str, str]) -> None:
    agent = web_agent(users(hashes), ready_auth=("alice", "alice123"))
    assert request(agent.address, auth=("alice", "alice123")).status == 200
    assert request(agent.address, auth=("alice", "alice1234")).status == 401
    logins = [("alice123", 200), ("alice1234", 401)] * 150
    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(lambda pw: request(agent.address, auth=("alice", pw[0]), timeout=30).status, logins))
    assert codes == [code for _, code in logins]


def test_unknown_users_take_as_long_as_known_ones(web_agent, hashes: dict[str, str]) -> None:
    agent = web_agent(users(hashes), ready_auth=("alice", "alice123"))
    known, unknown = [], []
    for i in range(24):  # a new password each time: nothing comes from the cache
        for user, times in (("alice", known), (f"nobody{i}", unknown)):
            started = time.perf_counter()
            assert request(agent.address, auth=(user, f"wrong-{i}")).status == 401
            times.append(time.perf_counter() - started)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.8 <= ratio <= 1.25, (statistics.median(known), statistics.median(unknown))


def test_security_headers_on_every_response(web_agent, hashes: dict[str, str]) -> None:
    agent = web_agent(users(hashes) + headers_yaml(), ready_auth=("alice", "alice123"))
    replies = [request(agent.address), request(agent.address, auth=("alice", "alice123")),
               request(agent.address, "/nothing", auth=("alice", "alice123"))]
    assert [r.status for r in replies] == [401, 200, 404]
    for reply in replies:
        for name, value in HEADERS.items():
            assert reply.headers.get(name) == value, (reply.status, name)


def test_rate_limit(web_agent) -> None:
    agent = web_agent("rate_limit:\n  interval: 1h\n  burst: 3\n", ready_ctx=None)
    # The readiness poll took one token (at least); the bucket never refills within the test.
    codes = [request(agent.address).status for _ in range(4)]
    assert codes.count(429) >= 2 and codes[-1] == 429 and set(codes) <= {200, 429}


def test_web_config_is_re_read_on_change(web_agent, pki: Pki, tmp_path: Path, hashes: dict[str, str]) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    shutil.copy(pki.server_crt, folder / "server.crt")
    shutil.copy(pki.server_key, folder / "server.key")
    shutil.copy(pki.client_ca_pem, folder / "client_ca.pem")
    relative = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    blocking = relative + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client_ca.pem\n"
    agent = web_agent(blocking, ready_ctx=client_context(pki, "good"), web_dir=folder)
    web_yml = folder / "web-0.yml"
    assert fails(agent.address, client_context(pki))
    # TestConfigReloading: the blocking config is swapped for a good one; no restart.
    web_yml.write_text(relative, encoding="utf-8")
    wait_for(lambda: not fails(agent.address, client_context(pki)), timeout=10)
    # Basic auth switched on by an edit.
    web_yml.write_text(relative + users(hashes), encoding="utf-8")
    wait_for(lambda: request(agent.address, ctx=client_context(pki)).status == 401, timeout=10)
    assert request(agent.address, ctx=client_context(pki), auth=("dave", "dave123")).status == 200
    # A broken edit keeps the running web config, and says so once.
    web_yml.write_text(relative + "basic_auth_users:\n  dave: not-a-hash\n", encoding="utf-8")
    wait_for(lambda: "web config reload failed" in agent.log(), timeout=10)
    assert request(agent.address, ctx=client_context(pki), auth=("dave", "dave123")).status == 200
    assert "not-a-hash" not in agent.log()
    web_yml.write_text(relative + users(hashes), encoding="utf-8")
    # Certificate rotation: new files under the same names are picked up, no edit of the web config needed.
    new_ca = trustme.CA()
    new_leaf = new_ca.issue_cert("127.0.0.1")
    new_leaf.cert_chain_pems[0].write_to_path(str(folder / "server.crt.new"))
    new_leaf.private_key_pem.write_to_path(str(folder / "server.key.new"))
    (folder / "server.key.new").replace(folder / "server.key")
    (folder / "server.crt.new").replace(folder / "server.crt")
    rotated = ssl.create_default_context()
    new_ca.configure_trust(rotated)
    wait_for(lambda: request(agent.address, ctx=rotated, auth=("dave", "dave123")).status == 200, timeout=10)
    assert fails(agent.address, client_context(pki))
    assert agent.process.poll() is None


def test_inline_cert_and_key(web_agent, pki: Pki) -> None:
    def block(path: Path) -> str:
        return "".join(f"    {line}\n" for line in path.read_text().splitlines())

    agent = web_agent(f"tls_server_config:\n  cert: |\n{block(pki.server_crt)}  key: |\n{block(pki.server_key)}",
                      ready_ctx=client_context(pki))
    assert request(agent.address, ctx=client_context(pki)).status == 200
    assert "PRIVATE KEY" not in agent.log()
