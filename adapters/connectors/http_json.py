"""The `http_json` connector: departments that answer JSON over HTTP(S).

Configured entirely by the catalogue: the request (method, path, body or query template), the
envelope (result code, success and not-found codes, where the data sits), an optional paged
sub-resource merged into the record (PageHelper style: page 1, then the rest concurrently,
and the pages must add up to the announced total), and the authentication scheme
(adapters.auth). One pooled session per department. A traced call's W3C `traceparent`
(gateway.ops.tracing: the department span) goes with every request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from adapters.auth import Authenticator, authenticator, client_tls, fill, json_body
from adapters.base import Fetched, RecordQuery
from adapters.connectors import common
from adapters.deadline import within
from adapters.httpclient import DepartmentRefused, JsonDepartmentClient
from gateway.catalogue.schema import Department, EvidenceType, HttpCall, HttpPages
from gateway.domain.errors import DepartmentMalformed, ProoflessError

#: the W3C trace context of a traced call (traceparent, tracestate) goes on to the department
_TRACE_CONTEXT = TraceContextTextMapPropagator()


class HttpJsonConnector:
    def __init__(self, department: Department, evidence: Mapping[str, EvidenceType]) -> None:
        self.department = department.code
        self._evidence = dict(evidence)
        self._timeout_s = department.timeout_ms / 1000
        self._health = department.health
        self._http = JsonDepartmentClient(
            department.code,
            department.endpoint,
            pool_size=department.pool_size,
            connect_timeout_s=self._timeout_s,
            tls=client_tls(department.auth, department.code),
        )
        self._auth: Authenticator = authenticator(department.auth, department.code, self._http)

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[Any]:
        evidence = self._evidence[query.evidence]
        call = evidence.fetch
        assert isinstance(call, HttpCall)
        values = {"{subject}": query.subject, "{request_id}": query.request_id}
        headers = {"X-Request-Id": query.request_id} if query.request_id else {}
        _TRACE_CONTEXT.inject(headers)  # nothing when the call is not traced
        async with within(deadline, self._timeout_s, self.department):
            envelope = await self._send(
                _Request(call.method, call.path, call.body, call.query), values, headers
            )
            data = common.result(
                envelope,
                department=self.department,
                result_field=call.result_field,
                success=call.success,
                not_found=call.not_found,
                data=call.data,
            )
            if call.pages is not None:
                if not isinstance(data, Mapping):
                    raise DepartmentMalformed(f"{self.department}: data is not an object")
                rows = await self._pages(call, call.pages, values, headers)
                data = {**data, call.pages.into: rows}
        record, as_of = common.records(evidence, data, query.subject, envelope)
        return Fetched(self.department, record, as_of, evidence.code)

    async def _send(
        self, request: _Request, values: Mapping[str, str], headers: Mapping[str, str]
    ) -> Any:
        method = request.method
        quoted = {k: urllib.parse.quote(v, safe="") for k, v in values.items()}
        path = str(fill(request.path, quoted))
        params = {k: str(fill(v, values)) for k, v in request.query.items()}
        body = json_body(request.body, values) if method == "POST" else b""
        path_qs = path + ("?" + urllib.parse.urlencode(params) if params else "")
        for attempt in (1, 2):
            auth = await self._auth.headers(method, path_qs, body)
            try:
                return await self._http.request(
                    method,
                    path,
                    body=body if method == "POST" else None,
                    params=params or None,
                    headers={**headers, **auth},
                )
            except DepartmentRefused:
                # An expired token is refreshed once; anything else is for the operator.
                if attempt == 2 or not self._auth.refused():
                    raise
        raise AssertionError("unreachable")

    async def _page(
        self,
        call: HttpCall,
        pages: HttpPages,
        number: int,
        values: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Mapping[str, Any]:
        body = {**pages.body, pages.page_field: number, pages.size_field: pages.page_size}
        envelope = await self._send(_Request("POST", pages.path, body, {}), values, headers)
        page = common.result(
            envelope,
            department=self.department,
            result_field=call.result_field,
            success=call.success,
            not_found=call.not_found,
            data=call.data,
        )
        if not isinstance(page, Mapping) or not isinstance(page.get(pages.list_field), list):
            raise DepartmentMalformed(f"{self.department}: a page lacks {pages.list_field}")
        return page

    async def _pages(
        self,
        call: HttpCall,
        pages: HttpPages,
        values: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> list[Any]:
        first = await self._page(call, pages, 1, values, headers)
        count, total = first.get(pages.pages_field), first.get(pages.total_field)
        if not isinstance(count, int) or not isinstance(total, int):
            raise DepartmentMalformed(f"{self.department}: paging is unreadable")
        if not _count(count) or not _count(total) or count > pages.max_pages:
            raise DepartmentMalformed(f"{self.department}: paging is unreadable")
        rows: list[Any] = list(first[pages.list_field])
        if count > 1:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = [
                        group.create_task(self._page(call, pages, n, values, headers))
                        for n in range(2, count + 1)
                    ]
            except BaseExceptionGroup as failed:
                raise _first_error(failed) from None
            for task in tasks:
                rows.extend(task.result()[pages.list_field])
        if pages.total_counts:
            seen = len({row.get(pages.total_counts) for row in rows if isinstance(row, Mapping)})
        else:
            seen = len(rows)
        if seen != total:
            # Pages moved under us (the department posted a row mid-read) or were cut short.
            raise DepartmentMalformed(f"{self.department}: pages do not add up")
        return rows

    async def health(self) -> bool:
        if not self._health:
            return True
        return await self._http.healthy(self._health, self._timeout_s)

    async def close(self) -> None:
        await self._http.close()


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    body: Mapping[str, Any]
    query: Mapping[str, str]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first connector error in a failed page fan-out; anything else re-raised as is."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if isinstance(exc, ProoflessError):
            return exc
    return group
