"""http module settings: blackbox defaults, validation at load with YAML paths, secrets, built-ins and targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import Secret, builtin_modules, config_schema, parse_config
from agent.errors import ConfigError
from collectors.http import HttpSettings, check_http_target, parse_json_path

OFFICE = 'office: {org_id: 000.00.20.H49, name: "UBND xã Tam Xuân 1", level: commune, parent_id: 000.00.15.H49}\n'


def load(modules: str, checks: str = "") -> object:
    return parse_config((OFFICE + "modules:\n" + modules + checks).encode(), "agent.yaml")


def test_blackbox_defaults() -> None:
    settings = HttpSettings()
    assert (settings.method, settings.valid_status_codes, settings.follow_redirects) == ("GET", (), True)
    assert (settings.preferred_ip_protocol, settings.ip_protocol_fallback) == ("ip6", True)
    assert (settings.fail_if_ssl, settings.fail_if_not_ssl, settings.compression) == (False, False, "")
    assert settings.body_size_limit == 10 << 20  # blackbox has no limit; every read here is capped


def test_builtin_modules_follow_blackbox_yml() -> None:
    modules = builtin_modules()
    get, post = modules["http_2xx"], modules["http_post_2xx"]
    assert (get.kind, get.timeout, get.http.method, get.http.preferred_ip_protocol) == ("http", 5.0, "GET", "ip4")
    assert (post.kind, post.timeout, post.http.method) == ("http", 5.0, "POST")


def test_a_full_module_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = tmp_path / "dms.pass"
    password.write_text("mật khẩu\n", encoding="utf-8")
    monkeypatch.setenv("EGOV_TEST_TOKEN", "tok-123")
    config = load(f"""\
  dms:
    kind: http
    timeout: 15s
    http:
      valid_status_codes: [200, 302]
      valid_http_versions: [HTTP/1.1]
      method: post
      headers: {{X-Office: 000.00.20.H49}}
      body: '{{}}'
      fail_if_body_not_matches_regexp: ['Văn bản']
      fail_if_header_matches: [{{header: Set-Cookie, regexp: '.*', allow_missing: true}}]
      basic_auth: {{username: canbo, password: {{file: {password}}}}}
      tls_config: {{insecure_skip_verify: true, min_version: TLS12}}
      body_size_limit: 2MB
      compression: gzip
      extract: [{{name: documents, json_path: 'data.total'}}]
  api:
    kind: http
    http: {{bearer_token: {{env: EGOV_TEST_TOKEN}}, preferred_ip_protocol: ip4, ip_protocol_fallback: false}}
""", "checks:\n  - {name: dms, module: dms, service: dms, targets: ['https://qlvb.quangnam.gov.vn/']}\n")
    dms = config.modules["dms"].http  # type: ignore[attr-defined]
    assert dms.method == "POST"
    assert dms.body_size_limit == 2 << 20
    assert dms.fail_if_body_not_matches_regexp[0].pattern == "Văn bản"
    assert isinstance(dms.basic_auth.password, Secret) and dms.basic_auth.password.reveal() == "mật khẩu"
    dumped = repr(dms) + str(config.modules["dms"].model_dump(mode="json"))  # type: ignore[attr-defined]
    assert "mật khẩu" not in dumped and f"file:{password}" in dumped
    api = config.modules["api"].http  # type: ignore[attr-defined]
    assert api.bearer_token.reveal() == "tok-123"
    assert "tok-123" not in str(config.modules["api"].model_dump(mode="json"))  # type: ignore[attr-defined]


def test_steps_load_with_form_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGOV_TEST_PASSWORD", "pw")
    config = load("""\
  dms_login:
    kind: http
    timeout: 20s
    http:
      headers: {X-Agent: egov}
      steps:
        - {name: login, url: /login, method: POST, form: {username: canbo, password: {env: EGOV_TEST_PASSWORD}},
           valid_status_codes: [302], follow_redirects: false}
        - {name: inbox, url: /van-ban-den, fail_if_body_not_matches_regexp: ['Văn bản đến']}
""")
    steps = config.modules["dms_login"].http.steps  # type: ignore[attr-defined]
    assert [s.name for s in steps] == ["login", "inbox"]
    assert steps[0].form["username"] == "canbo"
    assert steps[0].form["password"].reveal() == "pw"


PREFIX = "agent.yaml: line 3: modules.m.http"


@pytest.mark.parametrize(("http", "error"), [
    ("{fail_if_body_matches_regexp: ['(a']}",
     ".fail_if_body_matches_regexp[0]: invalid regular expression: missing ), unterminated subpattern at position 0"),
    ("{fail_if_header_matches: [{header: X, regexp: '[x'}]}",
     ".fail_if_header_matches[0].regexp: invalid regular expression: unterminated character set at position 0"),
    ("{basic_auth: {username: u, password: hunter2}}",
     ".basic_auth.password: a secret is given as {file: PATH} or {env: VARIABLE}, never inline"),
    ("{bearer_token: {env: EGOV_TEST_NOT_SET}}",
     ".bearer_token: environment variable EGOV_TEST_NOT_SET is not set or empty"),
    ("{method: POST, form: {p: {file: /nonexistent/egov}}}",
     ".form.p: cannot read secret file /nonexistent/egov: No such file or directory"),
    ("{basic_auth: {username: u, password: {env: HOME}}, bearer_token: {env: HOME}}",
     ": basic_auth and bearer_token are mutually exclusive"),
    ("{body: x, form: {a: b}}", ": body and form are mutually exclusive"),
    ("{headers: {authorization: Basic eDp5}}",
     ".headers: no Authorization header in plain text: use basic_auth or bearer_token with a secret"),
    ("{fail_if_ssl: true, fail_if_not_ssl: true}", ": fail_if_ssl and fail_if_not_ssl together fail every probe"),
    ("{valid_status_codes: [999]}", ".valid_status_codes[0]: Input should be less than or equal to 599"),
    ("{valid_http_versions: [HTTP2]}", ".valid_http_versions[0]: String should match pattern '^HTTP/\\d(\\.\\d)?$'"),
    ("{compression: br}", ".compression: Input should be '', 'identity', 'gzip' or 'deflate'"),
    ("{compression: gzip, headers: {Accept-Encoding: 'br, identity'}}",
     ": Accept-Encoding 'br, identity' does not accept compression 'gzip'"),
    ("{body_size_limit: 0}", ".body_size_limit: 0 (no limit) is not allowed: every body read is capped; give a size "
                             "up to 1GB"),
    ("{body_size_limit: 10 bananas}", ".body_size_limit: invalid size '10 bananas': a number of bytes or e.g. 512KB, "
                                      "10MB, 1GB"),
    ("{body_size_limit: 2GB}", ".body_size_limit: Input should be less than or equal to 1073741824"),
    ("{proxy_url: 'http://u:p@127.0.0.1:3128'}",
     ".proxy_url: proxy_url must not carry credentials; use basic_auth or bearer_token with a secret"),
    ("{proxy_url: 'socks5://127.0.0.1:1080'}", ".proxy_url: proxy_url 'socks5://127.0.0.1:1080' is not an http(s) URL"),
    ("{preferred_ip_protocol: ip5}", ".preferred_ip_protocol: Input should be 'ip4' or 'ip6'"),
    ("{enable_http2: true}", ".enable_http2: unknown key"),
    ("{extract: [{name: a, json_path: 'a..b'}]}",
     ".extract[0].json_path: invalid json_path 'a..b' at position 1: use keys and [index], e.g. data.items[0].count"),
    ("{extract: [{name: a, json_path: a, count_regex: b}]}",
     ".extract[0]: give exactly one of json_path and count_regex"),
    ("{extract: [{name: 9a, count_regex: b}]}",
     ".extract[0].name: String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'"),
    ("{extract: [{name: a, count_regex: x}, {name: a, json_path: b}]}",
     ": extract names must be unique within the module"),
    ("{method: POST, valid_status_codes: [200], steps: [{name: a}]}",
     ": with steps, method, valid_status_codes go in each step (only headers apply to all)"),
    ("{steps: [{name: a}, {name: a}]}", ": step names must be unique"),
    ("{steps: [{name: a, url: 'ftp://x/'}]}", ".steps[0].url: url 'ftp://x/' is not an http(s) URL"),
    ("{steps: [{name: a, extract: [{name: n, count_regex: x}]}, {name: b, extract: [{name: n, count_regex: y}]}]}",
     ": extract names must be unique within the module"),
    ("{tls_config: {ca_file: /nonexistent/ca.pem}}",
     ".tls_config: cannot load TLS files: [Errno 2] No such file or directory"),
], ids=lambda value: value[:40])
def test_invalid_settings_name_their_path(http: str, error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f"  m: {{kind: http, http: {http}}}\n")
    assert caught.value.render() == PREFIX + error


@pytest.mark.parametrize(("target", "error"), [
    ("quangnam.gov.vn", "target 'quangnam.gov.vn' is not an http(s) URL; write it in full, e.g. https://quangnam.gov.vn/"),
    ("ftp://quangnam.gov.vn/", "target 'ftp://quangnam.gov.vn/' is not an http(s) URL"),
    ("https://", "target 'https://' is not an http(s) URL"),
    ("https://canbo:pw@qlvb.quangnam.gov.vn/", "target must not carry credentials; use basic_auth or bearer_token "
                                               "with a secret"),
    ("http://127.0.0.1:99999/", "target 'http://127.0.0.1:99999/': Port out of range 0-65535"),
])
def test_bad_targets(target: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_http_target(target, HttpSettings())
    assert str(caught.value) == error
    with pytest.raises(ConfigError) as config_error:
        load("  m: {kind: http}\n", f"checks:\n  - {{name: c, module: m, service: portal, targets: ['{target}']}}\n")
    assert config_error.value.render() == f"agent.yaml: line 5: checks[0].targets[0]: {error}"


@pytest.mark.parametrize("target", ["http://127.0.0.1:8080/", "https://quangnam.gov.vn", "https://[::1]:8443/x?y=1"])
def test_good_targets(target: str) -> None:
    check_http_target(target, HttpSettings())


@pytest.mark.parametrize(("path", "parts"), [
    ("data.items[0].count", ("data", "items", 0, "count")),
    ("$.data.items[-1]['count']", ("data", "items", -1, "count")),
    ('a["b c"].d', ("a", "b c", "d")),
    ("$", ()),
    ("[2]", (2,)),
])
def test_json_paths(path: str, parts: tuple[object, ...]) -> None:
    assert parse_json_path(path) == parts


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a[0", "a.", "a]"])
def test_bad_json_paths(path: str) -> None:
    with pytest.raises(ValueError, match="invalid json_path"):
        parse_json_path(path)


def test_schema_describes_the_http_kind() -> None:
    schema = config_schema()
    text = str(schema)
    for key in ("fail_if_header_not_matches", "body_size_limit", "steps", "extract", "bearer_token"):
        assert key in text
