"""SQL queries as metrics, on sql_exporter's model: named queries whose columns become labels and values.

The target of a check is a DSN *name* from the module's `dsns`; the DSN itself is a secret. Sessions are read-only,
each query has a server-side and a client-side timeout and a row cap, and heavy queries may be cached for
`min_interval`. SQLAlchemy and the drivers are loaded on first use (collectors/_sql_engine.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.durations import Duration, format_duration
from agent.errors import Outcome
from agent.secrets import Secret, SecretValue
from collectors import _sql_engine
from collectors._lru import LruMap
from collectors.base import (
    RESERVED_LABELS,
    CollectorSpec,
    LabelName,
    MetricName,
    MetricSpec,
    ProbeContext,
    Settings,
    check_user_metric_name,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

METRICS = (
    MetricSpec("egov_sql_query_success", "gauge", "1 if the query ran and its rows could be read, else 0.",
               ("query",)),
    MetricSpec("egov_sql_query_duration_seconds", "gauge",
               "Seconds the query took on the database, rows fetched (of the cached run when served from cache).",
               ("query",)),
    MetricSpec("egov_sql_query_rows", "gauge", "Rows the query returned (at most its row cap).", ("query",)),
    MetricSpec("egov_sql_query_truncated", "gauge", "1 if the query returned more rows than its cap.", ("query",)),
    MetricSpec("egov_sql_query_result_age_seconds", "gauge",
               "Age of the result exported: 0 when the query ran in this run, more when min_interval reused it.",
               ("query",)),
)
OWN_NAMES = frozenset(m.name for m in METRICS)
TIMEOUT_GRACE = 0.5
"""The client waits this much longer than the server-side statement timeout, so the server's cancel wins."""
MAX_CACHE_ENTRIES = 1024
MAX_LABEL_VALUE = 256

QueryName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
DsnName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
_SECRET: TypeAdapter[Secret] = TypeAdapter(SecretValue)


def _dsn(value: object) -> Secret:
    if isinstance(value, str):
        return _sql_engine.inline_dsn(value)
    if isinstance(value, dict) and "url" in value:
        if set(value) != {"url", "password"} or not isinstance(value["url"], str):
            raise ValueError("a dsn given by parts is {url: URL without password, password: {file: PATH}}")
        return _sql_engine.url_with_password(value["url"], _secret(value["password"]))
    return _secret(value)


def _secret(value: object) -> Secret:
    try:
        return _SECRET.validate_python(value)
    except ValidationError as err:  # the secret's own message, without pydantic's wording around it
        raise ValueError(str(err.errors()[0]["msg"]).removeprefix("Value error, ")) from None


Dsn = Annotated[
    Secret,
    PlainValidator(_dsn),
    PlainSerializer(lambda s: {"source": s.source}, return_type=dict),
    WithJsonSchema({"anyOf": [
        {"type": "string"},
        _SECRET.json_schema(),
        {"type": "object", "properties": {"url": {"type": "string"}, "password": _SECRET.json_schema()},
         "required": ["url", "password"], "additionalProperties": False},
    ]}),
]
"""A DSN: a secret ({file: ...} or {env: ...}); or {url, password} with only the password a secret (no URL-encoding
of special characters needed); or a URL in the config itself when it holds no password (peer authentication)."""


class SqlMetric(Settings):
    """One metric filled from a query's rows: sql_exporter's metric (key_labels, values, value_label)."""

    metric_name: MetricName
    type: Literal["gauge", "counter"] = "gauge"
    help: Annotated[str, Field(min_length=1, max_length=500)]
    key_labels: tuple[LabelName, ...] = ()
    """Columns whose values become labels of the same name (alias them in SQL: `AS agency`)."""
    values: Annotated[tuple[LabelName, ...], Field(min_length=1)]
    """Numeric columns; each row gives one sample per value column."""
    value_label: LabelName | None = None
    """With several value columns: the label that holds the column's name."""
    static_labels: dict[LabelName, Annotated[str, Field(max_length=MAX_LABEL_VALUE)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SqlMetric:
        name = self.metric_name
        check_user_metric_name(name, OWN_NAMES)
        if self.type == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        if len(self.values) > 1 and self.value_label is None:
            raise ValueError(f"metric {name!r} has several values columns: set value_label to tell them apart")
        if len(self.values) == 1 and self.value_label is not None:
            raise ValueError(f"metric {name!r}: value_label needs several values columns")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"metric {name!r} names a values column twice")
        labels = self.labels()
        for label in labels:
            if label in RESERVED_LABELS or label.startswith("__"):
                raise ValueError(f"metric {name!r}: label {label!r} is reserved (the agent adds it); "
                                 "use `agency` for the agency a figure is about")
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"metric {name!r}: label {duplicates[0]!r} is given twice "
                             "(key_labels, value_label and static_labels must not overlap)")
        overlap = set(self.key_labels) & set(self.values)
        if overlap:
            raise ValueError(f"metric {name!r}: column {sorted(overlap)[0]!r} is both a key label and a value")
        return self

    def labels(self) -> list[str]:
        """Label names in sample order: key labels, the value label, static labels."""
        value_label = [self.value_label] if self.value_label else []
        return [*self.key_labels, *value_label, *sorted(self.static_labels)]

    def spec(self) -> MetricSpec:
        """The catalogue entry of this metric."""
        return MetricSpec(self.metric_name, self.type, self.help, tuple(self.labels()))


class SqlQuery(Settings):
    """A named query and the metrics its rows fill."""

    name: QueryName
    query: Annotated[str, Field(min_length=1, max_length=65536)]
    metrics: Annotated[tuple[SqlMetric, ...], Field(min_length=1)]
    timeout: Duration | None = None
    """Server-side statement timeout (the client waits 0.5 s longer); default: the time left in the run."""
    min_interval: Duration | None = None
    """Reuse the last good result while it is younger than this (heavy queries); default: run every time."""
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip().rstrip(";").strip():
            raise ValueError("query is empty")
        return value


class SqlSettings(Settings):
    """Named DSNs (secrets) and the queries run against the DSN a check targets."""

    dsns: Annotated[dict[DsnName, Dsn], Field(min_length=1)]
    """DSN name -> SQLAlchemy URL as a secret ({file: ...} or {env: ...}), e.g. postgresql+psycopg://u:p@h/db;
    or {url: postgresql+psycopg://u@h/db, password: {file: ...}}; or a URL written inline, without a password."""
    queries: Annotated[tuple[SqlQuery, ...], Field(min_length=1, max_length=100)]
    max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Rows read per query at most; more are counted (egov_sql_query_truncated) and dropped."""
    limit_in_query: bool = True
    """Wrap each query in SELECT * FROM (...) LIMIT max_rows+1, so the server stops early and memory stays bounded."""
    max_connections: Annotated[int, Field(ge=1, le=16)] = 2
    max_connection_lifetime: Duration = 600.0

    @field_validator("dsns")
    @classmethod
    def _urls(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for name, dsn in value.items():
            _sql_engine.check_dsn(name, dsn)
        return value

    @model_validator(mode="after")
    def _unique(self) -> SqlSettings:
        names = [q.name for q in self.queries]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"query name {duplicates[0]!r} is used twice")
        seen: dict[str, tuple[str, MetricSpec]] = {}
        for query in self.queries:
            in_query: set[str] = set()
            for metric in query.metrics:
                spec = metric.spec()
                if spec.name in in_query:
                    raise ValueError(f"query {query.name!r} fills metric {spec.name!r} twice")
                in_query.add(spec.name)
                first = seen.setdefault(spec.name, (query.name, spec))
                if first[1] != spec:
                    raise ValueError(f"metric {spec.name!r} of query {query.name!r} differs in type, help or labels "
                                     f"from the one of query {first[0]!r}")
        return self


async def probe_sql(ctx: ProbeContext, settings: SqlSettings) -> bool:
    """Run every query against the target DSN; success when each query ran (cached results count as run)."""
    dsn = settings.dsns.get(ctx.target)
    if dsn is None:
        return ctx.fail(Outcome.ERROR, "unknown dsn %r; this module defines: %s", ctx.target, ", ".join(settings.dsns))
    loop = asyncio.get_running_loop()
    now = loop.time()
    due = [q for q in settings.queries if not _from_cache(ctx, settings, q, now)]
    if not due:
        return True
    # One server-side timeout per run, rounded down so it stays the same from run to run (one SET per connection).
    budget = ctx.step_deadline() - now
    default_timeout = math.floor(budget) if budget >= 2 else math.floor(budget * 10) / 10
    options = _sql_engine.PoolOptions(settings.max_connections, settings.max_connection_lifetime)
    try:
        conn = await _sql_engine.connect(ctx.target, dsn, options, ctx.step_deadline())
    except TimeoutError:
        return _fail_all(ctx, due, Outcome.TIMEOUT, f"connecting to dsn {ctx.target!r} timed out")
    except Exception as err:  # noqa: BLE001 - any driver error is a failed connection, classified below
        outcome, text = _sql_engine.classify(err, dsn)
        return _fail_all(ctx, due, outcome, f"cannot connect to dsn {ctx.target!r}: {text}")
    family, dialect = _sql_engine.dialect_of(ctx.target, dsn)
    ctx.log("connected to dsn %r (%s)", ctx.target, family)
    runner = _QueryRunner(ctx, conn, dsn, dialect, settings, default_timeout)
    try:
        for index, query in enumerate(due):
            if not await runner.run(query) and runner.broken:
                _fail_all(ctx, due[index + 1:], ctx.outcome, ctx.error)
                break
    finally:
        await runner.close()
    return runner.failures == 0 and ctx.outcome is Outcome.SUCCESS


def settings_metrics(settings: SqlSettings) -> list[MetricSpec]:
    """The metrics the queries fill, each once."""
    specs: dict[str, MetricSpec] = {}
    for query in settings.queries:
        for metric in query.metrics:
            specs.setdefault(metric.metric_name, metric.spec())
    return list(specs.values())


def check_sql_target(target: str, settings: SqlSettings) -> None:
    """The target must name one of the module's DSNs (targets never carry credentials)."""
    if target not in settings.dsns:
        raise ValueError(f"target {target!r} is not a dsn of this module; known: {', '.join(sorted(settings.dsns))}")


def check_sql_module(settings: SqlSettings, timeout: float) -> None:
    """Each query's timeout must leave room for the client's grace within the module's timeout."""
    for query in settings.queries:
        if query.timeout is not None and query.timeout + TIMEOUT_GRACE >= timeout:
            raise ValueError(f"query {query.name!r}: timeout {format_duration(query.timeout)} must be shorter than "
                             f"the module timeout {format_duration(timeout)} minus {TIMEOUT_GRACE}s")


SPEC = CollectorSpec(
    kind="sql",
    settings=SqlSettings,
    probe=probe_sql,
    metrics=METRICS,
    check_target=check_sql_target,
    check_module=check_sql_module,
    settings_metrics=settings_metrics,
)


@dataclass(slots=True)
class _Cached:
    at: float
    duration: float
    rows: int
    truncated: bool
    samples: list[tuple[str, float, tuple[str, ...]]]


_cache: LruMap[tuple[str, str, str, str], _Cached] = LruMap(MAX_CACHE_ENTRIES)


class _QueryRunner:
    """Runs queries one after the other on one pooled connection and records their samples."""

    def __init__(self, ctx: ProbeContext, conn: AsyncConnection, dsn: Secret, dialect: _sql_engine.Dialect,
                 settings: SqlSettings, default_timeout: float) -> None:
        self.ctx = ctx
        self.conn = conn
        self.dsn = dsn
        self.dialect = dialect
        self.settings = settings
        self.default_timeout = default_timeout
        self.failures = 0
        self.broken = False

    async def run(self, query: SqlQuery) -> bool:
        """Run one query; False (and the run's outcome set) if it failed."""
        ctx, loop = self.ctx, asyncio.get_running_loop()
        cap = query.max_rows or self.settings.max_rows
        server_timeout = min(query.timeout or self.default_timeout, self.default_timeout)
        started = loop.time()
        try:
            await self._set_timeout(server_timeout)
            async with asyncio.timeout_at(min(started + server_timeout + TIMEOUT_GRACE, ctx.step_deadline())):
                result = await self.conn.exec_driver_sql(self._sql(query, cap))
                columns = list(result.keys())
                rows = list(result.fetchmany(cap + 1))
                result.close()
        except asyncio.CancelledError:
            self.broken = True  # shutdown or reload mid-statement: drop the connection, never reuse it
            raise
        except TimeoutError:
            self.broken = True  # the statement may still run: this connection must not go back to the pool
            await self._invalidate()
            return self._failed(query, started, Outcome.TIMEOUT, f"query {query.name!r} timed out after "
                                f"{loop.time() - started:.1f}s")
        except Exception as err:  # noqa: BLE001 - driver errors become outcomes
            outcome, text = _sql_engine.classify(err, self.dsn)
            if outcome in (Outcome.CONNECTION_FAILED, Outcome.AUTH_FAILED) or getattr(
                    err, "connection_invalidated", False):
                self.broken = True
            return self._failed(query, started, outcome, f"query {query.name!r} failed: {text}")
        duration = loop.time() - started
        truncated = len(rows) > cap
        if truncated:
            del rows[cap:]
            ctx.count_partial_error("rows_capped")
            ctx.log("query %r returned more than %d rows: the rest is dropped", query.name, cap, level="warning")
        try:
            samples = self._samples(query, columns, rows)
        except _Mismatch as err:
            return self._failed(query, started, Outcome.MISMATCH, f"query {query.name!r}: {err}")
        ctx.log("query %r: %d rows in %.3fs", query.name, len(rows), duration)
        cached = _Cached(time.monotonic(), duration, len(rows), truncated, samples)
        if query.min_interval is not None:
            _remember(_cache_key(ctx, query), cached)
        _emit(ctx, query, cached, 0.0)
        return True

    async def close(self) -> None:
        """Give the connection back to the pool (or drop it when it is broken)."""
        try:
            if self.broken:
                await self._invalidate()
            await self.conn.close()
        except Exception as err:  # noqa: BLE001 - closing a dead connection must not hide the run's outcome
            self.ctx.log("closing the connection failed: %s", type(err).__name__)

    def _sql(self, query: SqlQuery, cap: int) -> str:
        text = query.query.strip().rstrip(";").rstrip()
        if self.settings.limit_in_query and self.dialect.limit is not None:
            return self.dialect.limit.format(query=text, limit=cap + 1)
        return text

    async def _set_timeout(self, seconds: float) -> None:
        if self.dialect.set_timeout is None:
            return
        ms = max(1, int(seconds * 1000))
        info = self.conn.info
        if info.get("egov_statement_timeout_ms") != ms:
            await self.conn.exec_driver_sql(self.dialect.set_timeout.format(ms=ms, s=ms / 1000))
            info["egov_statement_timeout_ms"] = ms

    async def _invalidate(self) -> None:
        try:
            await self.conn.invalidate()
        except Exception as err:  # noqa: BLE001 - best effort on a connection already in trouble
            self.ctx.log("dropping the connection failed: %s", type(err).__name__)

    def _failed(self, query: SqlQuery, started: float, outcome: Outcome, message: str) -> bool:
        self.failures += 1
        duration = asyncio.get_running_loop().time() - started
        self.ctx.sink.add("egov_sql_query_success", 0, query.name)
        self.ctx.sink.add("egov_sql_query_duration_seconds", duration, query.name)
        if self.ctx.outcome is Outcome.SUCCESS:
            self.ctx.fail(outcome, "%s", message)
        else:
            self.ctx.log("%s", message, level="error")
        return False

    def _samples(self, query: SqlQuery, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 ) -> list[tuple[str, float, tuple[str, ...]]]:
        index = {name: i for i, name in enumerate(columns)}
        out: list[tuple[str, float, tuple[str, ...]]] = []
        for metric in query.metrics:
            missing = [c for c in (*metric.key_labels, *metric.values) if c not in index]
            if missing:
                raise _Mismatch(f"metric {metric.metric_name!r} needs column {missing[0]!r}; the query returned "
                                f"{', '.join(columns) or 'no columns'}")
            keys = [index[c] for c in metric.key_labels]
            statics = tuple(metric.static_labels[k] for k in sorted(metric.static_labels))
            bad = 0
            value_columns = [(index[column], (column,) if metric.value_label else ()) for column in metric.values]
            name = metric.metric_name
            for row in rows:
                labels = tuple([_label(row[i]) for i in keys])
                for position, extra in value_columns:
                    cell = row[position]
                    value = float(cell) if type(cell) in _PLAIN_NUMBERS else _number(cell)
                    if value is None:
                        bad += cell is not None
                        continue  # NULL: no sample, as sql_exporter
                    out.append((name, value, (*labels, *extra, *statics) if extra or statics else labels))
            if bad:
                self.ctx.count_partial_error("bad_value")
                self.ctx.log("query %r: %d values of metric %r are not numbers and were skipped", query.name, bad,
                             metric.metric_name, level="warning")
        return out


class _Mismatch(Exception):
    """The rows do not fit the metrics (a column is missing)."""


def _from_cache(ctx: ProbeContext, settings: SqlSettings, query: SqlQuery, now: float) -> bool:
    if query.min_interval is None:
        return False
    cached = _cache.get(_cache_key(ctx, query))
    if cached is None:
        return False
    age = time.monotonic() - cached.at
    if age >= query.min_interval:
        return False
    ctx.log("query %r: reusing the result of %.0fs ago (min_interval %s)", query.name, age,
            format_duration(query.min_interval))
    _emit(ctx, query, cached, age)
    return True


def _emit(ctx: ProbeContext, query: SqlQuery, cached: _Cached, age: float) -> None:
    add = ctx.sink.add
    for name, value, labels in cached.samples:
        add(name, value, *labels)
    add("egov_sql_query_success", 1, query.name)
    add("egov_sql_query_duration_seconds", cached.duration, query.name)
    add("egov_sql_query_rows", cached.rows, query.name)
    add("egov_sql_query_truncated", 1 if cached.truncated else 0, query.name)
    add("egov_sql_query_result_age_seconds", age, query.name)


def _cache_key(ctx: ProbeContext, query: SqlQuery) -> tuple[str, str, str, str]:
    digest = hashlib.sha256(query.model_dump_json().encode()).hexdigest()
    return (ctx.module, ctx.target, query.name, digest)


def _remember(key: tuple[str, str, str, str], cached: _Cached) -> None:
    _cache.put(key, cached)


def _fail_all(ctx: ProbeContext, queries: Sequence[SqlQuery], outcome: Outcome, message: str) -> bool:
    for query in queries:
        ctx.sink.add("egov_sql_query_success", 0, query.name)
    if ctx.outcome is Outcome.SUCCESS:
        ctx.fail(outcome, "%s", message)
    return False


def _number(value: Any) -> float | None:
    """A column value as a sample value: numbers, booleans, dates (Unix seconds, UTC) and numeric text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
    if isinstance(value, str) and _NUMERIC.match(value):
        return float(value)
    return None


_PLAIN_NUMBERS = frozenset({int, float, Decimal})
_NUMERIC = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _label(value: Any) -> str:
    if type(value) is str:
        return value if len(value) <= MAX_LABEL_VALUE else value[:MAX_LABEL_VALUE]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)[:MAX_LABEL_VALUE]
