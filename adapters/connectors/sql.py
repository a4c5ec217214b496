"""The `sql` connector: a department's front-end database (前置库) read with one
parameterised query per evidence type.

The department fills the database; the gateway only reads (read-only sessions). The engines
are in adapters.frontdb: SQLite (the embedded default), PostgreSQL (asyncpg) and MySQL /
MariaDB. Queries are written with `?` placeholders; rows come back as dicts keyed by
upper-case column names whatever the engine.

For cardinality "one", no row is "no such subject" and more than one is a broken answer;
for "many", no row is simply none (the no-property answer is an empty list).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from adapters.base import Fetched, RecordQuery
from adapters.connectors import common
from adapters.deadline import within
from adapters.frontdb import READER_ERRORS, FrontDbReader, open_reader, parse_dsn
from gateway.catalogue.schema import Department, EvidenceType, SqlQuery
from gateway.domain.errors import (
    DepartmentMalformed,
    DepartmentTimeout,
    DepartmentUnavailable,
    RecordNotFound,
)


class SqlConnector:
    def __init__(self, department: Department, evidence: Mapping[str, EvidenceType]) -> None:
        self.department = department.code
        self._evidence = dict(evidence)
        self._timeout_s = department.timeout_ms / 1000
        self._health = department.health
        schema = department.settings.get("schema")
        self.location = parse_dsn(department.endpoint, str(schema) if schema else None)
        self._reader: FrontDbReader = open_reader(
            self.location, pool_size=department.pool_size, timeout_s=self._timeout_s
        )

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[Any]:
        evidence = self._evidence[query.evidence]
        spec = evidence.fetch
        assert isinstance(spec, SqlQuery)
        values = {"{subject}": query.subject.upper(), "{request_id}": query.request_id}
        params = tuple(_fill(p, values) for p in spec.params)
        async with within(deadline, self._timeout_s, self.department):
            rows = await self._query(spec.query, params)
        if evidence.cardinality == "one":
            if not rows:
                raise RecordNotFound(f"{self.department}: no such subject")
            if len(rows) > 1:
                raise DepartmentMalformed(f"{self.department}: more than one row for one subject")
            data: Any = rows[0]
        else:
            data = rows
        record, as_of = common.records(evidence, data, query.subject, None)
        return Fetched(self.department, record, as_of, evidence.code)

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            return await self._reader.query(sql, params)
        except READER_ERRORS:
            # Driver messages may quote the query's parameters: drop them.
            raise DepartmentUnavailable(
                f"{self.department}: front-end database query failed"
            ) from None

    async def health(self) -> bool:
        if not self._health:
            return True
        try:
            async with within(time.monotonic() + self._timeout_s, self._timeout_s, self.department):
                await self._query(self._health, ())
        except (DepartmentUnavailable, DepartmentTimeout):
            return False
        return True

    async def close(self) -> None:
        await self._reader.close()


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = template.replace(key, value)
    return template
