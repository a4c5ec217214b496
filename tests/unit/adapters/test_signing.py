"""AppKey + HMAC-SHA256 signing, the registry's verifier, and its 401 answers over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from adapters import signing
from adapters.simulators import datagen
from adapters.simulators.household import (
    QUERY_PATH,
    HouseholdSimulator,
    NonceCacheFull,
    SignatureVerifier,
)

SECRET = b"0123456789abcdef0123456789abcdef"
KEY = "proofless-gateway"
POP = datagen.generate(20261121, 300)
HEAD = POP.scenarios["household_head"]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_signature_is_hmac_sha256_over_the_five_lines() -> None:
    body = b'{"SFZHM": "x"}'
    expected = hmac.new(
        SECRET,
        b"POST\n/api/v1/rkxx/query?a=1\n1800000000\nabcdef0123456789\n"
        + hashlib.sha256(body).hexdigest().encode(),
        hashlib.sha256,
    ).hexdigest()
    headers = signing.signed_headers(
        KEY,
        SECRET,
        "post",
        "/api/v1/rkxx/query?a=1",
        body,
        now=1_800_000_000,
        nonce="abcdef0123456789",
    )
    assert headers == {
        "X-App-Key": KEY,
        "X-Timestamp": "1800000000",
        "X-Nonce": "abcdef0123456789",
        "X-Signature": expected,
    }


def test_every_signed_part_matters() -> None:
    parts = {
        "method": "POST",
        "path_qs": "/p?q=1",
        "timestamp": "1800000000",
        "nonce": "n" * 16,
        "body": b"{}",
    }
    good = signing.signature(SECRET, **parts)  # type: ignore[arg-type]
    assert signing.verify(SECRET, presented=good, **parts)  # type: ignore[arg-type]
    assert signing.verify(SECRET, presented=good.upper(), **parts)  # type: ignore[arg-type]
    changes = {"method": "GET", "path_qs": "/p?q=2", "timestamp": "1800000001", "nonce": "m" * 16}
    for key, value in {**changes, "body": b"{ }"}.items():
        assert not signing.verify(SECRET, presented=good, **{**parts, key: value})  # type: ignore[arg-type]
    assert not signing.verify(b"other", presented=good, **parts)  # type: ignore[arg-type]


def test_read_secret_strips(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "household-app.secret"  # type: ignore[operator]
    path.write_text("  " + SECRET.decode() + "\n")
    assert signing.read_secret(path) == SECRET


def _headers(clock: Clock, body: bytes, **override: str) -> dict[str, str]:
    headers = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, body, now=clock.now)
    headers.update(override)
    return headers


def test_verifier_accepts_then_refuses_replay() -> None:
    clock = Clock()
    verifier = SignatureVerifier({KEY: SECRET}, clock=clock)
    headers = _headers(clock, b"{}")
    assert verifier.check("POST", QUERY_PATH, headers, b"{}") is None
    assert verifier.check("POST", QUERY_PATH, headers, b"{}") == "replayed nonce"


@pytest.mark.parametrize("skew", [-301, 301])
def test_verifier_refuses_stale_and_future_timestamps(skew: int) -> None:
    clock = Clock()
    verifier = SignatureVerifier({KEY: SECRET}, clock=clock)
    headers = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, b"", now=clock.now + skew)
    assert verifier.check("POST", QUERY_PATH, headers, b"") == "stale timestamp"
    edge = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, b"", now=clock.now + 300)
    assert verifier.check("POST", QUERY_PATH, edge, b"") is None


def test_verifier_refusals() -> None:
    clock = Clock()
    verifier = SignatureVerifier({KEY: SECRET}, clock=clock)
    assert verifier.check("POST", QUERY_PATH, {}, b"") == "missing signature headers"
    unknown = _headers(clock, b"", **{"X-App-Key": "someone-else"})
    assert verifier.check("POST", QUERY_PATH, unknown, b"") == "unknown app key"
    assert verifier.check("POST", QUERY_PATH, _headers(clock, b"a"), b"b") == "bad signature"
    bad_ts = _headers(clock, b"", **{"X-Timestamp": "soon"})
    assert verifier.check("POST", QUERY_PATH, bad_ts, b"") == "bad timestamp"
    short = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, b"", now=clock.now, nonce="n")
    assert verifier.check("POST", QUERY_PATH, short, b"") == "bad nonce"
    assert len(verifier) == 0  # refused requests leave nothing in the cache


def test_nonce_cache_is_bounded_and_expires() -> None:
    clock = Clock()
    verifier = SignatureVerifier({KEY: SECRET}, clock=clock, capacity=3, skew_s=300)
    for _ in range(3):
        assert verifier.check("POST", "/", _headers_for(clock), b"") is None
    with pytest.raises(NonceCacheFull):
        verifier.check("POST", "/", _headers_for(clock), b"")
    clock.now += 601  # past 2 × skew: the old nonces cannot be replayed any more
    assert verifier.check("POST", "/", _headers_for(clock), b"") is None
    assert len(verifier) == 1


def _headers_for(clock: Clock) -> dict[str, str]:
    return signing.signed_headers(KEY, SECRET, "POST", "/", b"", now=clock.now)


# ---- over HTTP: the registry answers 401 -------------------------------------------------


@pytest.fixture
async def registry_url() -> AsyncIterator[str]:
    sim = HouseholdSimulator(POP, apps={KEY: SECRET})
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + QUERY_PATH, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_signed_request_is_answered(registry_url: str) -> None:
    body = json.dumps({"SFZHM": HEAD}).encode()
    status, envelope = await _post(
        registry_url, body, signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, body)
    )
    assert status == 200
    assert envelope["code"] == "0000"


async def test_unsigned_bad_stale_and_replayed_get_401(registry_url: str) -> None:
    body = json.dumps({"SFZHM": HEAD}).encode()
    status, envelope = await _post(registry_url, body, {})
    assert (status, envelope["code"]) == (401, "1001")

    wrong = signing.signed_headers(KEY, b"not the secret", "POST", QUERY_PATH, body)
    assert (await _post(registry_url, body, wrong))[0] == 401

    stale = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, body, now=time.time() - 301)
    assert (await _post(registry_url, body, stale))[0] == 401

    # Signed for one citizen, sent for another: the body hash no longer matches.
    other = json.dumps({"SFZHM": POP.scenarios["no_property"]}).encode()
    assert (
        await _post(
            registry_url, other, signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, body)
        )
    )[0] == 401

    once = signing.signed_headers(KEY, SECRET, "POST", QUERY_PATH, body)
    assert (await _post(registry_url, body, once))[0] == 200
    assert (await _post(registry_url, body, once))[0] == 401


async def test_admin_endpoint_bypasses_signing(registry_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(registry_url + "/_admin/faults", json={"latency_ms": 5}) as resp:
            assert resp.status == 200
            assert (await resp.json())["latency_ms"] == 5
        async with session.post(registry_url + "/_admin/faults", json={"bogus": 1}) as resp:
            assert resp.status == 400
        async with session.delete(registry_url + "/_admin/faults") as resp:
            assert (await resp.json())["latency_ms"] == 0
