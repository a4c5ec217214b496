"""Departments' front-end databases (前置库): where they are and how to read them.

One SQL text serves every engine: queries are written with `?` placeholders and `placeholders`
rewrites them to `$1, $2 …` for PostgreSQL and `%s` for MySQL / MariaDB. Unquoted identifiers
(BDC_QLR, V_BDC_CQ) fold to lower case in PostgreSQL, so the same text finds the same tables;
rows come back as dicts keyed by upper-case column names whatever the engine.

- SQLite (`sqlite:///relative/path`, `sqlite:////absolute/path`): read-only connections, one
  per worker thread of a private pool of `pool_size` threads. A connection is reopened when the
  file under the path changes (the simulator replaces it atomically), and a missing file is an
  unavailable database, as it should be.
- PostgreSQL (`postgresql://…`): an asyncpg pool (min 1, max `pool_size`) whose sessions are
  read-only and have `search_path` set to the front-end schema (default `bdc_frontdb`).
- MySQL / MariaDB (`mysql://user[:password]@host[:port]/database`, `mariadb://` alike): an
  aiomysql pool (min 1, max `pool_size`) of read-only sessions (utf8mb4, autocommit) on the
  DSN's database, or on the `schema` setting when given (in MySQL a schema is a database).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import aiomysql  # type: ignore[import-untyped]
import asyncpg
import pymysql  # type: ignore[import-untyped]

from gateway.domain.errors import ConfigError

Backend = Literal["sqlite", "postgresql", "mysql"]
DEFAULT_SCHEMA = "bdc_frontdb"
Row = dict[str, Any]


@dataclass(frozen=True)
class FrontDbLocation:
    backend: Backend
    target: str  # a file path for SQLite, a DSN (without our `schema` parameter) otherwise
    schema: str = DEFAULT_SCHEMA  # PostgreSQL: the schema; MySQL: the database


def parse_dsn(dsn: str, schema: str | None = None) -> FrontDbLocation:
    """`sqlite:///path`, `postgresql://…` or `mysql://…`; a PostgreSQL DSN may carry
    `?schema=name`, an explicit `schema` argument wins (for MySQL: the database)."""
    if dsn.startswith("sqlite:///"):
        path = dsn[len("sqlite:///") :]
        if not path:
            raise ConfigError("property dsn: sqlite:/// needs a file path")
        return FrontDbLocation("sqlite", path)
    parts = urlsplit(dsn)
    if parts.scheme in ("mysql", "mariadb"):
        database = schema or parts.path.lstrip("/")
        if not database or not database.replace("_", "").isalnum():
            raise ConfigError("front-end database dsn: mysql:// names a database (a-z 0-9 _)")
        return FrontDbLocation("mysql", dsn, database)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError("property dsn: expected sqlite:///…, postgresql://… or mysql://…")
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_dsn = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    chosen = schema or in_dsn or DEFAULT_SCHEMA
    if not chosen.replace("_", "").isalnum() or not chosen[0].isalpha():
        raise ConfigError("property schema: letters, digits and _ only")
    return FrontDbLocation("postgresql", urlunsplit(parts._replace(query=rest)), chosen.lower())


def placeholders(sql: str, backend: Backend) -> str:
    """`?` → `$n` for PostgreSQL, `%s` for MySQL (whose driver formats with %, so a literal
    `%` is doubled). Our SQL has no `?` inside string literals."""
    if backend == "sqlite":
        return sql
    if backend == "mysql":
        return sql.replace("%", "%%").replace("?", "%s")
    pieces = sql.split("?")
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:], start=1):
        out.append(f"${n}{piece}")
    return "".join(out)


class FrontDbReader(Protocol):
    backend: Backend

    async def query(self, sql: str, params: Sequence[Any]) -> list[Row]: ...

    async def close(self) -> None: ...


def open_reader(location: FrontDbLocation, *, pool_size: int, timeout_s: float) -> FrontDbReader:
    if location.backend == "sqlite":
        return SqliteReader(location.target, pool_size=pool_size, busy_timeout_s=timeout_s)
    if location.backend == "mysql":
        return MysqlReader(
            location.target, database=location.schema, pool_size=pool_size, timeout_s=timeout_s
        )
    return PostgresReader(location.target, schema=location.schema, pool_size=pool_size)


class SqliteReader:
    """sqlite3 is blocking: queries run on a private thread pool, one read-only connection per
    thread. Errors are `sqlite3.Error` or `OSError`; the adapter maps them."""

    backend: Backend = "sqlite"

    def __init__(self, path: str, *, pool_size: int, busy_timeout_s: float) -> None:
        self._path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max(1, pool_size), thread_name_prefix="frontdb")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[sqlite3.Connection] = set()

    def _connection(self) -> sqlite3.Connection:
        identity = _file_identity(self._path)  # raises when the file is gone
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.identity == identity:
            return conn
        if conn is not None:
            self._discard(conn)
        uri = self._path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout_s, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        with self._lock:
            self._connections.add(conn)
        self._local.conn, self._local.identity = conn, identity
        return conn

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._connections.discard(conn)
        self._local.conn = None
        conn.close()

    def _run(self, sql: str, params: Sequence[Any]) -> list[Row]:
        conn = self._connection()
        try:
            cursor = conn.execute(sql, tuple(params))
            names = [d[0].upper() for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except sqlite3.Error:
            self._discard(conn)  # start clean next time (schema swapped, file replaced …)
            raise

    async def query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, sql, params)

    async def close(self) -> None:
        # Workers finish their current query (bounded by the busy timeout) before we close.
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()


def _file_identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


class PostgresReader:
    """An asyncpg pool opened on first use. Errors are asyncpg's or `OSError`."""

    backend: Backend = "postgresql"

    def __init__(self, dsn: str, *, schema: str, pool_size: int) -> None:
        self._dsn = dsn
        self._schema = schema
        self._pool_size = max(1, pool_size)
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        server_settings={
                            "search_path": self._schema,
                            "default_transaction_read_only": "on",
                            "application_name": "proofless-property-adapter",
                        },
                    )
        return self._pool

    async def query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            records = await conn.fetch(placeholders(sql, "postgresql"), *params)
        return [{k.upper(): v for k, v in r.items()} for r in records]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except TimeoutError:
                pool.terminate()


def mysql_connect_args(dsn: str, database: str) -> dict[str, Any]:
    """aiomysql.connect / create_pool keyword arguments for a `mysql://` DSN."""
    parts = urlsplit(dsn)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": database,
        "charset": "utf8mb4",
        "autocommit": True,
    }


class MysqlReader:
    """An aiomysql pool opened on first use; every session read-only. Errors are pymysql's
    (aiomysql raises them) or `OSError`."""

    backend: Backend = "mysql"

    def __init__(self, dsn: str, *, database: str, pool_size: int, timeout_s: float) -> None:
        self._args = mysql_connect_args(dsn, database)
        self._pool_size = max(1, pool_size)
        self._timeout_s = timeout_s
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await aiomysql.create_pool(
                        minsize=1,
                        maxsize=self._pool_size,
                        connect_timeout=max(1, round(self._timeout_s)),
                        init_command="SET SESSION TRANSACTION READ ONLY",
                        **self._args,
                    )
        return self._pool

    async def query(self, sql: str, params: Sequence[Any]) -> list[Row]:
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.cursor(aiomysql.DictCursor) as cursor:
            await cursor.execute(placeholders(sql, "mysql"), tuple(params))
            rows = await cursor.fetchall()
        return [{k.upper(): v for k, v in r.items()} for r in rows]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), timeout=5)
            except TimeoutError:
                pool.terminate()


# Errors the readers raise that mean "the front-end database cannot answer".
READER_ERRORS: tuple[type[BaseException], ...] = (
    sqlite3.Error,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    pymysql.MySQLError,
    TimeoutError,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "READER_ERRORS",
    "FrontDbLocation",
    "FrontDbReader",
    "MysqlReader",
    "mysql_connect_args",
    "open_reader",
    "parse_dsn",
    "placeholders",
]
