"""The sql kind against a real PostgreSQL 15 on loopback: values, labels, errors, timeouts, outages, caps, read-only."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.postgres import PASSWORD, Postgres
from testlib import free_port

from agent.errors import Outcome
from agent.runner import Job, ProbeResult, run_job
from collectors import sql
from collectors.base import Sample

pytestmark = pytest.mark.slow
_modules = itertools.count()


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    server = Postgres().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def db(pg: Postgres, request: pytest.FixtureRequest) -> str:
    """A fresh database for one test, with a small table."""
    name = pg.create_database(f"t{abs(hash(request.node.name)) % 10**8}")
    with pg.connect(name) as conn:
        conn.execute("CREATE TABLE t (agency text, kind text, a int, b numeric, c text)")
        conn.execute("CREATE SEQUENCE s")
    return name


def settings(tmp_path: Path, dsn: str, queries: list[dict[str, Any]], **extra: Any) -> sql.SqlSettings:
    """Settings with one DSN named `db`, read from a secret file."""
    secret = tmp_path / f"dsn{next(_modules)}"
    secret.write_text(dsn + "\n")
    return sql.SqlSettings.model_validate({"dsns": {"db": {"file": str(secret)}}, "queries": queries, **extra})


def query(name: str, text: str, metric: str = "egov_test_value", **extra: Any) -> dict[str, Any]:
    """A query filling one gauge from its `value` column."""
    metric_extra = extra.pop("metric", {})
    return {"name": name, "query": text, **extra,
            "metrics": [{"metric_name": metric, "help": "A test value.", "values": ["value"], **metric_extra}]}


async def run(s: sql.SqlSettings, module_timeout: float = 10.0, module: str | None = None) -> ProbeResult:
    """One run through the real runner, as the scheduler does it."""
    return await run_job(Job("c", "db", module or f"m{next(_modules)}", "dms", 60.0, module_timeout, sql.SPEC, s))


def values(samples: list[Sample], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in samples if s.name == name}


def per_query(samples: list[Sample], name: str) -> dict[str, float]:
    return {dict(s.labels)["query"]: s.value for s in samples if s.name == name}


# --- values and labels -----------------------------------------------------------------------------------------


async def test_rows_become_labelled_samples_matching_python_counts(pg: Postgres, db: str, tmp_path: Path) -> None:
    rng = random.Random(6)
    agencies = [f"000.00.{i:02d}.H49" for i in range(1, 8)]
    rows = [(rng.choice(agencies), rng.choice(["electronic", "paper"]), rng.randint(0, 50),
             round(rng.uniform(0, 10), 2)) for _ in range(2000)]
    with pg.connect(db) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO t (agency, kind, a, b) VALUES (%s, %s, %s, %s)", rows)
    counts = Counter((agency, kind) for agency, kind, _, _ in rows)
    sums: dict[tuple[str, str], float] = {}
    for agency, kind, a, _ in rows:
        sums[(agency, kind)] = sums.get((agency, kind), 0) + a
    s = settings(tmp_path, pg.dsn(db), [{
        "name": "by_kind",
        "query": "SELECT agency, kind, count(*) AS n, sum(a) AS total FROM t GROUP BY agency, kind;",
        "metrics": [
            {"metric_name": "egov_test_rows", "help": "Rows.", "key_labels": ["agency", "kind"], "values": ["n"],
             "static_labels": {"source": "test"}},
            {"metric_name": "egov_test_figures", "help": "Figures.", "key_labels": ["agency", "kind"],
             "values": ["n", "total"], "value_label": "column"},
        ]}])
    result = await run(s)
    assert result.success, result.error
    rows_metric = values(result.samples, "egov_test_rows")
    assert rows_metric == {(("agency", a), ("kind", k), ("source", "test")): float(n) for (a, k), n in counts.items()}
    figures = values(result.samples, "egov_test_figures")
    assert len(figures) == 2 * len(counts)
    for (agency, kind), total in sums.items():
        assert figures[(("agency", agency), ("kind", kind), ("column", "total"))] == total
        assert figures[(("agency", agency), ("kind", kind), ("column", "n"))] == counts[(agency, kind)]
    assert per_query(result.samples, "egov_sql_query_success") == {"by_kind": 1}
    assert per_query(result.samples, "egov_sql_query_rows") == {"by_kind": len(counts)}
    assert per_query(result.samples, "egov_sql_query_truncated") == {"by_kind": 0}
    assert 0 < per_query(result.samples, "egov_sql_query_duration_seconds")["by_kind"] < 2


async def test_nulls_are_skipped_and_text_numbers_dates_and_bools_converted(
        pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [{
        "name": "mixed",
        "query": "SELECT * FROM (VALUES ('a', NULL::numeric, '1.5', true, DATE '2026-01-02'),"
                 " ('b', 2.5, 'x', false, NULL)) AS v(k, n, txt, flag, day)",
        "metrics": [{"metric_name": "egov_test_mixed", "help": "Mixed.", "key_labels": ["k"],
                     "values": ["n", "txt", "flag", "day"], "value_label": "col"}]}])
    result = await run(s)
    assert result.success, result.error
    got = {(dict(k)["k"], dict(k)["col"]): v for k, v in values(result.samples, "egov_test_mixed").items()}
    assert got == {("a", "txt"): 1.5, ("a", "flag"): 1.0, ("a", "day"): 1767312000.0,
                   ("b", "n"): 2.5, ("b", "flag"): 0.0}
    assert result.partial_errors == {"bad_value": 1}  # 'x' is not a number


async def test_missing_column_is_a_mismatch_and_other_queries_still_report(
        pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [
        query("wrong", "SELECT 1 AS other"),
        query("right", "SELECT 7 AS value", metric="egov_test_other"),
    ])
    result = await run(s)
    assert not result.success
    assert result.outcome is Outcome.MISMATCH
    assert "needs column 'value'" in result.error and "returned other" in result.error
    assert per_query(result.samples, "egov_sql_query_success") == {"wrong": 0, "right": 1}
    assert values(result.samples, "egov_test_other") == {(): 7.0}


# --- SQL errors, timeouts, outages -----------------------------------------------------------------------------


async def test_sql_error_is_protocol_error_with_the_database_message(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("broken", "SELECT value FROM no_such_table"),
                                        query("fine", "SELECT 3 AS value", metric="egov_test_fine")])
    result = await run(s)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert 'relation "no_such_table" does not exist' in result.error
    assert "broken" in result.error
    assert per_query(result.samples, "egov_sql_query_success") == {"broken": 0, "fine": 1}
    assert values(result.samples, "egov_test_fine") == {(): 3.0}


async def test_slow_query_is_cancelled_on_the_server_at_its_timeout(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("slow", "SELECT pg_sleep(20) AS value", timeout="1s")])
    started = time.monotonic()
    result = await run(s, module_timeout=5.0)
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT
    assert "canceling statement due to statement timeout" in result.error
    assert 0.9 < elapsed < 2.0
    assert per_query(result.samples, "egov_sql_query_success") == {"slow": 0}
    with pg.connect(db) as conn:
        busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(20)%' "
                            "AND state = 'active' AND pid <> pg_backend_pid()").fetchone()
    assert busy == (0,)


async def test_query_without_own_timeout_ends_within_the_module_timeout(
        pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("slow", "SELECT pg_sleep(20) AS value")])
    started = time.monotonic()
    result = await run(s, module_timeout=2.5)
    assert result.outcome is Outcome.TIMEOUT
    assert time.monotonic() - started < 2.6


async def test_database_that_goes_away_and_comes_back(tmp_path: Path) -> None:
    server = Postgres().start()
    try:
        s = settings(tmp_path, server.dsn(), [query("one", "SELECT 1 AS value")])
        module = "outage"
        first = await run(s, module=module)
        assert first.success, first.error
        server.stop()
        down = await run(s, module_timeout=3.0, module=module)
        assert down.outcome is Outcome.CONNECTION_FAILED, down.error
        assert "cannot connect to dsn 'db'" in down.error
        assert per_query(down.samples, "egov_sql_query_success") == {"one": 0}
        server.start()
        back = await run(s, module=module)
        assert back.success, back.error
        assert values(back.samples, "egov_test_value") == {(): 1.0}
    finally:
        server.cleanup()


async def test_unreachable_port_is_connection_failed(tmp_path: Path) -> None:
    dsn = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/x"
    result = await run(settings(tmp_path, dsn, [query("one", "SELECT 1 AS value")]), module_timeout=3.0)
    assert result.outcome is Outcome.CONNECTION_FAILED
    assert "Connection refused" in result.error


async def test_wrong_password_is_auth_failed_and_never_shown(pg: Postgres, db: str, tmp_path: Path) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    result = await run(settings(tmp_path, pg.dsn(db, password=wrong), [query("one", "SELECT 1 AS value")]))
    assert result.outcome is Outcome.AUTH_FAILED
    assert "password authentication failed" in result.error
    text = result.error + "".join(line.message for line in result.lines) + repr(result.samples)
    assert wrong not in text and PASSWORD not in text


# --- caps, caching, read-only ----------------------------------------------------------------------------------


async def test_millions_of_rows_are_capped_quickly_with_bounded_memory(
        pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("huge", "SELECT n AS value FROM generate_series(1, 5000000) AS n")],
                 max_rows=1000)
    await run(s)  # warm up: imports and the pool are not what is measured
    tracemalloc.start()
    result = await run(s)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.success, result.error
    assert peak < 8 * 1024 * 1024  # capped in the database: 5M rows would not fit (timing: tests/bench/bench_sql.py)
    assert sorted(values(result.samples, "egov_test_value").values()) != []
    assert sum(1 for s_ in result.samples if s_.name == "egov_test_value") == 1000
    assert per_query(result.samples, "egov_sql_query_rows") == {"huge": 1000}
    assert per_query(result.samples, "egov_sql_query_truncated") == {"huge": 1}
    assert result.partial_errors == {"rows_capped": 1}


async def test_cap_also_works_without_the_limit_wrapper(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("some", "SELECT n AS value FROM generate_series(1, 50) AS n")],
                 max_rows=10, limit_in_query=False)
    result = await run(s)
    assert result.success
    assert per_query(result.samples, "egov_sql_query_rows") == {"some": 10}
    assert per_query(result.samples, "egov_sql_query_truncated") == {"some": 1}


async def test_sessions_are_read_only(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [
        query("insert", "INSERT INTO t (agency, a) VALUES ('x', 1) RETURNING a AS value"),
        query("nextval", "SELECT nextval('s') AS value", metric="egov_test_seq"),
    ], limit_in_query=False)
    result = await run(s)
    assert result.outcome is Outcome.PROTOCOL_ERROR
    assert "cannot execute INSERT in a read-only transaction" in result.error
    assert "cannot execute nextval() in a read-only transaction" in "".join(line.message for line in result.lines)
    with pg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


async def test_min_interval_reuses_the_last_result(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [
        query("cached", "SELECT count(*) AS value FROM t", min_interval="1h"),
        query("fresh", "SELECT count(*) AS value FROM t", metric="egov_test_fresh"),
    ])
    first = await run(s, module="cache")
    with pg.connect(db) as conn:
        conn.execute("INSERT INTO t (agency, a) VALUES ('x', 1)")
    await asyncio.sleep(0.05)
    second = await run(s, module="cache")
    assert values(first.samples, "egov_test_value") == values(second.samples, "egov_test_value") == {(): 0.0}
    assert values(second.samples, "egov_test_fresh") == {(): 1.0}
    assert per_query(first.samples, "egov_sql_query_result_age_seconds")["cached"] == 0
    assert per_query(second.samples, "egov_sql_query_result_age_seconds")["cached"] >= 0.05
    assert per_query(second.samples, "egov_sql_query_success") == {"cached": 1, "fresh": 1}


async def test_only_cached_queries_need_no_connection(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("cached", "SELECT 5 AS value", min_interval="1h")])
    first = await run(s, module="cache-only")
    again = await run(s, module="cache-only")
    assert first.success and again.success
    assert any("connected to dsn" in line.message for line in first.lines)
    assert not any("connected to dsn" in line.message for line in again.lines)
    assert values(again.samples, "egov_test_value") == {(): 5.0}


async def test_url_and_password_parts_need_no_url_encoding(pg: Postgres, db: str, tmp_path: Path) -> None:
    tricky = "p@ss:w/rd#1?ä %"
    with pg.connect() as conn:
        conn.execute("DROP ROLE IF EXISTS tricky")
        conn.execute("CREATE ROLE tricky LOGIN PASSWORD 'p@ss:w/rd#1?ä %'")
    password = tmp_path / "tricky.pass"
    password.write_text(tricky + "\n", encoding="utf-8")
    s = sql.SqlSettings.model_validate({
        "dsns": {"db": {"url": f"postgresql+psycopg://tricky@127.0.0.1:{pg.port}/{db}",
                        "password": {"file": str(password)}}},
        "queries": [query("one", "SELECT 1 AS value")]})
    assert s.dsns["db"].source == f"url + password file:{password}"
    result = await run(s)
    assert result.success, result.error
    password.write_text("wrong\n")
    s = sql.SqlSettings.model_validate(s.model_dump() | {"dsns": {"db": {
        "url": f"postgresql+psycopg://tricky@127.0.0.1:{pg.port}/{db}", "password": {"file": str(password)}}}})
    denied = await run(s)
    assert denied.outcome is Outcome.AUTH_FAILED


async def test_cancellation_propagates_and_the_next_run_works(pg: Postgres, db: str, tmp_path: Path) -> None:
    s = settings(tmp_path, pg.dsn(db), [query("slow", "SELECT pg_sleep(3) AS value")])
    task = asyncio.create_task(run(s, module="cancel"))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    quick = settings(tmp_path, pg.dsn(db), [query("one", "SELECT 1 AS value")])
    result = await run(quick, module="cancel")
    assert result.success, result.error
