"""Sentinel secrets never show: logs at debug level, /metrics, the status page, check-config, probe --debug,
error texts, and every file under the state dir (remote-write queues and dead letters).

Every secret field of the config models is found from the JSON Schema (SecretValue's {file}/{env} shape), so a new
kind's secrets show up in test_every_secret_field_is_exercised until this test sets them.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fakes.webclient import request
from testlib import OFFICE_YAML, egov_agent_command, wait_for

from agent.config import config_schema

# Secret fields this test sets (or why not), by their path in the config schema ("*" is any name).
EXERCISED = {
    "modules.*.http.basic_auth.password": "module http_basic",
    "modules.*.http.body": "module http_basic",
    "modules.*.http.bearer_token": "module http_bearer",
    "modules.*.http.steps[].body": "module http_bearer, step login",
    "modules.*.http.steps[].form.*": "module http_bearer, step form",
    "modules.*.http.form.*": "module http_form",
    "modules.*.publicservice.basic_auth.password": "module ps",
    "modules.*.publicservice.bearer_token": "module ps_bearer",
    "modules.*.publicservice.body": "module ps_bearer",
    "modules.*.publicservice.form.*": "same HttpSettings code as http.form (collectors/_http_client.py)",
    "modules.*.publicservice.steps[].body": "same HttpSettings code as http.steps[].body",
    "modules.*.publicservice.steps[].form.*": "same HttpSettings code as http.steps[].form",
    "modules.*.mail.auth.password": "module mail_auth",
    "modules.*.mail.roundtrip.imap_auth.password": "module mail_roundtrip",
    "modules.*.sql.dsns.*": "module sql_q",
    "modules.*.sql.dsns.*.password": "module sql_split",
    "auths.*.password": "auth v3",
    "auths.*.priv_password": "auth v3",
    "auths.*.community": "auth v2",
    "modules.*.snmp.auth.password": "auths.* is this model: a check's auth is put here (CollectorSpec.with_auth)",
    "modules.*.snmp.auth.priv_password": "as modules.*.snmp.auth.password",
    "modules.*.snmp.auth.community": "as modules.*.snmp.auth.password",
    "remote_write[].basic_auth.password": "remote_write rw401",
    "remote_write[].bearer_token": "remote_write rw400",
}
NAMES = ("HTTP_PW", "HTTP_BODY", "BEARER", "STEP_BODY", "STEP_FORM", "FORM", "PS_PW", "PS_BEARER", "PS_BODY",
         "MAIL_PW", "RT_PW", "IMAP_PW", "DSN_PW", "DSN_SPLIT_PW", "SNMP_PW", "SNMP_PRIV", "COMMUNITY", "RW_PW",
         "RW_BEARER", "WEB_PW")
ENV_SECRETS = ("HTTP_PW", "SNMP_PRIV", "RW_BEARER")
"""Given as {env: ...}; the others as {file: ...}."""


def secret_paths() -> set[str]:
    """Every config path whose value is a secret ({file: ...} or {env: ...}), from the JSON Schema."""
    schema = config_schema()
    defs = schema.get("$defs", {})
    found: set[str] = set()

    def is_secret(node: dict[str, Any]) -> bool:
        options = node.get("oneOf")
        return (isinstance(options, list) and len(options) == 2
                and sorted(tuple(o.get("required", [])) for o in options if isinstance(o, dict))
                == [("env",), ("file",)])

    def walk(node: Any, path: str, stack: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in stack:
                walk(defs[name], path, (*stack, name))
        if is_secret(node):
            found.add(path)
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for option in node.get(key) or []:
                walk(option, path, stack)
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}" if path else name, stack)
        for sub in (node.get("patternProperties") or {}).values():
            walk(sub, f"{path}.*", stack)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.*", stack)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]", stack)

    walk(schema, "", ())
    return found


def test_every_secret_field_is_exercised() -> None:
    found = secret_paths()
    assert "remote_write[].basic_auth.password" in found and "auths.*.password" in found  # the walk works
    missing = sorted(found - set(EXERCISED))
    assert not missing, f"secret fields this test does not set yet: add them to the sentinel config: {missing}"


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the status its path asks for (/401, /400, ...; else 401); records what came."""

    seen: ClassVar[list[bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length else b""
        Recorder.seen.append(str(self.headers).encode() + b"\n" + body)
        code = int(self.path.strip("/").split("/")[0]) if self.path.strip("/")[:3].isdigit() else 401
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def sentinel_config(tmp_path: Path, port: int, sentinels: dict[str, str]) -> str:
    def ref(name: str) -> str:
        if name in ENV_SECRETS:
            return f"{{env: EGOV_TEST_{name}}}"
        path = tmp_path / f"secret-{name.lower()}"
        path.write_text(sentinels[name] + "\n", encoding="utf-8")
        return f"{{file: {path}}}"

    dsn = tmp_path / "secret-dsn"
    dsn.write_text(f"postgresql+psycopg://monitor:{sentinels['DSN_PW']}@127.0.0.1:9/db\n", encoding="utf-8")
    url = f"http://127.0.0.1:{port}"
    return OFFICE_YAML + f"""\
agent: {{state_dir: {tmp_path / "state"}}}
modules:
  http_basic:
    kind: http
    timeout: 2s
    http: {{method: POST, basic_auth: {{username: monitor, password: {ref("HTTP_PW")}}}, body: {ref("HTTP_BODY")}}}
  http_bearer:
    kind: http
    timeout: 2s
    http:
      bearer_token: {ref("BEARER")}
      steps:
        - {{name: login, url: /401/login, method: POST, body: {ref("STEP_BODY")}, valid_status_codes: [401]}}
        - {{name: form, url: /401/form, method: POST, form: {{token: {ref("STEP_FORM")}}}}}
  http_form:
    kind: http
    timeout: 2s
    http: {{method: POST, form: {{token: {ref("FORM")}}}}}
  ps:
    kind: publicservice
    timeout: 2s
    publicservice:
      basic_auth: {{username: u, password: {ref("PS_PW")}}}
      levels: {{"2": {{json_path: "$.level2"}}}}
  ps_bearer:
    kind: publicservice
    timeout: 2s
    publicservice:
      method: POST
      bearer_token: {ref("PS_BEARER")}
      body: {ref("PS_BODY")}
      levels: {{"2": {{json_path: "$.level2"}}}}
  mail_auth:
    kind: mail
    timeout: 2s
    mail: {{protocol: smtp, auth: {{username: u, password: {ref("MAIL_PW")}}}}}
  mail_roundtrip:
    kind: mail
    timeout: 2s
    mail:
      protocol: roundtrip
      auth: {{username: a, password: {ref("RT_PW")}}}
      roundtrip: {{imap_server: "127.0.0.1:9", sender: a@testbed.invalid, recipient: b@testbed.invalid,
                  imap_auth: {{username: b, password: {ref("IMAP_PW")}}}}}
  sql_q:
    kind: sql
    timeout: 2s
    sql:
      dsns: {{db: {{file: {dsn}}}}}
      queries:
        - name: q
          query: SELECT 1 AS v
          metrics: [{{metric_name: egov_test_v, type: gauge, help: test, values: [v]}}]
  sql_split:
    kind: sql
    timeout: 2s
    sql:
      dsns: {{db: {{url: "postgresql+psycopg://monitor@127.0.0.1:9/db", password: {ref("DSN_SPLIT_PW")}}}}}
      queries:
        - name: q
          query: SELECT 1 AS v
          metrics: [{{metric_name: egov_test_v, type: gauge, help: test, values: [v]}}]
  snmp_system: {{kind: snmp, timeout: 2s, snmp: {{walk: [1.3.6.1.2.1.1]}}}}
auths:
  v3: {{version: 3, username: mon, security_level: authPriv, auth_protocol: SHA256, password: {ref("SNMP_PW")},
       priv_protocol: AES, priv_password: {ref("SNMP_PRIV")}}}
  v2: {{version: 2, community: {ref("COMMUNITY")}}}
checks:
  - {{name: hb, module: http_basic, service: portal, targets: ["{url}/401"], interval: 3s}}
  - {{name: hbe, module: http_bearer, service: portal, targets: ["{url}/401"], interval: 3s}}
  - {{name: hf, module: http_form, service: portal, targets: ["{url}/401"], interval: 3s}}
  - {{name: ps, module: ps, service: publicservice, targets: ["{url}/401"], interval: 3s}}
  - {{name: psb, module: ps_bearer, service: publicservice, targets: ["{url}/401"], interval: 3s}}
  - {{name: m, module: mail_auth, service: mail, targets: ["127.0.0.1:9"], interval: 3s}}
  - {{name: mr, module: mail_roundtrip, service: mail, targets: ["127.0.0.1:9"], interval: 3s}}
  - {{name: s, module: sql_q, service: dms, targets: [db], interval: 3s}}
  - {{name: s2, module: sql_split, service: dms, targets: [db], interval: 3s}}
  - {{name: sn3, module: snmp_system, auth: v3, service: wan, targets: ["udp://127.0.0.1:9"], interval: 3s}}
  - {{name: sn2, module: snmp_system, auth: v2, service: wan, targets: ["udp://127.0.0.1:9"], interval: 3s}}
remote_write:
  - {{url: "{url}/401/api/v1/write", name: rw401, basic_auth: {{username: u, password: {ref("RW_PW")}}},
     queue: {{batch_send_deadline: 1s}}}}
  - {{url: "{url}/400/api/v1/write", name: rw400, bearer_token: {ref("RW_BEARER")},
     queue: {{batch_send_deadline: 1s}}}}
"""


def forms(value: str) -> list[str]:
    """A secret and the encodings a careless log line could carry it in."""
    out = [value, base64.b64encode(value.encode()).decode().rstrip("=")]
    for user in ("monitor", "u", "alice"):
        out.append(base64.b64encode(f"{user}:{value}".encode()).decode())
    return out


@pytest.mark.slow
def test_sentinel_secrets_never_show(start_agent, tmp_path: Path, recorder: int, hashes: dict[str, str],
                                     monkeypatch) -> None:
    sentinels = {name: f"S3NT1NEL{secrets.token_hex(6)}{name.lower()}" for name in NAMES}
    for name in ENV_SECRETS:
        monkeypatch.setenv(f"EGOV_TEST_{name}", sentinels[name])
    config_text = sentinel_config(tmp_path, recorder, sentinels)
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  alice: {hashes['alice']}\n", encoding="utf-8")
    agent = start_agent(config_text, "--web.config.file", str(web), "--log.level", "debug", wait_ready=False)
    auth = ("alice", "alice123")

    def ready() -> bool:
        if agent.process.poll() is not None:
            pytest.fail(agent.log())
        return request(agent.address, "/-/ready", auth=auth, timeout=2).status == 200

    wait_for(ready, timeout=30)
    state = tmp_path / "state"

    def everything_ran() -> bool:
        page = request(agent.address, "/", auth=auth).body.decode()
        seen = b"\n".join(Recorder.seen)
        checks = ("hb", "hbe", "hf", "ps", "psb", "m", "mr", "s", "s2", "sn3", "sn2")
        return (all(f">{name}<" in page for name in checks)
                and any(p.name == "dead-letter.seg" for p in state.rglob("*"))
                and sentinels["STEP_FORM"].encode() in seen and sentinels["RW_BEARER"].encode() in seen)

    wait_for(everything_ran, timeout=40, interval=0.5)
    outputs = {
        "/metrics": request(agent.address, auth=auth).body.decode(),
        "/": request(agent.address, "/", auth=auth).body.decode(),
        "reload": request(agent.address, "/-/reload", method="POST", auth=auth).body.decode(),
        "wrong web password": str(request(agent.address, auth=("alice", sentinels["WEB_PW"])).status),
        "unknown user": str(request(agent.address, auth=(sentinels["WEB_PW"], "x")).status),
    }
    agent.stop()
    outputs["agent log"] = agent.log()
    env = {**os.environ, **{f"EGOV_TEST_{n}": sentinels[n] for n in ENV_SECRETS}}
    done = subprocess.run([*egov_agent_command(), "check-config", str(agent.config_path)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    outputs["check-config"] = done.stdout + done.stderr
    for module, target in (("http_basic", f"http://127.0.0.1:{recorder}/401"), ("http_bearer",
                           f"http://127.0.0.1:{recorder}/401"), ("ps_bearer", f"http://127.0.0.1:{recorder}/401"),
                           ("mail_roundtrip", "127.0.0.1:9"), ("sql_q", "db"), ("sql_split", "db")):
        done = subprocess.run([*egov_agent_command(), "probe", "--config", str(agent.config_path), "--module",
                               module, "--debug", "--log.level", "debug", target], capture_output=True, text=True,
                              timeout=60, env=env)
        assert done.returncode in (0, 1), done.stderr
        outputs[f"probe --debug {module}"] = done.stdout + done.stderr
    for path in state.rglob("*"):
        if path.is_file():
            outputs[f"state file {path.relative_to(state)}"] = path.read_bytes().decode("latin-1")
    # The test can fail: the secrets were loaded and sent where they belong.
    seen = b"\n".join(Recorder.seen)
    for name in ("HTTP_BODY", "BEARER", "STEP_BODY", "STEP_FORM", "FORM", "PS_BEARER", "PS_BODY", "RW_BEARER"):
        assert sentinels[name].encode() in seen, name
    for name, user in (("HTTP_PW", "monitor"), ("PS_PW", "u"), ("RW_PW", "u")):
        assert base64.b64encode(f"{user}:{sentinels[name]}".encode()) in seen, name
    assert outputs["wrong web password"] == "401" and outputs["unknown user"] == "401"
    leaks = [(where, name) for where, text in outputs.items() for name, value in sentinels.items()
             if any(form in text for form in forms(value))]
    assert not leaks, leaks
    assert "S3NT1NEL" not in "".join(outputs.values())
