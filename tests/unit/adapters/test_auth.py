"""How the gateway authenticates to a department (adapters.auth): every scheme a catalogue file
may name, through the http_json connector built from a catalogue, against real aiohttp servers
started here (a department, and an OAuth token endpoint on a host of its own)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from adapters import auth
from adapters.base import DepartmentMalformed, DepartmentUnavailable, RecordQuery
from adapters.connectors import build_connectors
from adapters.connectors.http_json import HttpJsonConnector
from adapters.httpclient import DepartmentRefused
from adapters.simulators.household import SignatureVerifier
from gateway.catalogue import Catalogue, parse_catalogue
from gateway.catalogue.schema import AuthSpec
from gateway.devtools.pki import DEMO_CALLERS, DevPki
from gateway.domain.errors import ConfigError

SUBJECT = "11010519491231002X"  # GB 11643-1999's worked example, nobody's
CALLER = DEMO_CALLERS[0].id

REGISTRY = """
[department]
code = "registry"
name = "测试登记系统"
connector = "http_json"
endpoint = "http://127.0.0.1:1"
timeout_ms = 3000
pool_size = 4
health = "/health"

[evidence.registration]
name = "登记信息"
subject = "person"
cardinality = "one"
subject_field = "SFZHM"

[evidence.registration.http]
method = "POST"
path = "/api/query"
body = { SFZHM = "{subject}", LSH = "{request_id}", QD = ["{subject}", 1] }
result_field = "code"
success = ["0"]
not_found = ["404"]
data = "data"

[[evidence.registration.field]]
name = "id_number"
type = "string"
from = "SFZHM"
convert = "id_number"

[[evidence.registration.field]]
name = "grade"
type = "integer"
from = "DJ"

[evidence.licence]
name = "许可信息"
subject = "person"
cardinality = "many"

[evidence.licence.http]
method = "GET"
path = "/api/licences/{subject}"
query = { rid = "{request_id}", kind = "all" }
data = "items"

[[evidence.licence.field]]
name = "number"
type = "string"
from = "XKZH"
"""


# ---- the department and the token endpoint: real servers on port 0 -------------------------


@dataclass
class Seen:
    method: str
    path_qs: str
    headers: CIMultiDict[str]  # header names compare case-insensitively
    body: bytes
    peer: dict[str, Any] | None = None


Check = Callable[[web.Request, bytes], bool]


@dataclass
class Department:
    """A department answering JSON; `accept` decides whether the credentials are good."""

    accept: Check = lambda _request, _body: True
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/query", self._query)
        app.router.add_get("/api/licences/{subject}", self._licences)
        app.router.add_get("/health", self._health)
        return app

    async def _record(self, request: web.Request) -> tuple[bytes, bool]:
        body = await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        self.seen.append(Seen(request.method, request.path_qs, request.headers.copy(), body, peer))
        return body, self.accept(request, body)

    async def _query(self, request: web.Request) -> web.Response:
        body, ok = await self._record(request)
        if not ok:
            return web.json_response({"code": "401", "msg": "unauthorised"}, status=401)
        subject = json.loads(body)["SFZHM"]
        return web.json_response({"code": "0", "data": {"SFZHM": subject, "DJ": 3}})

    async def _licences(self, request: web.Request) -> web.Response:
        _, ok = await self._record(request)
        if not ok:
            return web.json_response({}, status=403)
        number = request.match_info["subject"]
        return web.json_response({"items": [{"XKZH": f"L-{number[-4:]}"}]})

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})


@dataclass
class TokenEndpoint:
    """RFC 6749 §4.4: issues tok-1, tok-2, …; the department accepts the ones still valid."""

    answer: Callable[[str], Any] = lambda token: {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    status: int = 200
    delay_s: float = 0.0
    requests: list[tuple[CIMultiDict[str], dict[str, str]]] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth2/token", self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append((request.headers.copy(), form))
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": "invalid_client"}, status=self.status)
        token = f"tok-{len(self.requests)}"
        self.valid.add(token)
        return web.json_response(self.answer(token))

    def bearer_ok(self, request: web.Request, _body: bytes) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[len("Bearer ") :] in self.valid


@asynccontextmanager
async def serve(app: web.Application, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=tls).start()
        port = sock.getsockname()[1]
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def department() -> AsyncIterator[tuple[Department, str]]:
    dept = Department()
    async with serve(dept.app()) as url:
        yield dept, url


@pytest.fixture
async def tokens() -> AsyncIterator[tuple[TokenEndpoint, str]]:
    endpoint = TokenEndpoint()
    async with serve(endpoint.app()) as url:
        yield endpoint, url + "/oauth2/token"


# ---- building the connector from a catalogue ----------------------------------------------


def registry(endpoint: str, auth_table: dict[str, str]) -> Catalogue:
    return parse_catalogue(
        {"registry.toml": REGISTRY.encode()},
        {"registry": {"endpoint": endpoint, "auth": auth_table}},
    )


@asynccontextmanager
async def connector(endpoint: str, auth_table: dict[str, str]) -> AsyncIterator[HttpJsonConnector]:
    built = build_connectors(registry(endpoint, auth_table))["registry"]
    assert isinstance(built, HttpJsonConnector)
    try:
        yield built
    finally:
        await built.close()


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    path = tmp_path / name
    path.write_text(f"  {value}\n")  # read stripped
    return str(path)


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


async def register(c: HttpJsonConnector) -> dict[str, Any]:
    fetched = await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    record: dict[str, Any] = fetched.record
    assert record == {"id_number": SUBJECT, "grade": 3}
    return record


async def licences(c: HttpJsonConnector) -> list[dict[str, Any]]:
    fetched = await c.fetch(RecordQuery(SUBJECT, "req-1", "licence"), soon())
    records: list[dict[str, Any]] = fetched.record
    assert records == [{"number": "L-002X"}]
    return records


CREDENTIAL_HEADERS = ("Authorization", "X-API-Key", "X-App-Key", "X-Signature")


# ---- none -----------------------------------------------------------------------------------


async def test_none_sends_no_credentials(department: tuple[Department, str]) -> None:
    dept, url = department
    async with connector(url, {"scheme": "none"}) as c:
        await register(c)
        await licences(c)
        assert await c.health()
    post, get = dept.seen
    for seen in (post, get):
        assert not any(h in seen.headers for h in CREDENTIAL_HEADERS)
        assert seen.headers["X-Request-Id"] == "req-1"
    assert post.path_qs == "/api/query"
    assert post.headers["Content-Type"].startswith("application/json")
    assert json.loads(post.body) == {"SFZHM": SUBJECT, "LSH": "req-1", "QD": [SUBJECT, 1]}
    assert get.path_qs == f"/api/licences/{SUBJECT}?rid=req-1&kind=all"
    assert get.body == b""


# ---- static headers: api_key, bearer, basic -------------------------------------------------


@pytest.mark.parametrize("header", [None, "X-Gateway-Key"])
async def test_api_key(
    department: tuple[Department, str], tmp_path: Path, header: str | None
) -> None:
    dept, url = department
    name = header or "X-API-Key"
    dept.accept = lambda request, _body: request.headers.get(name) == "k-123"
    table = {"scheme": "api_key", "key_file": secret_file(tmp_path, "api.key", "k-123")}
    if header:
        table["header"] = header
    async with connector(url, table) as c:
        await register(c)
        await licences(c)
    assert all(s.headers[name] == "k-123" for s in dept.seen)


async def test_bearer(department: tuple[Department, str], tmp_path: Path) -> None:
    dept, url = department
    dept.accept = lambda request, _body: request.headers.get("Authorization") == "Bearer t-abc"
    table = {"scheme": "bearer", "token_file": secret_file(tmp_path, "token", "t-abc")}
    async with connector(url, table) as c:
        await register(c)
        await licences(c)
    assert len(dept.seen) == 2


async def test_basic(department: tuple[Department, str], tmp_path: Path) -> None:
    dept, url = department
    password = "pa:ss wörd"  # RFC 7617: the password may hold a colon

    def accept(request: web.Request, _body: bytes) -> bool:
        given = aiohttp.BasicAuth.decode(request.headers["Authorization"], encoding="utf-8")
        return (given.login, given.password) == ("gw-client", password)

    dept.accept = accept
    table = {
        "scheme": "basic",
        "username": "gw-client",
        "password_file": secret_file(tmp_path, "password", password),
    }
    async with connector(url, table) as c:
        await register(c)
    assert dept.seen[0].headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("scheme", "key", "value"),
    [
        ("api_key", "key_file", "k-wrong"),
        ("bearer", "token_file", "t-wrong"),
        ("basic", "password_file", "p-wrong"),
    ],
)
async def test_refused_static_credentials_are_not_retried_and_not_told(
    department: tuple[Department, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    scheme: str,
    key: str,
    value: str,
) -> None:
    dept, url = department
    dept.accept = lambda _request, _body: False
    table = {"scheme": scheme, key: secret_file(tmp_path, "secret", value)}
    if scheme == "basic":
        table["username"] = "gw-client"
    caplog.set_level(logging.DEBUG)
    async with connector(url, table) as c:
        with pytest.raises(DepartmentRefused, match="refused the gateway's credentials") as raised:
            await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    assert raised.value.status == 401
    assert len(dept.seen) == 1  # a static credential cannot get better by asking again
    assert value not in str(raised.value)
    assert SUBJECT not in str(raised.value)
    assert not any(value in r.getMessage() for r in caplog.records)


# ---- hmac_appkey ----------------------------------------------------------------------------


async def test_hmac_appkey_signs_method_path_query_and_body(
    department: tuple[Department, str], tmp_path: Path
) -> None:
    dept, url = department
    secret = "5e" * 32
    verifier = SignatureVerifier({"gw": secret.encode()})  # the registry's own check
    reasons: list[str | None] = []

    def accept(request: web.Request, body: bytes) -> bool:
        reasons.append(verifier.check(request.method, request.path_qs, request.headers, body))
        return reasons[-1] is None

    dept.accept = accept
    table = {
        "scheme": "hmac_appkey",
        "app_key": "gw",
        "secret_file": secret_file(tmp_path, "app.secret", secret),
    }
    async with connector(url, table) as c:
        await register(c)
        await register(c)
        await licences(c)  # a GET: the query string is signed, the body is empty
    assert reasons == [None, None, None]
    assert len({s.headers["X-Nonce"] for s in dept.seen}) == 3
    assert all(s.headers["X-App-Key"] == "gw" for s in dept.seen)
    assert all(secret not in str(s.headers) for s in dept.seen)


async def test_hmac_appkey_wrong_secret_is_refused_once(
    department: tuple[Department, str], tmp_path: Path
) -> None:
    dept, url = department
    verifier = SignatureVerifier({"gw": b"the-right-secret"})
    dept.accept = lambda request, body: (
        verifier.check(request.method, request.path_qs, request.headers, body) is None
    )
    table = {
        "scheme": "hmac_appkey",
        "app_key": "gw",
        "secret_file": secret_file(tmp_path, "app.secret", "a-wrong-secret"),
    }
    async with connector(url, table) as c:
        with pytest.raises(DepartmentRefused) as raised:
            await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    assert len(dept.seen) == 1
    assert "a-wrong-secret" not in str(raised.value)


# ---- oauth2_client_credentials --------------------------------------------------------------


def oauth(tmp_path: Path, token_url: str, **extra: str) -> dict[str, str]:
    return {
        "scheme": "oauth2_client_credentials",
        "token_url": token_url,
        "client_id": "gw client",
        "client_secret_file": secret_file(tmp_path, "client.secret", "s3:cr+t/é"),
        **extra,
    }


async def test_oauth2_basic_client_authentication_and_a_cached_token(
    department: tuple[Department, str], tokens: tuple[TokenEndpoint, str], tmp_path: Path
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    dept.accept = endpoint.bearer_ok
    async with connector(url, oauth(tmp_path, token_url, scope="registry.read")) as c:
        for _ in range(3):
            await register(c)
        await licences(c)
    ((headers, form),) = endpoint.requests  # one token for every call
    assert form == {"grant_type": "client_credentials", "scope": "registry.read"}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    # RFC 6749 §2.3.1: id and secret form-urlencoded, then joined and base64-encoded.
    scheme, _, encoded = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    client_id, _, client_secret = base64.b64decode(encoded).decode("ascii").partition(":")
    assert urllib.parse.unquote_plus(client_id) == "gw client"
    assert urllib.parse.unquote_plus(client_secret) == "s3:cr+t/é"
    assert all(s.headers["Authorization"] == "Bearer tok-1" for s in dept.seen)


async def test_oauth2_post_client_authentication(
    department: tuple[Department, str], tokens: tuple[TokenEndpoint, str], tmp_path: Path
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    dept.accept = endpoint.bearer_ok
    async with connector(url, oauth(tmp_path, token_url, client_auth="post")) as c:
        await register(c)
    ((headers, form),) = endpoint.requests
    assert "Authorization" not in headers
    assert form == {
        "grant_type": "client_credentials",
        "client_id": "gw client",
        "client_secret": "s3:cr+t/é",
    }


async def test_oauth2_token_refreshed_before_it_expires(
    department: tuple[Department, str],
    tokens: tuple[TokenEndpoint, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    dept.accept = endpoint.bearer_ok
    # A token the department says lives exactly the safety margin: usable for the minimum
    # lifetime only (shortened here so the test does not wait five seconds).
    endpoint.answer = lambda token: {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": auth.TOKEN_MARGIN_S,
    }
    monkeypatch.setattr(auth, "MIN_TOKEN_LIFETIME_S", 0.3)
    async with connector(url, oauth(tmp_path, token_url)) as c:
        await register(c)
        await register(c)
        assert len(endpoint.requests) == 1
        await asyncio.sleep(0.4)
        await register(c)
    assert len(endpoint.requests) == 2
    assert [s.headers["Authorization"] for s in dept.seen] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


async def test_oauth2_refused_token_is_refreshed_once(
    department: tuple[Department, str], tokens: tuple[TokenEndpoint, str], tmp_path: Path
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    dept.accept = endpoint.bearer_ok
    async with connector(url, oauth(tmp_path, token_url)) as c:
        await register(c)
        endpoint.valid.clear()  # the department revoked tok-1 before it expired
        await register(c)
        assert len(endpoint.requests) == 2
        assert [s.headers["Authorization"] for s in dept.seen] == [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2",
        ]
        # A department refusing every token: one fresh token, one more try, then the error.
        dept.accept = lambda _request, _body: False
        with pytest.raises(DepartmentRefused):
            await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    assert len(dept.seen) == 5
    assert len(endpoint.requests) == 3


async def test_oauth2_one_token_request_for_many_waiting_calls(
    department: tuple[Department, str], tokens: tuple[TokenEndpoint, str], tmp_path: Path
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    dept.accept = endpoint.bearer_ok
    endpoint.delay_s = 0.1
    async with connector(url, oauth(tmp_path, token_url)) as c:
        await asyncio.gather(*(register(c) for _ in range(20)))
    assert len(endpoint.requests) == 1
    assert len(dept.seen) == 20


@pytest.mark.parametrize(
    "answer",
    [
        {"access_token": "abc", "token_type": "BEARER"},  # case-insensitive; default lifetime
        {"access_token": "abc", "expires_in": 120.5},  # token_type defaults to bearer
    ],
)
async def test_oauth2_lenient_where_the_rfc_is(
    department: tuple[Department, str],
    tokens: tuple[TokenEndpoint, str],
    tmp_path: Path,
    answer: dict[str, Any],
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    endpoint.answer = lambda _token: answer
    async with connector(url, oauth(tmp_path, token_url)) as c:
        await register(c)
        await register(c)
    assert len(endpoint.requests) == 1
    assert dept.seen[0].headers["Authorization"] == "Bearer abc"


@pytest.mark.parametrize(
    "answer",
    [
        {"token_type": "bearer", "expires_in": 3600},
        {"access_token": "", "token_type": "bearer"},
        {"access_token": 12, "token_type": "bearer"},
        {"access_token": "abc", "token_type": "mac"},
        {"access_token": "abc", "expires_in": "3600"},
        {"access_token": "abc", "expires_in": True},
        ["abc"],
        "abc",
    ],
)
async def test_oauth2_unusable_token_answers(
    department: tuple[Department, str],
    tokens: tuple[TokenEndpoint, str],
    tmp_path: Path,
    answer: Any,
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    endpoint.answer = lambda _token: answer
    async with connector(url, oauth(tmp_path, token_url)) as c:
        with pytest.raises(DepartmentMalformed, match="token answer is unusable") as raised:
            await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    assert "abc" not in str(raised.value)
    assert dept.seen == []  # no call without a token


@pytest.mark.parametrize("status", [400, 401, 503])
async def test_oauth2_token_endpoint_failures(
    department: tuple[Department, str],
    tokens: tuple[TokenEndpoint, str],
    tmp_path: Path,
    status: int,
) -> None:
    dept, url = department
    endpoint, token_url = tokens
    endpoint.status = status
    async with connector(url, oauth(tmp_path, token_url)) as c:
        with pytest.raises(DepartmentUnavailable) as raised:
            await c.fetch(RecordQuery(SUBJECT, "req-1", "registration"), soon())
    assert "s3:cr+t" not in str(raised.value)
    assert token_url not in str(raised.value)
    assert dept.seen == []


# ---- mtls -----------------------------------------------------------------------------------


@pytest.fixture
async def tls_department(pki: DevPki) -> AsyncIterator[tuple[Department, str]]:
    """A department on HTTPS that requires a client certificate from the dev CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_pem))
    context.load_cert_chain(str(pki.server_pem), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED
    dept = Department()
    async with serve(dept.app(), context) as url:
        yield dept, url


def mtls(pki: DevPki, *, ca: bool = True) -> dict[str, str]:
    table = {
        "scheme": "mtls",
        "cert_file": str(pki.client_pem(CALLER)),
        "key_file": str(pki.client_key(CALLER)),
    }
    if ca:
        table["ca_file"] = str(pki.ca_pem)
    return table


async def test_mtls_presents_the_gateway_certificate(
    tls_department: tuple[Department, str], pki: DevPki
) -> None:
    dept, url = tls_department
    async with connector(url, mtls(pki)) as c:
        await register(c)
        await licences(c)
        assert await c.health()
    peer = dept.seen[0].peer
    assert peer is not None
    names = {value for rdn in peer["subject"] for key, value in rdn if key == "commonName"}
    assert names == {CALLER}
    assert not any(h in dept.seen[0].headers for h in CREDENTIAL_HEADERS)


async def test_tls_without_the_gateway_certificate_or_the_ca_fails(
    tls_department: tuple[Department, str], pki: DevPki
) -> None:
    _, url = tls_department
    # No client certificate (and the dev CA unknown to the system store): no connection.
    async with connector(url, {"scheme": "none"}) as c:
        with pytest.raises(DepartmentUnavailable, match="connection failed"):
            await register(c)
        assert not await c.health()
    # The client certificate, but the department's CA not given: its server is not trusted.
    async with connector(url, mtls(pki, ca=False)) as c:
        with pytest.raises(DepartmentUnavailable, match="connection failed"):
            await register(c)


def test_client_tls_only_for_mtls_and_unreadable_material_is_a_config_error(
    pki: DevPki, tmp_path: Path
) -> None:
    assert auth.client_tls(AuthSpec("none", {}), "registry") is None
    assert auth.client_tls(AuthSpec("bearer", {"token_file": "x"}), "registry") is None
    context = auth.client_tls(AuthSpec("mtls", mtls(pki)), "registry")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    bad = {**mtls(pki), "key_file": str(tmp_path / "absent.key")}
    with pytest.raises(ConfigError, match="registry: cannot load the mutual-TLS material"):
        auth.client_tls(AuthSpec("mtls", bad), "registry")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="mutual-TLS"):
        auth.client_tls(AuthSpec("mtls", {**mtls(pki), "cert_file": str(garbage)}), "registry")
    with pytest.raises(ConfigError, match="mutual-TLS"):
        build_connectors(registry("https://127.0.0.1:1", {**mtls(pki), "ca_file": str(garbage)}))


# ---- secret files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "what"),
    [
        ({"scheme": "hmac_appkey", "app_key": "gw"}, "secret_file", "app secret"),
        ({"scheme": "api_key"}, "key_file", "API key"),
        ({"scheme": "bearer"}, "token_file", "token"),
        ({"scheme": "basic", "username": "gw"}, "password_file", "password"),
        (
            {
                "scheme": "oauth2_client_credentials",
                "token_url": "http://127.0.0.1:1/t",
                "client_id": "gw",
            },
            "client_secret_file",
            "client secret",
        ),
    ],
)
def test_secret_files_are_read_when_the_connector_is_built(
    tmp_path: Path, table: dict[str, str], key: str, what: str
) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(ConfigError, match=f"registry: cannot read the {what} file") as raised:
        build_connectors(registry("http://127.0.0.1:1", {**table, key: str(absent)}))
    assert str(absent) in str(raised.value)
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ConfigError, match=rf"the {what} file .* is empty"):
        build_connectors(registry("http://127.0.0.1:1", {**table, key: str(empty)}))


def test_read_secret_strips_and_never_quotes_the_content(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("\n  value-1 \n\n")
    assert auth.read_secret(str(path), "registry", "token") == "value-1"
    path.write_bytes(b"\xff\xfe-not-utf8")
    with pytest.raises(
        ConfigError, match=r"registry: the token file .* is not UTF-8 text"
    ) as raised:
        auth.read_secret(str(path), "registry", "token")
    assert "not-utf8" not in str(raised.value)
    assert raised.value.__cause__ is None


def test_an_hmac_secret_must_be_ascii(tmp_path: Path) -> None:
    table = {
        "scheme": "hmac_appkey",
        "app_key": "gw",
        "secret_file": secret_file(tmp_path, "app.secret", "sécret"),
    }
    with pytest.raises(
        ConfigError, match=r"registry: the app secret file .* is not ASCII"
    ) as raised:
        build_connectors(registry("http://127.0.0.1:1", table))
    assert "é" not in str(raised.value)


# ---- templates --------------------------------------------------------------------------------


def test_templates_fill_strings_at_any_depth_and_leave_the_rest() -> None:
    values = {"{subject}": SUBJECT, "{request_id}": "r-1"}
    template = {"a": "{subject}", "b": ["x{request_id}y", 3, None, True], "c": {"d": "{subject}"}}
    assert auth.fill(template, values) == {
        "a": SUBJECT,
        "b": ["xr-1y", 3, None, True],
        "c": {"d": SUBJECT},
    }
    body = auth.json_body({"XM": "某", "SFZHM": "{subject}"}, values)
    assert body == json.dumps({"XM": "某", "SFZHM": SUBJECT}, ensure_ascii=False).encode()
    assert "某".encode() in body  # UTF-8, not \\u escapes: what the department signs and reads
