"""The real-estate registry's front-end database (不动产前置库), simulated: the department's
tables and the view the gateway reads, created and filled from the synthetic population into
SQLite (default) or PostgreSQL with the same logical schema and the same SQL text.

    BDC_FW   (房屋)    one row per property unit (BDCDYH), certificate, location, area, usage,
                        registration time, mortgage (DYZT) and seizure (CFZT) flags, QSZT
                        (权属状态: 1 现势 current, 2 历史 ended), GXSJ update time
    BDC_QLR  (权利人)  one row per owner of a unit: name, ID (ZJH), GYFS and FE (share)
    V_BDC_CQ (产权)    current rights joined with their owners; owner ID as QLRZJH

In PostgreSQL everything lives in its own schema (default `bdc_frontdb`) which `fill` drops
and recreates, so tests can use a schema of their own. Times are stored as text in Beijing
time, as front-end databases fed by file exchange usually do.

Faults (`set_faults`, or the optional admin app) make the database misbehave for the adapter:
- unavailable: SQLite: the file is renamed to `<file>.offline` (new reads find nothing);
  PostgreSQL: the view is renamed to `v_bdc_cq_offline`. `clear_faults` puts it back.
- hang: an exclusive lock is held on the data (SQLite `BEGIN EXCLUSIVE` in rollback-journal
  mode; PostgreSQL `LOCK TABLE bdc_fw IN ACCESS EXCLUSIVE MODE`), so reads wait until the
  fault is cleared or their own timeout.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from adapters.frontdb import FrontDbLocation, parse_dsn, placeholders
from adapters.simulators.datagen import Population

TABLES = (
    """CREATE TABLE BDC_FW (
        BDCDYH VARCHAR(32) PRIMARY KEY,
        BDCQZH VARCHAR(64) NOT NULL,
        ZL VARCHAR(200) NOT NULL,
        XZQH VARCHAR(6) NOT NULL,
        MJ NUMERIC(12, 2) NOT NULL,
        YT VARCHAR(20) NOT NULL,
        DJSJ VARCHAR(19) NOT NULL,
        DYZT VARCHAR(1) NOT NULL,
        CFZT VARCHAR(1) NOT NULL,
        QSZT VARCHAR(1) NOT NULL,
        GXSJ VARCHAR(19) NOT NULL
    )""",
    """CREATE TABLE BDC_QLR (
        QLRID INTEGER PRIMARY KEY,
        BDCDYH VARCHAR(32) NOT NULL REFERENCES BDC_FW (BDCDYH),
        QLRMC VARCHAR(100) NOT NULL,
        ZJZL VARCHAR(2) NOT NULL,
        ZJH VARCHAR(18) NOT NULL,
        GYFS VARCHAR(10) NOT NULL,
        FE VARCHAR(16) NOT NULL
    )""",
    "CREATE INDEX IDX_BDC_QLR_ZJH ON BDC_QLR (ZJH)",
)
VIEW = """CREATE VIEW V_BDC_CQ AS
    SELECT f.BDCQZH, f.ZL, f.XZQH, f.MJ, f.YT, q.GYFS, q.FE, f.DJSJ, f.DYZT, f.CFZT,
           q.ZJH AS QLRZJH, q.QLRMC, f.GXSJ
    FROM BDC_QLR q JOIN BDC_FW f ON f.BDCDYH = q.BDCDYH
    WHERE f.QSZT = '1'"""
INSERT_FW = "INSERT INTO BDC_FW VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
INSERT_QLR = "INSERT INTO BDC_QLR VALUES (?, ?, ?, ?, ?, ?, ?)"
_TIME = "%Y-%m-%d %H:%M:%S"


def table_rows(population: Population) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The BDC_FW and BDC_QLR rows for the population (MJ as Decimal)."""
    units: list[tuple[Any, ...]] = []
    owners: list[tuple[Any, ...]] = []
    for p in population.properties:
        units.append(
            (
                p.unit_number,
                p.certificate_number,
                p.location,
                p.region_code,
                p.area,
                p.usage,
                p.registered_at.strftime(_TIME),
                "1" if p.mortgaged else "0",
                "1" if p.seized else "0",
                "1" if p.current else "2",
                p.updated_at.strftime(_TIME),
            )
        )
        for o in p.owners:
            owners.append(
                (len(owners) + 1, p.unit_number, o.name, "1", o.id_number, o.co_ownership, o.share)
            )
    return units, owners


class PropertyFrontDb:
    def __init__(self, population: Population, dsn: str, *, schema: str | None = None) -> None:
        self.population = population
        self.location: FrontDbLocation = parse_dsn(dsn, schema)
        self._lock_holder: Any = None  # sqlite3.Connection or asyncpg connection
        self.unavailable = False
        self.hang = False

    @property
    def dsn(self) -> str:
        """What an adapter should be given to read this database (schema included)."""
        if self.location.backend == "sqlite":
            return f"sqlite:///{self.location.target}"
        sep = "&" if "?" in self.location.target else "?"
        return f"{self.location.target}{sep}schema={self.location.schema}"

    # -- filling

    async def fill(self) -> None:
        units, owners = table_rows(self.population)
        if self.location.backend == "sqlite":
            await asyncio.to_thread(self._fill_sqlite, units, owners)
        else:
            await self._fill_postgres(units, owners)

    def _fill_sqlite(self, units: list[tuple[Any, ...]], owners: list[tuple[Any, ...]]) -> None:
        path = Path(self.location.target)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".filling")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp)
        try:
            with conn:
                for ddl in (*TABLES, VIEW):
                    conn.execute(ddl)
                # sqlite3 has no Decimal binding; NUMERIC affinity stores the text as a number.
                conn.executemany(INSERT_FW, [(*u[:4], str(u[4]), *u[5:]) for u in units])
                conn.executemany(INSERT_QLR, owners)
        finally:
            conn.close()
        os.replace(tmp, path)  # readers see the old database or the new one, never half of one

    async def _fill_postgres(
        self, units: list[tuple[Any, ...]], owners: list[tuple[Any, ...]]
    ) -> None:
        schema = self.location.schema
        conn = await asyncpg.connect(self.location.target)
        try:
            async with conn.transaction():
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                await conn.execute(f"CREATE SCHEMA {schema}")
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                for ddl in (*TABLES, VIEW):
                    await conn.execute(ddl)
                await conn.executemany(placeholders(INSERT_FW, "postgresql"), units)
                await conn.executemany(placeholders(INSERT_QLR, "postgresql"), owners)
        finally:
            await conn.close()

    async def drop(self) -> None:
        """Remove everything `fill` created (the schema, or the SQLite file)."""
        await self.clear_faults()
        if self.location.backend == "sqlite":
            await asyncio.to_thread(Path(self.location.target).unlink, missing_ok=True)
            return
        conn = await asyncpg.connect(self.location.target)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.location.schema} CASCADE")
        finally:
            await conn.close()

    # -- faults

    async def set_faults(self, *, unavailable: bool = False, hang: bool = False) -> None:
        await self.clear_faults()
        if hang:
            await self._hold_lock()
        if unavailable:
            await self._go_offline()
        self.unavailable, self.hang = unavailable, hang

    async def clear_faults(self) -> None:
        if self._lock_holder is not None:
            holder, self._lock_holder = self._lock_holder, None
            if self.location.backend == "sqlite":
                await asyncio.to_thread(_release_sqlite, holder)
            else:
                await holder.close()  # ends the transaction and its lock
        if self.unavailable:
            await self._go_online()
        self.unavailable = self.hang = False

    async def _hold_lock(self) -> None:
        if self.location.backend == "sqlite":
            self._lock_holder = await asyncio.to_thread(_lock_sqlite, self.location.target)
            return
        conn = await asyncpg.connect(self.location.target)
        await conn.execute("BEGIN")
        await conn.execute(f"LOCK TABLE {self.location.schema}.bdc_fw IN ACCESS EXCLUSIVE MODE")
        self._lock_holder = conn

    async def _go_offline(self) -> None:
        if self.location.backend == "sqlite":
            path = Path(self.location.target)
            await asyncio.to_thread(os.replace, path, path.with_name(path.name + ".offline"))
            return
        await self._pg_execute(
            f"ALTER VIEW {self.location.schema}.v_bdc_cq RENAME TO v_bdc_cq_offline"
        )

    async def _go_online(self) -> None:
        if self.location.backend == "sqlite":
            path = Path(self.location.target)
            await asyncio.to_thread(os.replace, path.with_name(path.name + ".offline"), path)
            return
        await self._pg_execute(
            f"ALTER VIEW {self.location.schema}.v_bdc_cq_offline RENAME TO v_bdc_cq"
        )

    async def _pg_execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.location.target)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Release fault locks; the data stays for the next reader."""
        await self.clear_faults()

    # -- admin HTTP (optional; the other simulators carry theirs on their own port)

    def admin_app(self) -> web.Application:
        """`POST /_admin/faults {"unavailable": bool, "hang": bool}`, `GET`, `DELETE`."""
        app = web.Application()
        app.router.add_get("/_admin/faults", self._admin_get)
        app.router.add_post("/_admin/faults", self._admin_post)
        app.router.add_delete("/_admin/faults", self._admin_delete)
        return app

    def _state(self) -> web.Response:
        return web.json_response({"unavailable": self.unavailable, "hang": self.hang})

    async def _admin_get(self, _request: web.Request) -> web.Response:
        return self._state()

    async def _admin_post(self, request: web.Request) -> web.Response:
        try:
            payload = await request.json()
            if not isinstance(payload, dict) or set(payload) - {"unavailable", "hang"}:
                raise ValueError("expected {unavailable, hang}")
            values = {k: v for k, v in payload.items()}
            if not all(isinstance(v, bool) for v in values.values()):
                raise ValueError("values must be true or false")
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await self.set_faults(**values)
        return self._state()

    async def _admin_delete(self, _request: web.Request) -> web.Response:
        await self.clear_faults()
        return self._state()


def _lock_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def _release_sqlite(conn: sqlite3.Connection) -> None:
    conn.rollback()
    conn.close()
