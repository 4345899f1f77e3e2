"""The web config loader: exporter-toolkit's good and bad files (TestYAMLFiles), and what Python's ssl refuses."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from fakes.webclient import Pki
from testlib import OFFICE_YAML, REPO, egov_agent_command, free_port

from agent.errors import ConfigError
from agent.webconfig import PasswordChecker, RateLimiter, load_web_config

TLS = "tls_server_config:\n  cert_file: {crt}\n  key_file: {key}\n"


def write(tmp_path: Path, text: str, name: str = "web.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    text = info.value.render()
    assert text.startswith(str(path)), text
    return text


def tls(pki: Pki, extra: str = "") -> str:
    return TLS.format(crt=pki.server_crt, key=pki.server_key) + extra


BAD = [
    pytest.param("hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\n", "must be a mapping", id="junk"),
    pytest.param("tls_server_config:\n  cert_filse: server.crt\n", "tls_server_config.cert_filse: unknown key",
                 id="junk key"),
    pytest.param("tls_server_config:\n  cert_file: ''\n  key_file: {key}\n", "missing one of cert or cert_file",
                 id="cert path empty"),
    pytest.param("tls_server_config:\n  cert_file: {crt}\n  key_file: ''\n", "missing one of key or key_file",
                 id="key path empty"),
    pytest.param("tls_server_config:\n  key_file: {key}\n", "missing one of cert or cert_file", id="cert missing"),
    pytest.param("tls_server_config:\n  cert_file: somefile\n  key_file: {key}\n", "somefile): no such file",
                 id="cert path invalid"),
    pytest.param("tls_server_config:\n  cert_file: {crt}\n  key_file: somefile\n", "somefile): no such file",
                 id="key path invalid"),
    pytest.param("tls_server_config:\n  cert_file: {crt}\n  key_file: {client_key}\n",
                 "failed to load the certificate and key", id="key does not match cert"),
    pytest.param("{tls}  client_ca_file: {client_ca}\n",
                 "client CA's have been configured without a Client Auth Policy", id="client CA without policy"),
    pytest.param("{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: somefile\n",
                 "somefile): no such file", id="client CA path invalid"),
    pytest.param("{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: /dev/null\n",
                 "no usable CA certificate in the client CA", id="client CA empty"),
    pytest.param("{tls}  client_auth_type: RequireAndVerifyClientCert\n",
                 "needs client_ca_file or client_ca", id="verify without CA (never the system store)"),
    pytest.param("{tls}  client_auth_type: VerifyClientCertIfGiven\n",
                 "needs client_ca_file or client_ca", id="verify if given without CA"),
    pytest.param("{tls}  client_auth_type: RequestClientCert\n  client_ca_file: {client_ca}\n",
                 "takes client certificates without checking them", id="RequestClientCert refused"),
    pytest.param("{tls}  client_auth_type: RequireAnyClientCert\n  client_ca_file: {client_ca}\n",
                 "takes client certificates without checking them", id="RequireAnyClientCert refused"),
    pytest.param("{tls}  client_auth_type: Whatever\n", "tls_server_config.client_auth_type: Input should be",
                 id="invalid ClientAuth"),
    pytest.param("{tls}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {client_ca}\n"
                 "  client_allowed_sans: [client1.test]\n", "client_allowed_sans needs client_auth_type",
                 id="SANs without RequireAndVerify"),
    pytest.param("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "unknown cipher: TLS_RSA_WITH_RC4_128_SHA",
                 id="invented cipher"),
    pytest.param("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "lists no TLS 1.2 suite",
                 id="only TLS 1.3 suites with a TLS 1.2 floor"),
    pytest.param("{tls}  curve_preferences: [CurveP257]\n", "unknown curve: CurveP257", id="invented curve"),
    pytest.param("{tls}  curve_preferences: [CurveP256, X25519]\n", "can honour only one curve",
                 id="two curves"),
    pytest.param("{tls}  min_version: TLS111\n", "tls_server_config.min_version: Input should be",
                 id="wrong TLS version"),
    pytest.param("{tls}  min_version: TLS11\n", "TLS11 is refused: the agent serves TLS 1.2 or newer only",
                 id="TLS 1.1 floor refused"),
    pytest.param("{tls}  min_version: TLS13\n  max_version: TLS12\n", "min_version TLS13 is newer than max_version",
                 id="min above max"),
    pytest.param("basic_auth_users:\n  john: doe\n", "basic_auth_users.john: not a bcrypt hash", id="user list"),
    pytest.param("basic_auth_users:\n  john: $2y$03$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
                 "basic_auth_users.john: not a bcrypt hash", id="bcrypt cost below 4"),
    pytest.param("http_server_config:\n  headers:\n    Content-Type: foo\n",
                 'HTTP header "Content-Type" can not be configured', id="extra header"),
    pytest.param("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                 "invalid value for X-Frame-Options", id="frame options"),
    pytest.param("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
                 "invalid value for X-Content-Type-Options", id="content type options"),
    pytest.param("rate_limit:\n  interval: soon\n", "rate_limit.interval: invalid duration", id="rate limit"),
    pytest.param("basic_auth_users: {{a: x}}\nbasic_auth_users: {{b: y}}\n", "duplicate key", id="duplicate key"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_web_configs_are_refused_with_the_path(tmp_path: Path, pki: Pki, text: str, expected: str) -> None:
    path = write(tmp_path, text.format(tls=tls(pki), crt=pki.server_crt, key=pki.server_key,
                                       client_ca=pki.client_ca_pem, client_key=pki.clients["good"][1]))
    message = error_of(path)
    assert expected in message, message
    assert "Traceback" not in message


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read web config: No such file or directory" in error_of(tmp_path / "somefile")


def test_errors_name_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "basic_auth_users:\n  ok: x\n  bad: y\n"))
    assert "line 2: basic_auth_users.ok: not a bcrypt hash" in message
    assert "line 3: basic_auth_users.bad: not a bcrypt hash" in message
    message = error_of(write(tmp_path, "basic_auth_users: {}\nhttp_server_config:\n  headers:\n    Server: me\n"))
    assert 'line 4: http_server_config.headers: HTTP header "Server" can not be configured' in message


def test_hashes_and_inline_keys_never_appear_in_errors(tmp_path: Path, pki: Pki) -> None:
    secret_hash = "$2y$10$" + "S3CR3Tx" * 7 + "abcde"  # looks like a hash, but 61 characters long: refused
    key_text = pki.clients["good"][1].read_text()
    text = (f"tls_server_config:\n  cert_file: {pki.server_crt}\n  key: |\n"
            + "".join(f"    {line}\n" for line in key_text.splitlines())
            + f"basic_auth_users:\n  eve: {secret_hash}\n")
    message = error_of(write(tmp_path, text))
    assert "failed to load the certificate and key" in message and "basic_auth_users.eve" in message
    assert "S3CR3T" not in message and "PRIVATE KEY" not in message
    message = error_of(write(tmp_path, f"basic_auth_users:\n  mallory: [{secret_hash}]\n"))
    assert "basic_auth_users.mallory" in message and "S3CR3T" not in message


GOOD = [
    pytest.param("", id="empty"),
    pytest.param("tls_server_config: {{}}\n", id="TLS section without settings: plain HTTP"),
    pytest.param("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
                 "    Strict-Transport-Security: max-age=31536000; includeSubDomains\n"
                 "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: '1'\n"
                 "    Content-Security-Policy: \"default-src 'self'\"\n", id="headers"),
    pytest.param("{tls}  cipher_suites:\n  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
                 "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n"
                 "  - TLS_AES_128_GCM_SHA256\n  - TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA\n", id="ciphers"),
    pytest.param("{tls}  min_version: TLS13\n  curve_preferences: [CurveP521]\n", id="TLS 1.3 and one curve"),
    pytest.param("{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {client_ca}\n"
                 "  client_allowed_sans: [client1.test, 127.0.0.1]\n", id="mTLS with SANs"),
    pytest.param("rate_limit:\n  interval: 0s\n  burst: 0\n", id="rate limiter off"),
]


@pytest.mark.parametrize("text", GOOD)
def test_good_web_configs_load(tmp_path: Path, pki: Pki, text: str) -> None:
    path = write(tmp_path, text.format(tls=tls(pki), client_ca=pki.client_ca_pem))
    config = load_web_config(path)
    assert (config.ssl_context is not None) == ("{tls}" in text)


def test_relative_paths_are_relative_to_the_web_config(tmp_path: Path, pki: Pki, monkeypatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "server.crt").write_bytes(pki.server_crt.read_bytes())
    (folder / "server.key").write_bytes(pki.server_key.read_bytes())
    path = write(folder, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    monkeypatch.chdir(tmp_path)
    config = load_web_config(path)
    assert config.ssl_context is not None
    assert {entry[0] for entry in config.signature} == {str(path), str(folder / "server.crt"),
                                                         str(folder / "server.key")}


def test_inline_cert_and_key(tmp_path: Path, pki: Pki) -> None:
    def block(path: Path) -> str:
        return "".join(f"    {line}\n" for line in path.read_text().splitlines())

    text = f"tls_server_config:\n  cert: |\n{block(pki.server_crt)}  key: |\n{block(pki.server_key)}"
    config = load_web_config(write(tmp_path, text))
    assert config.ssl_context is not None
    assert "PRIVATE" not in repr(config)


def test_users_are_read_in_go_spelling_and_weak_costs_warned(tmp_path: Path, hashes: dict[str, str]) -> None:
    import bcrypt

    weak = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2a$")
    text = "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in hashes.items()) + f"  weak: {weak}\n"
    config = load_web_config(write(tmp_path, text))
    assert set(config.users) == {"alice", "carol", "dave", "weak"}
    assert all(h.startswith(b"$2b$") for h in config.users.values())
    assert config.dummy_hash.startswith(b"$2b$10$")  # the most common configured cost
    assert [w for w in config.warnings if "weak" in w and "cost 4" in w]


async def test_password_checker_cache_is_bounded_and_keyed_by_user_hash_and_password(
        tmp_path: Path, hashes: dict[str, str]) -> None:
    text = "basic_auth_users:\n" + "".join(f"  {u}: {h}\n" for u, h in hashes.items())
    config = load_web_config(write(tmp_path, text))
    checker = PasswordChecker(cache_size=2)
    assert await checker.check(config, "alice", b"alice123") is True
    assert await checker.check(config, "alice", b"alice1234") is False
    assert await checker.check(config, "nobody", b"alice123") is False
    assert await checker.check(config, "alice", b"a" * 73) is False  # bcrypt>=5 raises for > 72 bytes
    assert len(checker) == 3  # one success, two failures (the long password is never hashed)
    assert await checker.check(config, "carol", b"carol123") is True
    assert await checker.check(config, "dave", b"dave123") is True
    assert len(checker) == 4  # each cache holds two
    many = await asyncio.gather(*(checker.check(config, "alice", b"same wrong") for _ in range(50)))
    assert many == [False] * 50  # one bcrypt for all of them: none turned away
    # CVE-2022-46146: a user name that ends in a hash, and a password that starts with one, never collide.
    hashed = config.users["alice"].decode()
    assert await checker.check(config, "alice" + hashed, b"fakepassword") is False
    assert await checker.check(config, "alice", (config.dummy_hash.decode() + "fakepassword").encode()) is False


def test_rate_limiter_is_a_token_bucket() -> None:
    limiter = RateLimiter(interval=1.0, burst=2, now=0.0)
    assert [limiter.allow(0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow(0.5) is False
    assert limiter.allow(1.0) is True
    assert RateLimiter(interval=1.0, burst=0, now=0.0).allow(5.0) is False


@pytest.mark.slow
def test_run_refuses_a_bad_web_config_with_its_path(tmp_path: Path) -> None:
    config = write(tmp_path, OFFICE_YAML + "web:\n  config_file: web.yml\n", "agent.yaml")
    web = write(tmp_path, "basic_auth_users:\n  john: doe\n")
    argv = [*egov_agent_command(), "run", "--config", str(config), "--web.listen-address", f"127.0.0.1:{free_port()}"]
    for extra in ([], ["--web.config.file", str(web)]):
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=30, cwd="/")
        assert done.returncode == 1, done.stderr
        assert f"{web}: line 2: basic_auth_users.john: not a bcrypt hash" in done.stderr
        assert "Traceback" not in done.stderr


async def test_the_example_web_config_loads_and_its_documented_password_works() -> None:
    config = load_web_config(REPO / "config/web.example.yml")
    assert config.ssl_context is None and config.headers["X-Frame-Options"] == "deny"
    assert await PasswordChecker().check(config, "prometheus", b"prometheus-example") is True


def test_http2_is_accepted_with_a_note(tmp_path: Path) -> None:
    assert not load_web_config(write(tmp_path, "http_server_config: {http2: false}\n")).warnings
    (note,) = load_web_config(write(tmp_path, "http_server_config: {http2: true}\n")).warnings
    assert "HTTP/1.1 only" in note
