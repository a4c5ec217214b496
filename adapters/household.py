"""Household registry (公安户籍) adapter: signed JSON over HTTP, department field names mapped
to `HouseholdRecord`.

The registry answers HTTP 200 with an envelope `{"code", "msg", "data", "timestamp"}`;
`code` "0000" is success and "1004" (查无此人) means it does not know the person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from adapters import mapping, signing
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
from proofless.v1 import verification_pb2 as pb

QUERY_PATH = "/api/v1/rkxx/query"
HEALTH_PATH = "/health"
CODE_OK = "0000"
CODE_NOT_FOUND = "1004"


class HouseholdAdapter:
    department: DepartmentId = "household"

    def __init__(
        self,
        url: str,
        *,
        app_key: str,
        secret: bytes,
        timeout_ms: int = 2000,
        pool_size: int = 16,
    ) -> None:
        self._app_key = app_key
        self._secret = secret
        self._timeout_s = timeout_ms / 1000
        self._http = JsonDepartmentClient(
            self.department, url, pool_size=pool_size, connect_timeout_s=self._timeout_s
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> HouseholdAdapter:
        return cls(
            str(cfg["url"]),
            app_key=str(cfg["app_key"]),
            secret=signing.read_secret(str(cfg["app_secret_file"])),
            timeout_ms=int(cfg.get("timeout_ms", 2000)),
            pool_size=int(cfg.get("pool_size", 16)),
        )

    async def fetch(self, query: RecordQuery, deadline: float) -> Fetched[pb.HouseholdRecord]:
        body = json.dumps({"SFZHM": query.id_number}).encode()
        headers = signing.signed_headers(self._app_key, self._secret, "POST", QUERY_PATH, body)
        if query.request_id:
            headers["X-Request-Id"] = query.request_id
        async with within(deadline, self._timeout_s, self.department):
            envelope = await self._http.post(QUERY_PATH, body, headers)
        data = unwrap(envelope)
        record = mapping.household_record(data)
        if record.id_number != query.id_number.upper():
            raise DepartmentMalformed("household: answered for a different person")
        return Fetched(self.department, record, answer_time(envelope, data))

    async def health(self) -> bool:
        return await self._http.healthy(HEALTH_PATH, self._timeout_s, self.department)

    async def close(self) -> None:
        await self._http.close()


def unwrap(envelope: Any) -> Any:
    code = envelope_field(envelope, "code", "household")
    if code == CODE_NOT_FOUND:
        raise RecordNotFound("household: no such person in the registry")
    if code != CODE_OK:
        raise DepartmentUnavailable(f"household: answered code {str(code)[:8]}")
    return envelope_field(envelope, "data", "household")


def answer_time(envelope: dict[str, Any], data: Any) -> datetime:
    """GXSJ (the record's last change) where given, else the envelope's timestamp (ms)."""
    if isinstance(data, dict) and data.get("GXSJ"):
        return mapping.as_of(data["GXSJ"], "household")
    stamp = envelope.get("timestamp")
    if isinstance(stamp, int) and not isinstance(stamp, bool) and stamp > 0:
        try:
            return datetime.fromtimestamp(stamp / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise DepartmentMalformed("household: timestamp is unreadable") from None
    return datetime.now(UTC)
