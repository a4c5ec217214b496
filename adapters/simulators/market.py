"""The market regulation bureau's licence register (市场监管 营业执照), simulated: an HTTP
JSON API behind OAuth 2.0 client credentials (RFC 6749 §4.4).

    POST /oauth/token                 grant_type=client_credentials, client by HTTP Basic
                                      (§2.3.1) or form fields → {access_token, token_type,
                                      expires_in}; a wrong client is 401 invalid_client
    POST /api/scjg/v1/yyzz/query      {"TYSHXYDM": "…"} with `Authorization: Bearer …`
    GET  /health

Query answers: `{"code": "00000", "msg": "成功", "data": {...}}`, "10404" 未查询到该主体, "10400"
参数错误 (HTTP 400); a missing, unknown or expired token is HTTP 401. `token_lifetime_s` and
`revoke_tokens()` let tests make the gateway refresh its token. The fault injector of the
HTTP simulators applies (`/_admin/faults`).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
import urllib.parse
from typing import Any

from aiohttp import web

from adapters.simulators.faults import FaultInjector, Faults
from adapters.simulators.population import BusinessLicence, Registers

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
QUERY_PATH = "/api/scjg/v1/yyzz/query"


def licence_payload(lic: BusinessLicence) -> dict[str, Any]:
    return {
        "TYSHXYDM": lic.credit_code,
        "QYMC": lic.name,
        "QYLX": lic.kind,
        "FDDBR": lic.representative_name,
        "FDDBRZJHM": lic.representative_id,
        "JYFW": lic.scope,
        "DJZT": lic.status,
        "CLRQ": f"{lic.founded_on:%Y-%m-%d}",
        "DJJG": lic.authority,
        "ZCDZ": lic.address,
        "GXSJ": f"{lic.updated_at:%Y-%m-%d %H:%M:%S}",
    }


class MarketSimulator:
    def __init__(
        self,
        registers: Registers,
        *,
        client_id: str,
        client_secret: str,
        token_lifetime_s: int = 3600,
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.registers = registers
        self._client = (client_id, client_secret)
        self.token_lifetime_s = token_lifetime_s
        self._tokens: dict[str, float] = {}  # token → monotonic expiry
        self.tokens_issued = 0
        self.injector = FaultInjector(faults, seed=seed + 4)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.injector.middleware])
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_post(QUERY_PATH, self._query)
        app.router.add_get("/health", self._health)
        self.injector.add_admin_routes(app)
        return app

    def revoke_tokens(self) -> None:
        """Every token issued so far becomes invalid (as after a key rotation)."""
        self._tokens.clear()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    def _client_of(self, request: web.Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                pair = base64.b64decode(header[6:], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return "", ""
            cid, _, secret = pair.partition(":")
            return urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
        return form.get("client_id", ""), form.get("client_secret", "")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        cid, secret = self._client_of(request, form)
        good = hmac.compare_digest(cid.encode(), self._client[0].encode())
        good &= hmac.compare_digest(secret.encode(), self._client[1].encode())
        if not good:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        self._tokens = {t: e for t, e in self._tokens.items() if e > now}
        self._tokens[token] = now + self.token_lifetime_s
        self.tokens_issued += 1
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime_s}
        )

    async def _query(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if self._tokens.get(token, 0.0) <= time.monotonic():
            return web.json_response(
                {"error": "invalid_token"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        try:
            payload = json.loads(await request.read())
            code = payload["TYSHXYDM"]
            if not isinstance(code, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _answer("10400", "参数错误", None, status=400)
        found = self.registers.licences.get(code.strip().upper())
        if found is None:
            return _answer("10404", "未查询到该主体", None)
        return _answer("00000", "成功", licence_payload(found))


def _answer(code: str, message: str, data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(
        {"code": code, "msg": message, "data": data},
        status=status,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )
