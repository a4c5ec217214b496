"""The HTTP shell shared by the JSON departments: one pooled `aiohttp.ClientSession` per
department and the translation of transport failures into the adapter errors.

Messages name the department and what went wrong, never the URL (it may carry an ID number)
and never the body; exceptions are raised `from None` so a logged traceback cannot leak them
either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapters.base import DepartmentMalformed, DepartmentTimeout, DepartmentUnavailable
from adapters.deadline import within

MAX_BODY_BYTES = 8 * 1024 * 1024


class JsonDepartmentClient:
    """POSTs JSON to one department over a connection pool of `pool_size`. The session is
    created on first use (it must belong to the running event loop) and closed by `close`."""

    def __init__(self, department: str, base_url: str, *, pool_size: int, connect_timeout_s: float):
        self.department = department
        self.base_url = base_url.rstrip("/")
        self.pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise DepartmentUnavailable(f"{self.department}: adapter is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=self.pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                trust_env=False,  # departments are reached directly, never through a proxy
                raise_for_status=False,
            )
        return self._session

    async def post(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> Any:
        """The parsed JSON answer of a 200; every other outcome is a typed error."""
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            async with self.session().post(
                self.base_url + path, data=body, headers=all_headers, allow_redirects=False
            ) as resp:
                if resp.status >= 500:
                    raise DepartmentUnavailable(f"{self.department}: answered HTTP {resp.status}")
                if resp.status in (401, 403):
                    raise DepartmentUnavailable(
                        f"{self.department}: refused the gateway's credentials (HTTP {resp.status})"
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

    async def healthy(self, path: str, timeout_s: float, department: str) -> bool:
        """The department's health endpoint answers 200 within `timeout_s`."""
        try:
            async with within(time.monotonic() + timeout_s, timeout_s, department):
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
