"""The sql kind's settings: bad queries, metrics, labels and DSNs fail at load with their YAML path, never the DSN."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError

DSN = "postgresql+psycopg://monitor:Very-Secret-pw1@127.0.0.1:5432/qlvb"
OFFICE = "office: {org_id: 000.00.00.H49, name: test, level: province}\n"


@pytest.fixture
def dsn_file(tmp_path: Path) -> Path:
    path = tmp_path / "dsn"
    path.write_text(DSN + "\n")
    return path


def config(dsn_file: Path, queries: str, extra: str = "", checks: str = "", timeout: str = "10s") -> bytes:
    return (OFFICE + f"""
modules:
  counts:
    kind: sql
    timeout: {timeout}
    sql:
      dsns: {{qlvb: {{file: {dsn_file}}}}}
{extra}      queries:
{queries}
checks:
  - {{name: counts, module: counts, service: dms, targets: [{checks or "qlvb"}], interval: 5m}}
""").encode()


GOOD = """        - name: docs
          query: SELECT agency, count(*) AS n FROM d GROUP BY agency
          metrics:
            - {metric_name: egov_dms_documents, help: Documents., key_labels: [agency], values: [n]}
"""


def errors(raw: bytes) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "agent.yaml")
    return caught.value.render()


def test_good_config_loads_and_declares_its_metrics(dsn_file: Path) -> None:
    from collectors import COLLECTORS

    cfg = parse_config(config(dsn_file, GOOD), "agent.yaml")
    settings = cfg.modules["counts"].sql
    catalog = COLLECTORS["sql"].catalog_for(settings)
    assert catalog["egov_dms_documents"].labels == ("agency",)
    assert catalog["egov_dms_documents"].type == "gauge"
    assert "egov_sql_query_success" in catalog
    assert DSN not in repr(settings) and "Very-Secret" not in cfg.modules["counts"].model_dump_json()


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        (GOOD.replace("key_labels: [agency]", "key_labels: [org_id]"), "label 'org_id' is reserved"),
        (GOOD.replace("key_labels: [agency]", "key_labels: [target]"), "label 'target' is reserved"),
        (GOOD.replace("values: [n]", "values: [n, m]"), "set value_label"),
        (GOOD.replace("values: [n]", "values: [agency]"), "both a key label and a value"),
        (GOOD.replace("egov_dms_documents", "probe_success"), "reserved for the agent's own metrics"),
        (GOOD.replace("egov_dms_documents", "egov_sql_query_rows"), "reserved for the agent's own metrics"),
        (GOOD.replace("egov_dms_documents", "bad-name"), "metric_name"),
        (GOOD.replace("help: Documents.,", "type: counter, help: Documents.,"), "must end in _total"),
        (GOOD.replace("key_labels: [agency]", "key_labels: [agency, agency]"), "given twice"),
        (GOOD + GOOD, "query name 'docs' is used twice"),
        (GOOD + GOOD.replace("name: docs", "name: other").replace("[agency]", "[agency, month]"),
         "differs in type, help or labels"),
        (GOOD.replace("query: SELECT", "query: ' ; '\n          unused: SELECT"), "unknown key"),
        (GOOD.replace("          query: SELECT agency, count(*) AS n FROM d GROUP BY agency\n",
                      "          query: ';'\n"), "query is empty"),
    ],
)
def test_bad_queries_fail_at_load(dsn_file: Path, queries: str, message: str) -> None:
    text = errors(config(dsn_file, queries))
    assert message in text
    assert "modules.counts" in text
    assert DSN not in text and "Very-Secret" not in text


def test_target_must_be_a_dsn_name(dsn_file: Path) -> None:
    text = errors(config(dsn_file, GOOD, checks=DSN.replace(":", "_")))
    assert "checks[0].targets[0]" in text and "is not a dsn of this module; known: qlvb" in text


def test_query_timeout_must_fit_the_module_timeout(dsn_file: Path) -> None:
    text = errors(config(dsn_file, GOOD.replace("- name: docs", "- name: docs\n          timeout: 10s")))
    assert "query 'docs': timeout 10s must be shorter than the module timeout 10s" in text


def test_limits_are_bounded(dsn_file: Path) -> None:
    assert "max_rows" in errors(config(dsn_file, GOOD, extra="      max_rows: 0\n"))
    assert "max_connections" in errors(config(dsn_file, GOOD, extra="      max_connections: 100\n"))


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("not a url at all Very-Secret", "is not a database URL like postgresql+psycopg://"),
        ("oracle://u:Very-Secret@h/db", "unsupported database 'oracle'"),
        ("postgresql+psycopg2://u:Very-Secret@h/db", "driver 'psycopg2' is not an asyncio driver"),
        ("mssql+aioodbc://u:Very-Secret@h/db", "driver aioodbc is not installed (pip install aioodbc)"),
    ],
)
def test_bad_dsns_are_named_but_never_shown(tmp_path: Path, dsn: str, message: str) -> None:
    path = tmp_path / "dsn"
    path.write_text(dsn)
    text = errors(config(path, GOOD))
    assert message in text
    assert "dsn 'qlvb'" in text
    assert "Very-Secret" not in text


def test_same_metric_in_two_modules_must_agree_in_type(dsn_file: Path) -> None:
    raw = config(dsn_file, GOOD.replace("egov_dms_documents", "egov_dms_documents_total")).decode()
    other = raw.split("modules:\n")[1].split("checks:")[0].replace("counts:", "counts2:", 1)
    raw = raw.replace("checks:", other.replace("help: Documents.,", "type: counter, help: Documents.,") + "checks:")
    text = errors(raw.encode())
    assert "metric 'egov_dms_documents_total' is also declared by module 'counts'" in text


def test_importing_collectors_does_not_import_sqlalchemy() -> None:
    code = "import sys, collectors, agent.config; print('sqlalchemy' in sys.modules, 'psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_dsn_without_password_may_be_written_inline(tmp_path: Path) -> None:
    raw = config(tmp_path / "unused", GOOD).replace(
        f"{{file: {tmp_path / 'unused'}}}".encode(), b'"postgresql+psycopg://egov_monitor@/qlvb?host=/run/postgresql"')
    cfg = parse_config(raw, "agent.yaml")
    assert cfg.modules["counts"].sql.dsns["qlvb"].source == "config"


@pytest.mark.parametrize("dsn", ["postgresql+psycopg://u:Very-Secret@h/db", "postgresql+psycopg://u@h/db?password=x"])
def test_dsn_with_password_must_be_a_secret(tmp_path: Path, dsn: str) -> None:
    raw = config(tmp_path / "unused", GOOD).replace(f"{{file: {tmp_path / 'unused'}}}".encode(), f'"{dsn}"'.encode())
    text = errors(raw)
    assert "a dsn with a password must be a secret" in text
    assert "Very-Secret" not in text


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ('{url: "postgresql+psycopg://u:Very-Secret@h/db", password: {file: PW}}', "must be a secret"),
        ('{url: "postgresql+psycopg://u@h/db"}', "a dsn given by parts is {url"),
        ('{url: "postgresql+psycopg://u@h/db", password: Very-Secret}', "never inline"),
    ],
)
def test_dsn_parts_are_checked(tmp_path: Path, dsn: str, message: str) -> None:
    password = tmp_path / "pw"
    password.write_text("pw-Very-Secret\n")
    raw = config(tmp_path / "unused", GOOD).replace(f"{{file: {tmp_path / 'unused'}}}".encode(),
                                                     dsn.replace("PW", str(password)).encode())
    text = errors(raw)
    assert message in text
    assert "Very-Secret" not in text
