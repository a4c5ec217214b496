"""How the gateway proves who it is to a department: the schemes a catalogue file may name.

    none                       nothing (a department on a closed network)
    hmac_appkey                AppKey + HMAC-SHA256 request signing (adapters.signing)
    api_key                    a key from a file in a header (default X-API-Key)
    bearer                     a static token from a file: `Authorization: Bearer …`
    basic                      HTTP Basic (RFC 7617), the password from a file
    oauth2_client_credentials  RFC 6749 §4.4: a token from the department's token endpoint,
                               cached until shortly before it expires and refreshed once
                               when the department refuses it
    mtls                       mutual TLS: the gateway's client certificate (RFC 8446)

Secrets are files named in the catalogue (`*_file`), read when the connector is built; their
contents never appear in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from adapters import signing
from adapters.httpclient import JsonDepartmentClient
from gateway.catalogue.schema import AuthSpec
from gateway.domain.errors import ConfigError, DepartmentMalformed

#: a token is refreshed this long before the department says it expires
TOKEN_MARGIN_S = 30.0
MIN_TOKEN_LIFETIME_S = 5.0


def read_secret(path: str, department: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"department {department}: cannot read the {what} file {path} ({exc.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"department {department}: the {what} file {path} is not UTF-8 text"
        ) from None
    if not value:
        raise ConfigError(f"department {department}: the {what} file {path} is empty")
    return value


class Authenticator(Protocol):
    """Adds the credentials to one request."""

    async def headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]: ...

    def refused(self) -> bool:
        """The department refused the credentials: forget what may be stale. True when one
        more attempt with fresh credentials may succeed."""
        ...


class NoAuth:
    async def headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]:
        return {}

    def refused(self) -> bool:
        return False


class StaticHeaders(NoAuth):
    """api_key, bearer and basic: the same headers on every request."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    async def headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]:
        return dict(self._headers)


class HmacAppKey(NoAuth):
    def __init__(self, app_key: str, secret: bytes) -> None:
        self._app_key = app_key
        self._secret = secret

    async def headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]:
        return signing.signed_headers(self._app_key, self._secret, method, path_qs, body)


class OAuth2ClientCredentials(NoAuth):
    """RFC 6749 §4.4 with client authentication by HTTP Basic (§2.3.1, the default) or by
    form fields (`client_auth = "post"`). One refresh at a time, however many calls wait."""

    def __init__(
        self,
        http: JsonDepartmentClient,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        client_auth: str = "basic",
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._client_auth = client_auth
        self._token = ""
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def headers(self, method: str, path_qs: str, body: bytes) -> dict[str, str]:
        if not self._token or time.monotonic() >= self._expires:
            async with self._lock:
                if not self._token or time.monotonic() >= self._expires:
                    await self._fetch_token()
        return {"Authorization": f"Bearer {self._token}"}

    def refused(self) -> bool:
        had = bool(self._token)
        self._token = ""
        return had

    async def _fetch_token(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        if self._client_auth == "post":
            form.update(client_id=self._client_id, client_secret=self._client_secret)
        else:
            # §2.3.1: client id and secret are form-urlencoded before they are joined.
            pair = ":".join(
                urllib.parse.quote_plus(v) for v in (self._client_id, self._client_secret)
            )
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        answer = await self._http.request(
            "POST",
            "",
            url=self._token_url,
            body=urllib.parse.urlencode(form).encode(),
            headers=headers,
            content_type="application/x-www-form-urlencoded",
        )
        token = answer.get("access_token") if isinstance(answer, dict) else None
        lifetime = answer.get("expires_in", 3600) if isinstance(answer, dict) else None
        kind = str(answer.get("token_type", "bearer")) if isinstance(answer, dict) else ""
        if (
            not isinstance(token, str)
            or not token
            or kind.lower() != "bearer"
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, int | float)
        ):
            raise DepartmentMalformed(f"{self._http.department}: the token answer is unusable")
        self._token = token
        self._expires = time.monotonic() + max(MIN_TOKEN_LIFETIME_S, lifetime - TOKEN_MARGIN_S)


def client_tls(spec: AuthSpec, department: str) -> ssl.SSLContext | None:
    """The TLS context for `mtls` (the gateway's certificate, and the department's CA when
    given); None for every other scheme (the system's default verification applies)."""
    if spec.scheme != "mtls":
        return None
    s = spec.settings
    try:
        context = ssl.create_default_context(cafile=s.get("ca_file") or None)
        context.load_cert_chain(s["cert_file"], s["key_file"])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"department {department}: cannot load the mutual-TLS material ({type(exc).__name__})"
        ) from None
    return context


def authenticator(spec: AuthSpec, department: str, http: JsonDepartmentClient) -> Authenticator:
    s = spec.settings
    if spec.scheme == "hmac_appkey":
        secret = read_secret(s["secret_file"], department, "app secret")
        if not secret.isascii():  # the registry reads its key as ASCII (adapters.signing)
            raise ConfigError(
                f"department {department}: the app secret file {s['secret_file']} is not ASCII"
            )
        return HmacAppKey(s["app_key"], secret.encode("ascii", "strict"))
    if spec.scheme == "api_key":
        key = read_secret(s["key_file"], department, "API key")
        return StaticHeaders({s.get("header", "X-API-Key"): key})
    if spec.scheme == "bearer":
        return StaticHeaders(
            {"Authorization": "Bearer " + read_secret(s["token_file"], department, "token")}
        )
    if spec.scheme == "basic":
        password = read_secret(s["password_file"], department, "password")
        pair = f"{s['username']}:{password}".encode()
        return StaticHeaders({"Authorization": "Basic " + base64.b64encode(pair).decode()})
    if spec.scheme == "oauth2_client_credentials":
        return OAuth2ClientCredentials(
            http,
            token_url=s["token_url"],
            client_id=s["client_id"],
            client_secret=read_secret(s["client_secret_file"], department, "client secret"),
            scope=s.get("scope", ""),
            client_auth=s.get("client_auth", "basic"),
        )
    return NoAuth()  # none, mtls (the TLS layer authenticates)


def json_body(template: Mapping[str, object], values: Mapping[str, str]) -> bytes:
    """The request body: the template with `{subject}`-style placeholders filled."""
    return json.dumps(fill(template, values), ensure_ascii=False).encode()


def fill(template: object, values: Mapping[str, str]) -> object:
    if isinstance(template, str):
        out = template
        for key, value in values.items():
            out = out.replace(key, value)
        return out
    if isinstance(template, Mapping):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template
