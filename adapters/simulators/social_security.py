"""The human resources and social security bureau (人社), simulated: an aiohttp JSON API with
its own field names and a paged monthly contribution history.

    POST /api/si/v1/person          {"SFZHM"}                        enrolments (CBXX)
    POST /api/si/v1/contributions   {"SFZHM", "pageNum", "pageSize"}  monthly rows, paged
    GET  /health

Envelope `{"code": 0, "message", "data"}`; code 40401 未查询到参保信息, 40001 参数错误.
History pages are PageHelper-style and count months: `pageSize` months per page (default 24,
at most 120), `total` months, `pages`, and `list` holding every row (one per insurance type)
of those months, oldest first.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from adapters.simulators.datagen import (
    ContributionRow,
    Population,
    SocialSecurityAccount,
    month_text,
)
from adapters.simulators.faults import FaultInjector, Faults
from adapters.simulators.fujian import INSURANCE_NAMES

PERSON_PATH = "/api/si/v1/person"
HISTORY_PATH = "/api/si/v1/contributions"
DEFAULT_PAGE_SIZE = 24
MAX_PAGE_SIZE = 120


def yuan(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def person_payload(account: SocialSecurityAccount) -> dict[str, Any]:
    return {
        "XM": account.name,
        "SFZHM": account.id_number,
        "GXSJ": f"{account.updated_at:%Y-%m-%d %H:%M:%S}",
        "CBXX": [
            {
                "XZLX": s.type_code,
                "XZMC": INSURANCE_NAMES[s.type_code],
                "CBZT": s.status,
                "DWMC": s.employer,
                "CBDQ": s.region_code,
                "QSNY": month_text(s.first_month),
                "ZZNY": month_text(s.last_month),
                "LJJFYS": s.total_months,
            }
            for s in account.insurances()
        ],
    }


def _row(row: ContributionRow) -> dict[str, Any]:
    return {
        "JFNY": month_text(row.month),
        "XZLX": row.type_code,
        "DWMC": row.employer,
        "CBDQ": row.region_code,
        "JFJS": yuan(row.base_cents),
    }


def history_page(account: SocialSecurityAccount, page: int, size: int) -> dict[str, Any]:
    """Page `page` of `size` months. Rows are derived for just those months, so a page costs
    the same for a 40-year career as for a 2-year one and nothing is cached."""
    months = account.months()
    chosen = months[(page - 1) * size : page * size]
    rows = account.contributions(chosen[0], chosen[-1]) if chosen else []
    return {
        "pageNum": page,
        "pageSize": size,
        "total": len(months),
        "pages": math.ceil(len(months) / size),
        "list": [_row(r) for r in rows],
    }


class SocialSecuritySimulator:
    def __init__(self, population: Population, *, faults: Faults | None = None) -> None:
        self.population = population
        self.injector = FaultInjector(faults, seed=population.seed + 1)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.injector.middleware])
        app.router.add_post(PERSON_PATH, self._person)
        app.router.add_post(HISTORY_PATH, self._history)
        app.router.add_get("/health", self._health)
        self.injector.add_admin_routes(app)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return _answer(0, "success", {"status": "UP"})

    async def _account(self, request: web.Request) -> tuple[SocialSecurityAccount | None, Any]:
        try:
            payload = json.loads(await request.read())
            id_number = payload["SFZHM"]
            if not isinstance(id_number, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(
                text=json.dumps({"code": 40001, "message": "参数错误", "data": None}),
                content_type="application/json",
            ) from None
        return self.population.social_security.get(id_number.upper()), payload

    async def _person(self, request: web.Request) -> web.Response:
        account, _ = await self._account(request)
        if account is None:
            return _answer(40401, "未查询到参保信息", None)
        return _answer(0, "success", person_payload(account))

    async def _history(self, request: web.Request) -> web.Response:
        account, payload = await self._account(request)
        if account is None:
            return _answer(40401, "未查询到参保信息", None)
        page, size = payload.get("pageNum", 1), payload.get("pageSize", DEFAULT_PAGE_SIZE)
        if not (isinstance(page, int) and isinstance(size, int) and page >= 1 and size >= 1):
            return _answer(40001, "参数错误", None, status=400)
        return _answer(0, "success", history_page(account, page, min(size, MAX_PAGE_SIZE)))


def _answer(code: int, message: str, data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "data": data},
        status=status,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )
