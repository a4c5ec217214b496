"""The public-security household registry (公安户籍), simulated: an aiohttp JSON API with the
department's own field names, behind AppKey + HMAC-SHA256 request signing.

    POST /api/v1/rkxx/query   {"SFZHM": "..."}   signed (see `adapters.signing`)
    GET  /health

Answers use the registry's envelope `{"code", "msg", "data", "timestamp"}` (timestamp in ms):
"0000" 成功, "1004" 查无此人 (HTTP 200 both), "1001" 签名校验失败 (HTTP 401),
"1002" 参数错误 (HTTP 400), "1005" 系统繁忙 (HTTP 503).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from adapters import signing
from adapters.simulators.datagen import Person, Population
from adapters.simulators.faults import FaultInjector, Faults

QUERY_PATH = "/api/v1/rkxx/query"


class NonceCacheFull(Exception):
    """More live nonces than the cache holds: refuse rather than forget one (fail closed)."""


class SignatureVerifier:
    """Checks AppKey + HMAC signatures, the timestamp window and nonce reuse.

    A nonce is remembered for twice the allowed clock skew after it was seen: a request
    accepted at time t carries a timestamp ≥ t - skew, so it can no longer pass the
    timestamp check after t + 2·skew. Entries are kept in arrival order, hence in expiry
    order, and pruned from the front; at `capacity` live nonces new requests are refused.
    """

    def __init__(
        self,
        apps: Mapping[str, bytes],
        *,
        skew_s: int = 300,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._apps = dict(apps)
        self._skew_s = skew_s
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check(
        self, method: str, path_qs: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        """None when the request is authentic and fresh, else the reason for refusing it."""
        app_key = headers.get(signing.HEADER_APP_KEY)
        stamp = headers.get(signing.HEADER_TIMESTAMP)
        nonce = headers.get(signing.HEADER_NONCE)
        presented = headers.get(signing.HEADER_SIGNATURE)
        if not (app_key and stamp and nonce and presented):
            return "missing signature headers"
        secret = self._apps.get(app_key)
        if secret is None:
            return "unknown app key"
        if not stamp.isdigit():
            return "bad timestamp"
        now = self._clock()
        if abs(now - int(stamp)) > self._skew_s:
            return "stale timestamp"
        if not 8 <= len(nonce) <= 64:
            return "bad nonce"
        if not signing.verify(
            secret,
            method=method,
            path_qs=path_qs,
            timestamp=stamp,
            nonce=nonce,
            body=body,
            presented=presented,
        ):
            return "bad signature"
        # Only authentic requests reach the cache, so outsiders cannot fill it.
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        key = (app_key, nonce)
        if key in self._seen:
            return "replayed nonce"
        if len(self._seen) >= self._capacity:
            raise NonceCacheFull
        self._seen[key] = now + 2 * self._skew_s
        return None


def person_payload(population: Population, person: Person) -> dict[str, Any]:
    """One person as the registry returns it, with the household's other current members."""
    household = population.household_of(person.id_number)
    members = [
        {"XM": m.name, "YHZGX": m.relation, "SFZHM": m.id_number}
        for m in (population.people[i] for i in household.member_ids)
        if m.id_number != person.id_number and m.status == "正常"
    ]
    return {
        "XM": person.name,
        "SFZHM": person.id_number,
        "XB": person.gender,
        "MZ": person.ethnicity,
        "CSRQ": f"{person.birth_date:%Y%m%d}",
        "HH": household.number,
        "HJDZ": household.address,
        "XZQH": household.region_code,
        "YHZGX": person.relation,
        "DJJG": household.authority,
        "ZT": person.status,
        "GXSJ": f"{person.updated_at:%Y%m%d%H%M%S}",
        "JTCY": members,
    }


class HouseholdSimulator:
    def __init__(
        self,
        population: Population,
        *,
        apps: Mapping[str, bytes],
        faults: Faults | None = None,
        skew_s: int = 300,
        nonce_capacity: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.population = population
        self.injector = FaultInjector(faults, seed=population.seed)
        self.verifier = SignatureVerifier(apps, skew_s=skew_s, capacity=nonce_capacity, clock=clock)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.injector.middleware])
        app.router.add_post(QUERY_PATH, self._query)
        app.router.add_get("/health", self._health)
        self.injector.add_admin_routes(app)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return _answer("0000", "成功", {"status": "UP"})

    async def _query(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            refused = self.verifier.check(request.method, request.path_qs, request.headers, body)
        except NonceCacheFull:
            return _answer("1005", "系统繁忙", None, status=503)
        if refused is not None:
            return _answer("1001", f"签名校验失败: {refused}", None, status=401)
        try:
            id_number = json.loads(body)["SFZHM"]
            if not isinstance(id_number, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _answer("1002", "参数错误", None, status=400)
        person = self.population.people.get(id_number.upper())
        if person is None:
            return _answer("1004", "查无此人", None)
        return _answer("0000", "成功", person_payload(self.population, person))


def _answer(code: str, msg: str, data: Any, *, status: int = 200) -> web.Response:
    envelope = {"code": code, "msg": msg, "data": data, "timestamp": int(time.time() * 1000)}
    return web.json_response(
        envelope, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )
