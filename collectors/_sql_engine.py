"""Database access for the sql kind: DSN checks, pooled SQLAlchemy async engines per DSN, read-only sessions.

SQLAlchemy and the drivers are imported only here, and only when a sql module is loaded or run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.errors import Outcome
from agent.secrets import Secret

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the agent does differently per database family."""

    drivers: tuple[str, ...]
    """Async drivers SQLAlchemy can use, the first being the default for a bare `family://` URL."""
    packages: tuple[str, ...]
    """The Python module each driver needs (for the 'not installed' message)."""
    set_timeout: str | None
    """Statement to set the server-side statement timeout in milliseconds (`{ms}`), or None."""
    limit: str | None
    """How to cap the rows of a query on the server: `{query}` and `{limit}`; None = cap while fetching."""


DIALECTS = {
    "postgresql": Dialect(("psycopg", "asyncpg"), ("psycopg", "asyncpg"), "SET statement_timeout = {ms}",
                          "SELECT * FROM ({query}\n) AS egov_q LIMIT {limit}"),
    "mysql": Dialect(("aiomysql", "asyncmy"), ("aiomysql", "asyncmy"), "SET SESSION max_execution_time = {ms}",
                     "SELECT * FROM ({query}\n) AS egov_q LIMIT {limit}"),
    "mariadb": Dialect(("aiomysql", "asyncmy"), ("aiomysql", "asyncmy"), "SET SESSION max_statement_time = {s}",
                       "SELECT * FROM ({query}\n) AS egov_q LIMIT {limit}"),
    "mssql": Dialect(("aioodbc",), ("aioodbc",), None, "SELECT TOP ({limit}) * FROM ({query}\n) AS egov_q"),
}
ALIASES = {"postgres": "postgresql"}
MAX_ENGINES = 64
IDLE_ENGINE_SECONDS = 3 * 3600.0
"""An engine unused this long is closed (its DSN left the config, or its check runs seldom: it reconnects)."""


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """How many connections to keep to one DSN and for how long."""

    max_connections: int
    max_connection_lifetime: float


def check_dsn(name: str, dsn: Secret) -> None:
    """Raise ValueError (naming the DSN, never showing it) unless it is a URL of a supported database and driver."""
    family, driver = _family_driver(name, dsn)
    dialect = DIALECTS[family]
    package = dialect.packages[dialect.drivers.index(driver)]
    if importlib.util.find_spec(package) is None:
        raise ValueError(f"dsn {name!r}: the {family} driver {driver} is not installed (pip install {package})")


def inline_dsn(value: str) -> Secret:
    """A DSN written in the config itself: allowed only without a password (Unix-socket peer auth, Kerberos)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(value).password
    except (ArgumentError, ValueError):
        raise ValueError("a dsn written in the config must be a database URL without a password, like "
                         "postgresql+psycopg://egov_monitor@/qlvb?host=/var/run/postgresql; "
                         "otherwise give it as a secret {file: PATH} or {env: VARIABLE}") from None
    if password is not None or "password" in value.lower():
        raise ValueError("a dsn with a password must be a secret ({file: PATH} or {env: VARIABLE}), "
                         "never written in the config")
    return Secret(value, "config")


def url_with_password(url: str, password: Secret) -> Secret:
    """A DSN from a URL without a password (in the config) and a password kept as a secret."""
    from sqlalchemy.engine import make_url

    base = inline_dsn(url)
    full = make_url(base.reveal()).set(password=password.reveal())
    return Secret(full.render_as_string(hide_password=False), f"url + password {password.source}")


def dialect_of(name: str, dsn: Secret) -> tuple[str, Dialect]:
    """The family name and its Dialect of a DSN that passed check_dsn."""
    family = _families.get(dsn.reveal())
    if family is None:
        family, _ = _family_driver(name, dsn)
        if len(_families) >= MAX_ENGINES:
            _families.clear()
        _families[dsn.reveal()] = family
    return family, DIALECTS[family]


_families: dict[str, str] = {}


async def connect(dsn_name: str, dsn: Secret, options: PoolOptions, deadline: float) -> AsyncConnection:
    """A pooled connection to the DSN (pre-pinged) by a loop-time deadline, autocommit, read-only transactions."""
    if "sqlalchemy.ext.asyncio" not in sys.modules:
        await asyncio.to_thread(importlib.import_module, "sqlalchemy.ext.asyncio")  # first use: ~0.3 s of imports
    engine = _engine(dsn_name, dsn, options)
    async with asyncio.timeout_at(deadline):
        return await engine.connect()


def classify(err: BaseException, dsn: Secret) -> tuple[Outcome, str]:
    """(outcome, message) for a database error; the message never contains the DSN's password."""
    orig = getattr(err, "orig", None) or err
    sqlstate = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None  # MySQL error numbers
    text = " ".join(str(orig).split())[:400] or type(orig).__name__
    text = _scrub(text, dsn)
    lowered = text.lower()
    if type(err).__name__ == "TimeoutError" and type(err).__module__.startswith("sqlalchemy"):
        return Outcome.TIMEOUT, "no free connection in the pool in time"
    if sqlstate == "57014" or code in (3024, 1969):
        return Outcome.TIMEOUT, text
    if sqlstate.startswith("28") or code in (1044, 1045) or "authentication failed" in lowered:
        return Outcome.AUTH_FAILED, text
    if sqlstate.startswith("08") or sqlstate.startswith("57P") or code in (2002, 2003, 2006, 2013) or (
        lowered.startswith("connection failed") or "server closed the connection" in lowered
        or "consuming input failed" in lowered or "connection is closed" in lowered
    ):
        return Outcome.CONNECTION_FAILED, text
    return Outcome.PROTOCOL_ERROR, text


def _family_driver(name: str, dsn: Secret) -> tuple[str, str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(dsn.reveal())
    except (ArgumentError, ValueError):
        raise ValueError(f"dsn {name!r} ({dsn.source}) is not a database URL like "
                         "postgresql+psycopg://user:password@host:5432/database") from None
    family, _, driver = url.drivername.partition("+")
    family = ALIASES.get(family, family)
    dialect = DIALECTS.get(family)
    if dialect is None:
        raise ValueError(f"dsn {name!r}: unsupported database {family!r}; supported: {', '.join(DIALECTS)}")
    driver = driver or dialect.drivers[0]
    if driver not in dialect.drivers:
        raise ValueError(f"dsn {name!r}: {family} driver {driver!r} is not an asyncio driver; "
                         f"use one of: {', '.join(dialect.drivers)}")
    return family, driver


def _url(dsn_name: str, dsn: Secret) -> URL:
    from sqlalchemy.engine import make_url

    family, driver = _family_driver(dsn_name, dsn)
    return make_url(dsn.reveal()).set(drivername=f"{family}+{driver}")


_EngineKey = tuple[int, str, PoolOptions]
_engines: dict[_EngineKey, AsyncEngine] = {}
_last_used: dict[_EngineKey, float] = {}
_disposing: set[asyncio.Task[None]] = set()
_next_sweep = 0.0


def _engine(dsn_name: str, dsn: Secret, options: PoolOptions) -> AsyncEngine:
    """One engine (pool) per event loop, DSN and pool options; unused ones (a DSN changed by a reload) are closed."""
    global _next_sweep
    loop = asyncio.get_running_loop()
    key = (id(loop), dsn.reveal(), options)
    now = loop.time()
    _last_used[key] = now
    if now >= _next_sweep:
        _next_sweep = now + 60
        for idle in [k for k, used in _last_used.items() if now - used > IDLE_ENGINE_SECONDS]:
            _dispose(loop, idle)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    for stale in [k for k in _engines if k[0] != id(loop)]:
        _engines.pop(stale)  # their loop is gone: its connections cannot be closed from here
        _last_used.pop(stale, None)
    while len(_engines) >= MAX_ENGINES:
        _dispose(loop, next(iter(_engines)))
    from sqlalchemy.ext.asyncio import create_async_engine
    url = _url(dsn_name, dsn)
    family = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if url.get_driver_name() == "psycopg":
        connect_args["options"] = "-c default_transaction_read_only=on"
        connect_args["application_name"] = "egov-agent"
    elif url.get_driver_name() == "asyncpg":
        connect_args["server_settings"] = {"default_transaction_read_only": "on", "application_name": "egov-agent"}
    elif family in ("mysql", "mariadb"):
        connect_args["init_command"] = "SET SESSION TRANSACTION READ ONLY"
    engine = create_async_engine(
        url,
        pool_size=options.max_connections,
        max_overflow=0,
        pool_pre_ping=True,
        pool_recycle=options.max_connection_lifetime,
        isolation_level="AUTOCOMMIT",
        connect_args=connect_args,
        hide_parameters=True,
    )
    _engines[key] = engine
    _last_used[key] = now
    return engine


def _dispose(loop: asyncio.AbstractEventLoop, key: _EngineKey) -> None:
    _last_used.pop(key, None)
    engine = _engines.pop(key, None)
    if engine is not None and key[0] == id(loop):
        task = loop.create_task(engine.dispose())
        _disposing.add(task)
        task.add_done_callback(_disposing.discard)


def _scrub(text: str, dsn: Secret) -> str:
    """Drop the DSN's password (and the DSN itself) from a driver's message, should a driver ever echo them."""
    from sqlalchemy.engine import make_url

    value = dsn.reveal()
    text = text.replace(value, "<dsn>")
    try:
        password = make_url(value).password
    except Exception:  # noqa: BLE001 - checked at load; scrubbing must never fail
        password = None
    if password and len(password) >= 3:
        text = text.replace(str(password), "<secret>")
    return re.sub(r"\[SQL: .*", "", text).strip()
