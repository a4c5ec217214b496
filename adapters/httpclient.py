"""The HTTP shell shared by the JSON (and SOAP token) departments: one pooled
`aiohttp.ClientSession` per department and the translation of transport failures into the
typed department errors.

Messages name the department and what went wrong, never the URL (it may carry an ID number)
and never the body; exceptions are raised `from None` so a logged traceback cannot leak them
either.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapters.base import DepartmentMalformed, DepartmentTimeout, DepartmentUnavailable
from adapters.deadline import within

MAX_BODY_BYTES = 8 * 1024 * 1024
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class DepartmentRefused(DepartmentUnavailable):
    """The department refused the gateway's credentials (HTTP 401/403): an expired OAuth
    token is refreshed and the call tried once more; anything else is an outage to fix."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class JsonDepartmentClient:
    """Requests to one department over a connection pool of `pool_size`. The session is
    created on first use (it must belong to the running event loop) and closed by `close`.
    `tls` is the client-side TLS context for departments that want mutual TLS."""

    def __init__(
        self,
        department: str,
        base_url: str,
        *,
        pool_size: int,
        connect_timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ):
        self.department = department
        self.base_url = base_url.rstrip("/")
        self.pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DepartmentUnavailable(f"{self.department}: connector is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.pool_size,
                limit_per_host=self.pool_size,
                ssl=self._tls if self._tls is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                trust_env=False,  # departments are reached directly, never through a proxy
                raise_for_status=False,
            )
        return self._session

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> Any:
        """POST a JSON body; the parsed JSON answer of a 200, else a typed error."""
        return await self.request("POST", path, body=body, headers=headers)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str = JSON_CONTENT_TYPE,
        url: str | None = None,
    ) -> Any:
        """The parsed JSON answer of a 200; every other outcome is a typed error. `url`
        replaces base URL + path (an OAuth token endpoint on another host)."""
        all_headers = dict(headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", content_type)
        try:
            async with self.session().request(
                method,
                url or self.base_url + path,
                data=body,
                params=params,
                headers=all_headers,
                allow_redirects=False,
            ) as resp:
                if resp.status >= 500:
                    raise DepartmentUnavailable(f"{self.department}: answered HTTP {resp.status}")
                if resp.status in (401, 403):
                    raise DepartmentRefused(
                        f"{self.department}: refused the gateway's credentials "
                        f"(HTTP {resp.status})",
                        status=resp.status,
                    )
                if resp.status != 200:
                    raise DepartmentUnavailable(f"{self.department}: answered HTTP {resp.status}")
                if (resp.content_length or 0) > MAX_BODY_BYTES:
                    raise DepartmentMalformed(f"{self.department}: answer too large")
                raw = await resp.read()
        except aiohttp.ClientError:
            # Connection refused or reset, truncated body, bad HTTP: the department is not
            # usable right now. (`from None`: aiohttp's message contains the URL.)
            raise DepartmentUnavailable(f"{self.department}: connection failed") from None
        if len(raw) > MAX_BODY_BYTES:
            raise DepartmentMalformed(f"{self.department}: answer too large")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DepartmentMalformed(f"{self.department}: answer is not JSON") from None

    async def get_ok(self, path: str) -> bool:
        try:
            async with self.session().get(self.base_url + path, allow_redirects=False) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, DepartmentUnavailable):
            return False

    async def healthy(self, path: str, timeout_s: float, department: str = "") -> bool:
        """The department's health endpoint answers 200 within `timeout_s`."""
        try:
            async with within(time.monotonic() + timeout_s, timeout_s, self.department):
                return await self.get_ok(path)
        except DepartmentTimeout:
            return False

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def envelope_field(envelope: Any, key: str, department: str) -> Any:
    if not isinstance(envelope, dict) or key not in envelope:
        raise DepartmentMalformed(f"{department}: answer lacks {key}")
    return envelope[key]
