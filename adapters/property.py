"""Real-estate registry (不动产登记) adapter: reads the front-end database view `V_BDC_CQ`
(one row per current right and owner) and maps each row to a `PropertyRecord`.

A person the registry has no current right for simply has no rows: the empty list is the
"no-property" answer (无房证明), not a `RecordNotFound`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters import mapping
from adapters.base import (
    DepartmentId,
    DepartmentTimeout,
    DepartmentUnavailable,
    Fetched,
    RecordQuery,
)
from adapters.deadline import within
from adapters.frontdb import READER_ERRORS, FrontDbReader, open_reader, parse_dsn
from proofless.v1 import verification_pb2 as pb

RIGHTS_SQL = (
    "SELECT BDCQZH, ZL, XZQH, MJ, YT, GYFS, FE, DJSJ, DYZT, CFZT, GXSJ "
    "FROM V_BDC_CQ WHERE QLRZJH = ? ORDER BY DJSJ, BDCQZH"
)
HEALTH_SQL = "SELECT COUNT(*) FROM V_BDC_CQ WHERE 1 = 0"


class PropertyAdapter:
    department: DepartmentId = "property"

    def __init__(
        self, dsn: str, *, timeout_ms: int = 2000, pool_size: int = 8, schema: str | None = None
    ) -> None:
        self._timeout_s = timeout_ms / 1000
        self.location = parse_dsn(dsn, schema)
        self._reader: FrontDbReader = open_reader(
            self.location, pool_size=pool_size, timeout_s=self._timeout_s
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PropertyAdapter:
        schema = cfg.get("schema")
        return cls(
            str(cfg["dsn"]),
            timeout_ms=int(cfg.get("timeout_ms", 2000)),
            pool_size=int(cfg.get("pool_size", 8)),
            schema=str(schema) if schema else None,
        )

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[list[pb.PropertyRecord]]:
        async with within(deadline, self._timeout_s, self.department):
            rows = await self._query(RIGHTS_SQL, (query.id_number.upper(),))
        records = [mapping.property_record(row) for row in rows]
        as_of = (
            max(mapping.as_of(row.get("GXSJ"), "property") for row in rows)
            if rows
            else datetime.now(UTC)
        )
        return Fetched(self.department, records, as_of)

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            return await self._reader.query(sql, params)
        except READER_ERRORS:
            # Driver messages may quote the query's parameters: drop them.
            raise DepartmentUnavailable("property: front-end database query failed") from None

    async def health(self) -> bool:
        try:
            async with within(time.monotonic() + self._timeout_s, self._timeout_s, "property"):
                await self._query(HEALTH_SQL, ())
        except (DepartmentUnavailable, DepartmentTimeout):
            return False
        return True

    async def close(self) -> None:
        await self._reader.close()
