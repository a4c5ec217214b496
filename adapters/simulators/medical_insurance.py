"""The medical insurance bureau (医保 参保), simulated: an HTTP JSON API behind an API key,
in the envelope of the national medical insurance platform (`infcode`, `err_msg`, `output`).

    POST /fsi/api/v1/psn/insuinfo   {"infno": "1101", "input": {"data": {"certno": "…"}}}
    GET  /health

`infcode` 0 成功 (output.insuinfo: the person's enrolment), 2001 未查询到参保信息, -1 参数错误
(HTTP 400). A request without the API key in `apikey_header` gets HTTP 401. The fault
injector of the HTTP simulators applies (`/_admin/faults`).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from adapters.simulators.faults import FaultInjector, Faults
from adapters.simulators.population import MedicalEnrolment, Registers

PATH = "/fsi/api/v1/psn/insuinfo"
NOT_FOUND = 2001


def insuinfo(e: MedicalEnrolment) -> dict[str, Any]:
    return {
        "XM": e.name,
        "SFZHM": e.id_number,
        "XZLX": e.scheme,
        "CBZT": e.status,
        "CBDQ": e.region_code,
        "CBRQ": f"{e.enrolled_on:%Y-%m-%d}",
        "ZZRQ": f"{e.ended_on:%Y-%m-%d}" if e.ended_on else None,
        "GXSJ": f"{e.updated_at:%Y-%m-%d %H:%M:%S}",
    }


class MedicalInsuranceSimulator:
    def __init__(
        self,
        registers: Registers,
        *,
        api_key: str,
        header: str = "X-API-Key",
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.registers = registers
        self._key = api_key.encode()
        self._header = header
        self.injector = FaultInjector(faults, seed=seed + 5)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.injector.middleware])
        app.router.add_post(PATH, self._query)
        app.router.add_get("/health", self._health)
        self.injector.add_admin_routes(app)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    async def _query(self, request: web.Request) -> web.Response:
        given = request.headers.get(self._header, "").encode()
        if not hmac.compare_digest(given, self._key):
            return _answer(-2, "apikey 无效", None, status=401)
        try:
            payload = json.loads(await request.read())
            certno = payload["input"]["data"]["certno"]
            if payload.get("infno") != "1101" or not isinstance(certno, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _answer(-1, "参数错误", None, status=400)
        enrolment = self.registers.medical.get(certno.strip().upper())
        if enrolment is None:
            return _answer(NOT_FOUND, "未查询到参保信息", None)
        return _answer(0, "", {"insuinfo": insuinfo(enrolment)})


def _answer(code: int, message: str, output: Any, *, status: int = 200) -> web.Response:
    return web.json_response(
        {"infcode": code, "err_msg": message, "output": output},
        status=status,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )
