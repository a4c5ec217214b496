"""Social-security (人社) adapter: the person with enrolments, then every page of the monthly
contribution history, mapped to `SocialSecurityRecord`.

The bureau answers `{"code": 0, "message", "data"}`; code 40401 means it has never enrolled
the person. History is paged PageHelper-style (`pageNum`, `pageSize` in months, `pages`,
`total` months, `list` of rows): the adapter reads page 1, then the remaining pages
concurrently, and checks that the months add up to `total`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters import mapping
from adapters.base import (
    DepartmentId,
    DepartmentMalformed,
    DepartmentUnavailable,
    Fetched,
    RecordNotFound,
    RecordQuery,
)
from adapters.deadline import within
from adapters.httpclient import JsonDepartmentClient, envelope_field
from gateway.domain.errors import ProoflessError
from proofless.v1 import verification_pb2 as pb

PERSON_PATH = "/api/si/v1/person"
HISTORY_PATH = "/api/si/v1/contributions"
HEALTH_PATH = "/health"
CODE_OK = 0
CODE_NOT_FOUND = 40401
MAX_PAGES = 500  # 40 years at 1 month a page: more is a broken answer, not a long career


class SocialSecurityAdapter:
    department: DepartmentId = "social_security"

    def __init__(
        self,
        url: str,
        *,
        timeout_ms: int = 2000,
        pool_size: int = 16,
        page_size: int = 24,
    ) -> None:
        self._timeout_s = timeout_ms / 1000
        self._page_size = page_size
        self._http = JsonDepartmentClient(
            self.department, url, pool_size=pool_size, connect_timeout_s=self._timeout_s
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SocialSecurityAdapter:
        return cls(
            str(cfg["url"]),
            timeout_ms=int(cfg.get("timeout_ms", 2000)),
            pool_size=int(cfg.get("pool_size", 16)),
            page_size=int(cfg.get("history_page_size", 24)),
        )

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[pb.SocialSecurityRecord]:
        headers = {"X-Request-Id": query.request_id} if query.request_id else {}
        async with within(deadline, self._timeout_s, self.department):
            person = unwrap(await self._http.post(PERSON_PATH, _body(query.id_number), headers))
            rows = await self._history(query.id_number, headers)
        record = mapping.social_security_record(person, rows)
        if record.id_number != query.id_number.upper():
            raise DepartmentMalformed("social_security: answered for a different person")
        as_of = (
            mapping.as_of(person["GXSJ"], "social_security")
            if person.get("GXSJ")
            else datetime.now(UTC)
        )
        return Fetched(self.department, record, as_of)

    async def _page(self, id_number: str, number: int, headers: Mapping[str, str]) -> Any:
        body = _body(id_number, pageNum=number, pageSize=self._page_size)
        page = unwrap(await self._http.post(HISTORY_PATH, body, headers))
        if not isinstance(page, dict) or not isinstance(page.get("list"), list):
            raise DepartmentMalformed("social_security: history page lacks list")
        return page

    async def _history(self, id_number: str, headers: Mapping[str, str]) -> list[Any]:
        first = await self._page(id_number, 1, headers)
        pages, total = first.get("pages"), first.get("total")
        if not _count(pages) or not _count(total) or pages > MAX_PAGES:
            raise DepartmentMalformed("social_security: history paging is unreadable")
        rows: list[Any] = list(first["list"])
        if pages > 1:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(self._page(id_number, n, headers))
                        for n in range(2, pages + 1)
                    ]
            except BaseExceptionGroup as failed:
                raise _first_error(failed) from None
            for task in tasks:
                rows.extend(task.result()["list"])
        months = {row.get("JFNY") for row in rows if isinstance(row, dict)}
        if len(months) != total:
            # Pages moved under us (the bureau posted a month mid-read) or were cut short.
            raise DepartmentMalformed("social_security: history pages do not add up")
        return rows

    async def health(self) -> bool:
        return await self._http.healthy(HEALTH_PATH, self._timeout_s, self.department)

    async def close(self) -> None:
        await self._http.close()


def _body(id_number: str, **extra: int) -> bytes:
    return json.dumps({"SFZHM": id_number, **extra}).encode()


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first adapter error in a failed page fan-out; anything else is re-raised as is."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, ProoflessError):
            return exc
    return group


def unwrap(envelope: Any) -> Any:
    code = envelope_field(envelope, "code", "social_security")
    if code == CODE_NOT_FOUND:
        raise RecordNotFound("social_security: person not enrolled")
    if code != CODE_OK:
        raise DepartmentUnavailable(f"social_security: answered code {str(code)[:8]}")
    data = envelope_field(envelope, "data", "social_security")
    if not isinstance(data, dict):
        raise DepartmentMalformed("social_security: data is not an object")
    return data
