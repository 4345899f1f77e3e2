"""The shipped sql examples (config/examples/sql_*.yaml) against their schemas in a real PostgreSQL, random data.

The expected counts are computed here in Python from the rows the test inserted (Vietnam calendar days and months,
the 13-month window, secret documents left out), independently of the SQL under test. The agent connects as the
read-only role the schema creates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.postgres import Postgres
from testlib import REPO

from agent.config import parse_config
from agent.runner import Job, run_job
from collectors import sql

pytestmark = pytest.mark.slow
VN = dt.timezone(dt.timedelta(hours=7))
TESTDATA = REPO / "tests/testdata/sql"
AGENCIES = ["000.00.00.H49", "000.00.01.H49", "000.00.15.H49", "000.00.16.H49", "000.12.32.H49"]


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    server = Postgres().start()
    try:
        yield server
    finally:
        server.cleanup()


def enabled_example(name: str, password_path: Path, secret_path: str, url: str, test_url: str) -> Path:
    """The example with its '#| ' lines enabled, its database URL and password file pointed at the test server."""
    text = (REPO / "config/examples" / name).read_text(encoding="utf-8")
    text = re.sub(r"^(\s*)#\| ?", r"\1", text, flags=re.MULTILINE)
    assert secret_path in text and f"url: {url}\n" in text
    text = text.replace(secret_path, str(password_path)).replace(f"url: {url}\n", f"url: {test_url}\n")
    path = password_path.parent / name
    path.write_text(text, encoding="utf-8")
    return path


def module_settings(config_path: Path, module: str) -> sql.SqlSettings:
    settings: sql.SqlSettings = parse_config(config_path.read_bytes(), str(config_path)).modules[module].sql
    return settings


def window_start(now: dt.datetime) -> dt.datetime:
    """First day of the month twelve months before this one, midnight Vietnam time."""
    local = now.astimezone(VN)
    year, month = local.year, local.month - 12
    while month < 1:
        year, month = year - 1, month + 12
    return dt.datetime(year, month, 1, tzinfo=VN)


def random_times(rng: random.Random, now: dt.datetime, count: int) -> list[dt.datetime]:
    """Times over the last ~16 months, plus the edges: the window's start and local month boundaries."""
    start = window_start(now)
    edges = [start, start - dt.timedelta(seconds=1), start + dt.timedelta(seconds=1)]
    local = now.astimezone(VN)
    first_of_month = dt.datetime(local.year, local.month, 1, tzinfo=VN)
    edges += [first_of_month - dt.timedelta(minutes=30), first_of_month + dt.timedelta(minutes=30)]
    span = (now - (start - dt.timedelta(days=100))).total_seconds()
    times = [now - dt.timedelta(seconds=rng.uniform(60, span)) for _ in range(count)]
    return [t for t in edges if t < now] + times


def samples_by_labels(result: Any, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(v for _, v in s.labels): s.value for s in result.samples if s.name == name}


async def test_dms_example_counts_documents_by_channel_and_signature(pg: Postgres, tmp_path: Path) -> None:
    db = pg.create_database("qlvb", (TESTDATA / "dms_schema.sql").read_text())
    rng = random.Random(2012)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i, at in enumerate(random_times(rng, now, 3000)):
        channel = rng.choices(["electronic", "paper"], weights=[7, 3])[0]
        rows.append((rng.choice(AGENCIES), f"{i}/UBND-VP", at, channel, rng.random() < 0.05,
                     channel == "electronic" and rng.random() < 0.8))
    with pg.connect(db) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO agencies VALUES (%s, %s)", [(a, f"agency {a}") for a in AGENCIES])
        cur.executemany("INSERT INTO outgoing_documents (agency_id, number_notation, registered_at, channel, secret, "
                        "signed) VALUES (%s, %s, %s, %s, %s, %s)", rows)
    start = window_start(now)
    counted = [r for r in rows if not r[4] and r[2] >= start]
    by_channel = Counter((a, at.astimezone(VN).strftime("%Y-%m"), ch) for a, _, at, ch, _, _ in counted)
    signed = Counter((a, at.astimezone(VN).strftime("%Y-%m")) for a, _, at, ch, _, sg in counted
                     if ch == "electronic" and sg)
    assert len(by_channel) > 100 and len({m for _, m, _ in by_channel}) == 13

    password = tmp_path / "qlvb.pass"
    password.write_text("monitor-test-password\n")
    config = enabled_example("sql_dms.yaml", password, "/etc/egov-agent/qlvb.pass",
                             "postgresql+psycopg://egov_monitor@10.49.0.20:5432/qlvb",
                             f"postgresql+psycopg://egov_monitor@127.0.0.1:{pg.port}/{db}")
    settings = module_settings(config, "dms_counts")
    result = await run_job(Job("qlvb-counts", "qlvb", "dms_counts", "dms", 300.0, 60.0, sql.SPEC, settings))
    assert result.success, result.error
    assert samples_by_labels(result, "egov_dms_documents") == {k: float(v) for k, v in by_channel.items()}
    assert samples_by_labels(result, "egov_dms_documents_signed") == {k: float(v) for k, v in signed.items()}

    # The same through the command line a user runs: `egov-agent probe` prints the exposition and exits 0.
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "agent", "probe", "--config", str(config), "--module", "dms_counts",
                         "qlvb"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("egov_dms_documents{")]
    assert len(lines) == len(by_channel)
    assert 'egov_sql_query_success{query="documents_signed",' in out.stdout
    assert "monitor-test-password" not in out.stdout + out.stderr


async def test_onestop_example_counts_dossiers_by_channel_and_timeliness(pg: Postgres, tmp_path: Path) -> None:
    db = pg.create_database("motcua", (TESTDATA / "onestop_schema.sql").read_text())
    rng = random.Random(766)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i, received in enumerate(random_times(rng, now, 3000)):
        due = received + dt.timedelta(days=rng.randint(1, 15), hours=rng.randint(0, 23))
        finished: dt.datetime | None = received + dt.timedelta(days=rng.randint(0, 20), minutes=rng.randint(0, 1440))
        if finished is not None and (finished > now or rng.random() < 0.1):
            finished = None
        rows.append((f"HS-{i:06d}", f"1.{rng.randint(1000, 9999)}", rng.choice(AGENCIES), received,
                     rng.choices(["online", "direct", "postal"], weights=[6, 3, 1])[0], due, finished))
    # Edge cases of timeliness in Vietnam days: finished late in the evening of the due day (UTC: already next day).
    evening = window_start(now) + dt.timedelta(days=40, hours=23, minutes=30)
    rows.append(("HS-edge-1", "1.0001", AGENCIES[0], evening - dt.timedelta(days=3), "online", evening,
                 evening + dt.timedelta(minutes=20)))
    with pg.connect(db) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO dossiers (code, procedure_code, agency_id, received_at, channel, due_at, "
                        "finished_at) VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    start = window_start(now)
    received = Counter((a, r.astimezone(VN).strftime("%Y-%m"), ch) for _, _, a, r, ch, _, _ in rows if r >= start)

    def timeliness(finished: dt.datetime, due: dt.datetime) -> str:
        f_day, d_day = finished.astimezone(VN).date(), due.astimezone(VN).date()
        return "early" if f_day < d_day else "on_time" if f_day == d_day else "late"

    completed = Counter((a, f.astimezone(VN).strftime("%Y-%m"), timeliness(f, d))
                        for _, _, a, _, _, d, f in rows if f is not None and f >= start)
    assert {t for _, _, t in completed} == {"early", "on_time", "late"}

    password = tmp_path / "motcua.pass"
    password.write_text("monitor-test-password\n")
    config = enabled_example("sql_onestop.yaml", password, "/etc/egov-agent/motcua.pass",
                             "postgresql+psycopg://egov_monitor@10.49.0.21:5432/motcua",
                             f"postgresql+psycopg://egov_monitor@127.0.0.1:{pg.port}/{db}")
    settings = module_settings(config, "onestop_counts")
    result = await run_job(Job("motcua-counts", "motcua", "onestop_counts", "onestop", 300.0, 60.0, sql.SPEC,
                               settings))
    assert result.success, result.error
    assert samples_by_labels(result, "egov_onestop_dossiers") == {k: float(v) for k, v in received.items()}
    assert samples_by_labels(result, "egov_onestop_dossiers_completed") == {
        k: float(v) for k, v in completed.items()}
