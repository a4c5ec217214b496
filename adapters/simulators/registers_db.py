"""Front-end databases (前置库) of the departments added by catalogue file, simulated: the
department's table created and filled from the registers, in SQLite, PostgreSQL or MySQL /
MariaDB, wherever the catalogue's endpoint (and `schema` setting) says the gateway reads.

    卫健委 护士执业注册   WJW_HSZY_ZCXX  ZSBH XM SFZHM ZYJG ZYDD ZYLB ZCRQ YXQZ ZT GXSJ
    残联   残疾人证       CL_CJRZ        CJRZH XM SFZHM CJLB CJDJ FZRQ YXQZ GXSJ

Filling never shows a reader half a table: SQLite builds a new file and moves it into place;
PostgreSQL drops and recreates the schema in one transaction; MySQL fills a table of a
random name and swaps it in with one `RENAME TABLE` (atomic in MariaDB), so gateways and
simulators of other processes reading or filling the same database meanwhile see the old
table or the new one. Dates are DATE columns (TEXT in SQLite), update times DATETIME in
MySQL and text elsewhere, as such databases are filled by different exchange tools.

`duplicate(subject)` copies a subject's row, the dirty data a front-end database sometimes
holds (a registration loaded twice), for tests of the connector's refusal; `drop()` removes
what `fill` made.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import aiomysql  # type: ignore[import-untyped]
import asyncpg
import pymysql  # type: ignore[import-untyped]

from adapters.frontdb import (
    Backend,
    FrontDbLocation,
    mysql_connect_args,
    parse_dsn,
    placeholders,
)
from adapters.simulators.population import Registers

_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Table:
    name: str  # upper case, unquoted: PostgreSQL folds it, the queries fold alike
    columns: tuple[tuple[str, str], ...]  # (name, SQL type); "DATE" and "TIME" are special
    key: str  # the subject's column

    def ddl(self, name: str, backend: str) -> str:
        def kind(sql_type: str) -> str:
            if sql_type == "TIME":
                return "DATETIME" if backend == "mysql" else "VARCHAR(19)"
            if sql_type == "DATE" and backend == "sqlite":
                return "TEXT"
            return sql_type

        cols = ", ".join(f"{c} {kind(t)} NOT NULL" for c, t in self.columns)
        return f"CREATE TABLE {name} ({cols})"

    def insert(self, name: str, backend: Backend) -> str:
        marks = ", ".join("?" for _ in self.columns)
        # Identifiers from this module's constants, values bound: no caller text in SQL.
        return placeholders(f"INSERT INTO {name} VALUES ({marks})", backend)  # noqa: S608


NURSE_TABLE = Table(
    "WJW_HSZY_ZCXX",
    (
        ("ZSBH", "VARCHAR(20)"),
        ("XM", "VARCHAR(50)"),
        ("SFZHM", "VARCHAR(18)"),
        ("ZYJG", "VARCHAR(100)"),
        ("ZYDD", "VARCHAR(6)"),
        ("ZYLB", "VARCHAR(10)"),
        ("ZCRQ", "DATE"),
        ("YXQZ", "DATE"),
        ("ZT", "VARCHAR(4)"),
        ("GXSJ", "TIME"),
    ),
    "SFZHM",
)
DISABILITY_TABLE = Table(
    "CL_CJRZ",
    (
        ("CJRZH", "VARCHAR(20)"),
        ("XM", "VARCHAR(50)"),
        ("SFZHM", "VARCHAR(18)"),
        ("CJLB", "VARCHAR(1)"),
        ("CJDJ", "VARCHAR(1)"),
        ("FZRQ", "DATE"),
        ("YXQZ", "DATE"),
        ("GXSJ", "TIME"),
    ),
    "SFZHM",
)


def nurse_rows(registers: Registers) -> list[tuple[Any, ...]]:
    return [
        (
            n.certificate_number,
            n.name,
            n.id_number,
            n.employer,
            n.region_code,
            n.category,
            n.registered_on,
            n.valid_until,
            n.status,
            n.updated_at,
        )
        for n in sorted(registers.nurses.values(), key=lambda n: n.id_number)
    ]


def disability_rows(registers: Registers) -> list[tuple[Any, ...]]:
    return [
        (
            c.certificate_number,
            c.name,
            c.id_number,
            c.category,
            c.grade,
            c.issued_on,
            c.valid_until,
            c.updated_at,
        )
        for c in sorted(registers.disability.values(), key=lambda c: c.id_number)
    ]


def _for_text(row: Sequence[Any]) -> tuple[Any, ...]:
    """SQLite and the text columns: dates as YYYY-MM-DD, times as Beijing wall time."""
    return tuple(
        v.strftime(_TIME) if isinstance(v, datetime) else v.isoformat() if isinstance(v, date)
        else v
        for v in row
    )  # fmt: skip


def _for_postgres(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(v.strftime(_TIME) if isinstance(v, datetime) else v for v in row)


class RegisterFrontDb:
    """One department's table in the front-end database at `dsn` (and `schema`)."""

    def __init__(
        self, table: Table, rows: list[tuple[Any, ...]], dsn: str, *, schema: str | None = None
    ) -> None:
        self.table = table
        self.rows = rows
        self.location: FrontDbLocation = parse_dsn(dsn, schema)

    @property
    def dsn(self) -> str:
        """What the gateway's connector should be given (PostgreSQL: schema included)."""
        loc = self.location
        if loc.backend == "sqlite":
            return f"sqlite:///{loc.target}"
        if loc.backend == "mysql":
            return loc.target
        sep = "&" if "?" in loc.target else "?"
        return f"{loc.target}{sep}schema={loc.schema}"

    async def answers(self, timeout_s: float = 2.0) -> bool:
        """The database server is there (SQLite: always)."""
        loc = self.location
        try:
            if loc.backend == "postgresql":
                conn = await asyncpg.connect(loc.target, timeout=timeout_s)
                await conn.close()
            elif loc.backend == "mysql":
                args = {**mysql_connect_args(loc.target, loc.schema), "db": None}
                conn = await aiomysql.connect(connect_timeout=timeout_s, **args)
                conn.close()
        except (OSError, TimeoutError, asyncpg.PostgresError, pymysql.MySQLError):
            return False
        return True

    async def fill(self) -> None:
        backend = self.location.backend
        if backend == "sqlite":
            await asyncio.to_thread(self._fill_sqlite)
        elif backend == "postgresql":
            await self._fill_postgres()
        else:
            await self._fill_mysql()

    # -- SQLite

    def _fill_sqlite(self) -> None:
        path = Path(self.location.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.filling")
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                conn.execute(self.table.ddl(self.table.name, "sqlite"))
                conn.execute(f"CREATE INDEX IX_{self.table.name} ON {self.table.name} "
                             f"({self.table.key})")  # fmt: skip
                conn.executemany(
                    self.table.insert(self.table.name, "sqlite"),
                    [_for_text(r) for r in self.rows],
                )
        finally:
            conn.close()
        os.replace(tmp, path)  # readers see the old database or the new one, never half

    # -- PostgreSQL

    async def _fill_postgres(self) -> None:
        schema, name = self.location.schema, self.table.name
        conn = await asyncpg.connect(self.location.target)
        try:
            async with conn.transaction():
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await conn.execute(f"CREATE SCHEMA {schema}")
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(self.table.ddl(name, "postgresql"))
                await conn.execute(f"CREATE INDEX IX_{name} ON {name} ({self.table.key})")
                await conn.executemany(
                    self.table.insert(name, "postgresql"), [_for_postgres(r) for r in self.rows]
                )
        finally:
            await conn.close()

    # -- MySQL / MariaDB

    async def _mysql(self, *statements: tuple[str, Sequence[Any]], many: bool = False) -> None:
        loc = self.location
        args = {**mysql_connect_args(loc.target, loc.schema), "db": None}
        conn = await aiomysql.connect(**args)
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                    (loc.schema,),
                )
                if not await cursor.fetchall():
                    await cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{loc.schema}`")
                await cursor.execute(f"USE `{loc.schema}`")
                for sql, params in statements:
                    if many:
                        await cursor.executemany(sql, params)
                    else:
                        await cursor.execute(sql, tuple(params))
        finally:
            conn.close()

    async def _fill_mysql(self) -> None:
        name = self.table.name
        suffix = secrets.token_hex(4)
        fresh, old = f"{name}_N{suffix}", f"{name}_O{suffix}"
        await self._mysql(
            (self.table.ddl(fresh, "mysql") + " DEFAULT CHARSET=utf8mb4", ()),
            (f"CREATE INDEX IX_{suffix} ON {fresh} ({self.table.key})", ()),
        )
        await self._mysql((self.table.insert(fresh, "mysql"), self.rows), many=True)
        for _ in range(5):
            try:
                await self._mysql((f"RENAME TABLE {name} TO {old}, {fresh} TO {name}", ()))
                await self._mysql((f"DROP TABLE IF EXISTS {old}", ()))
                return
            except pymysql.err.ProgrammingError:  # 1146: no table yet, the first fill
                try:
                    await self._mysql((f"RENAME TABLE {fresh} TO {name}", ()))
                    return
                except pymysql.err.OperationalError:  # 1050: another filler was first
                    continue
        raise RuntimeError(f"could not swap in {name}")

    # -- test hooks

    async def duplicate(self, subject: str) -> None:
        """Copy the subject's row: one subject, two rows (dirty front-end data)."""
        name, key = self.table.name, self.table.key
        copy = f"INSERT INTO {name} SELECT * FROM {name} WHERE {key} = ?"  # noqa: S608
        backend = self.location.backend
        if backend == "sqlite":
            await asyncio.to_thread(self._sqlite_execute, copy, (subject,))
        elif backend == "postgresql":
            conn = await asyncpg.connect(self.location.target)
            try:
                await conn.execute(f"SET search_path TO {self.location.schema}")
                await conn.execute(placeholders(copy, "postgresql"), subject)
            finally:
                await conn.close()
        else:
            await self._mysql((placeholders(copy, "mysql"), (subject,)))

    def _sqlite_execute(self, sql: str, params: tuple[Any, ...]) -> None:
        conn = sqlite3.connect(self.location.target)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()

    async def drop(self) -> None:
        """Remove what `fill` made: the file, the schema, or the MySQL database when it is not
        the DSN's own (a test's), else the table."""
        loc = self.location
        if loc.backend == "sqlite":
            await asyncio.to_thread(Path(loc.target).unlink, missing_ok=True)
        elif loc.backend == "postgresql":
            conn = await asyncpg.connect(loc.target)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {loc.schema} CASCADE")
            finally:
                await conn.close()
        else:
            own = loc.target.rsplit("/", 1)[-1].split("?", 1)[0]
            if own == loc.schema:
                await self._mysql((f"DROP TABLE IF EXISTS {self.table.name}", ()))
            else:
                args = {**mysql_connect_args(loc.target, loc.schema), "db": None}
                conn = await aiomysql.connect(**args)
                try:
                    async with conn.cursor() as cursor:
                        await cursor.execute(f"DROP DATABASE IF EXISTS `{loc.schema}`")
                finally:
                    conn.close()
