"""Consent tokens (授权): every refusal reason, the replay cache, and `proofless consent issue`."""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.cli.certs import add_commands
from gateway.config import parse_config
from gateway.crypto import consent, jws
from gateway.crypto import keys as key_files
from gateway.crypto.citizen import citizen_binding
from gateway.devtools import pki
from gateway.domain.errors import ConfigError, PermissionDenied, ResourceExhausted, Unavailable

ROOT = Path(__file__).resolve().parents[2]
ID = "35050519900101123X"
NOW = 1_800_000_000.0
ISS = "proofless-dev-consent"
SALT = bytes(range(16))


@pytest.fixture
def issuer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def keys(issuer: Ed25519PrivateKey) -> key_files.IssuerKeys:
    return trusting(issuer)


def trusting(*issuers: Ed25519PrivateKey, iss: str = ISS) -> key_files.IssuerKeys:
    return key_files.IssuerKeys.trusting(
        {jws.kid_of(k.public_key()): k.public_key() for k in issuers}, [iss]
    )


def _issue(key: Ed25519PrivateKey, /, **overrides: Any) -> str:
    args: dict[str, Any] = {
        "applicant_id_number": ID,
        "caller": "fuzhou-civil-affairs",
        "item": "subsistence-allowance",
        "case_id": "FZ-2026-000123",
        "now": NOW,
    }
    args.update(overrides)
    return consent.issue_consent(key, **args)


def _verify(
    token: str | None, keys: Any, cache: consent.ReplayCache | None = None, **overrides: Any
) -> consent.ConsentToken:
    args: dict[str, Any] = {
        "issuer_keys": keys,
        "applicant_id_number": ID,
        "caller": "fuzhou-civil-affairs",
        "item": "subsistence-allowance",
        "case_id": "FZ-2026-000123",
        "now": NOW + 5,
        "replay_cache": cache if cache is not None else consent.ReplayCache(),
    }
    args.update(overrides)
    return consent.verify_consent(token, **args)


def _reason(token: str | None, keys: Any, **overrides: Any) -> str:
    with pytest.raises(PermissionDenied) as caught:
        _verify(token, keys, **overrides)
    assert ID not in caught.value.message
    return caught.value.reason


def _forge(issuer: Ed25519PrivateKey, payload: Any, typ: str = consent.TOKEN_TYPE) -> str:
    header = {"kid": jws.kid_of(issuer.public_key()), "typ": typ}
    return jws.sign(json.dumps(payload).encode(), issuer, header)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISS,
        "applicant": citizen_binding(SALT, ID),
        "salt": jws.b64url_encode(SALT),
        "caller": "fuzhou-civil-affairs",
        "item": "subsistence-allowance",
        "case_id": "FZ-2026-000123",
        "iat": int(NOW),
        "exp": int(NOW) + 600,
        "jti": "abcdefgh-1234",
    }
    claims.update(overrides)
    return claims


def test_valid_token(issuer: Ed25519PrivateKey, keys: Any) -> None:
    token = _issue(issuer, jti="case-123-consent")
    accepted = _verify(token, keys)
    assert accepted.caller == "fuzhou-civil-affairs"
    assert accepted.item == "subsistence-allowance"
    assert accepted.case_id == "FZ-2026-000123"
    assert accepted.expires_at - accepted.issued_at == consent.DEFAULT_TTL
    assert accepted.jti == "case-123-consent"
    assert accepted.kid == jws.kid_of(issuer.public_key())
    assert accepted.applicant == citizen_binding(accepted.salt, ID)
    assert ID not in token  # the token carries a salted binding, not the ID number


def test_the_applicant_binding_is_salted_per_token(issuer: Ed25519PrivateKey, keys: Any) -> None:
    first, second = (_verify(_issue(issuer, jti=f"same-person-{n}"), keys) for n in range(2))
    assert len(first.salt) == 16
    assert first.salt != second.salt
    assert first.applicant != second.applicant  # two tokens about one person: not linkable
    # neither is the unsalted SHA-256 a dictionary of ID numbers would reverse
    assert hashlib.sha256(ID.encode()).hexdigest() not in (first.applicant, second.applicant)
    # the check character's case does not matter
    assert _verify(_issue(issuer), keys, applicant_id_number=ID.lower())


def test_verifies_with_a_jwks_whose_keys_name_their_issuer(issuer: Ed25519PrivateKey) -> None:
    jwks = jws.jwks_of(issuer.public_key())
    jwks["keys"][0]["iss"] = ISS
    assert _verify(_issue(issuer), jwks).caller == "fuzhou-civil-affairs"


def test_a_bare_kid_map_or_jwks_names_no_issuer_and_trusts_none(issuer: Ed25519PrivateKey) -> None:
    kid_map = {jws.kid_of(issuer.public_key()): issuer.public_key()}
    for keys in (kid_map, jws.jwks_of(issuer.public_key())):
        assert _reason(_issue(issuer), keys) == "CONSENT_UNTRUSTED_ISSUER"


def test_the_issuer_must_be_one_the_key_is_trusted_for(issuer: Ed25519PrivateKey) -> None:
    keys = trusting(issuer)
    assert _reason(_issue(issuer, issuer="someone-else"), keys) == "CONSENT_UNTRUSTED_ISSUER"
    # two issuers in one set: each key speaks for its own issuer only
    other = Ed25519PrivateKey.generate()
    jwks = jws.jwks_of([issuer.public_key(), other.public_key()])
    jwks["keys"][0]["iss"] = ISS
    jwks["keys"][1]["iss"] = "town-app"
    both = key_files.IssuerKeys.from_jwks(jwks, [ISS, "town-app"])
    assert _verify(_issue(other, issuer="town-app"), both).issuer == "town-app"
    assert _reason(_issue(other, issuer=ISS), both) == "CONSENT_UNTRUSTED_ISSUER"
    # a key whose issuer the configuration does not trust signs nothing
    only_dev = key_files.IssuerKeys.from_jwks(jwks, [ISS])
    assert _reason(_issue(other, issuer="town-app"), only_dev) == "CONSENT_UNTRUSTED_ISSUER"
    assert _verify(_issue(issuer), only_dev).issuer == ISS


@pytest.mark.parametrize("token", [None, ""])
def test_missing(keys: Any, token: str | None) -> None:
    assert _reason(token, keys) == "CONSENT_MISSING"


def test_invalid_signature_or_issuer(issuer: Ed25519PrivateKey, keys: Any) -> None:
    rogue = Ed25519PrivateKey.generate()
    assert _reason(_issue(rogue), keys) == "CONSENT_INVALID"
    h, p, s = _issue(issuer).split(".")
    assert _reason(f"{h}.{p}x.{s}", keys) == "CONSENT_INVALID"
    assert _reason("not-a-token", keys) == "CONSENT_INVALID"


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2],
        _claims(caller=None),
        _claims(iss=None),
        _claims(salt=None),
        _claims(salt="AAAA"),  # 3 bytes
        _claims(salt="not base64url!"),
        {
            k: v
            for k, v in _claims(applicant=hashlib.sha256(ID.encode()).hexdigest()).items()
            if k != "salt"
        },
        _claims(iss=7),
        _claims(jti=5),
        _claims(exp="tomorrow"),
        _claims(iat=True),
        _claims(jti="short"),
        _claims(jti="has spaces in it"),
        _claims(exp=int(NOW) - 1),  # expires before it is issued
        _claims(exp=int(NOW) + consent.MAX_LIFETIME + 1),
        _claims(iat=int(NOW) + 3600, exp=int(NOW) + 4000),  # issued in the future
    ],
)
def test_invalid_payloads(issuer: Ed25519PrivateKey, keys: Any, payload: Any) -> None:
    assert _reason(_forge(issuer, payload), keys) == "CONSENT_INVALID"


def test_wrong_typ_is_invalid(issuer: Ed25519PrivateKey, keys: Any) -> None:
    # a proof or any other JWS signed by the same key is not a consent token
    assert _reason(_forge(issuer, _claims(), typ="JWT"), keys) == "CONSENT_INVALID"


def test_non_json_payload(issuer: Ed25519PrivateKey, keys: Any) -> None:
    header = {"kid": jws.kid_of(issuer.public_key()), "typ": consent.TOKEN_TYPE}
    assert _reason(jws.sign(b"\xff", issuer, header), keys) == "CONSENT_INVALID"


def test_expired(issuer: Ed25519PrivateKey, keys: Any) -> None:
    token = _issue(issuer, ttl=60)
    assert _verify(token, keys, now=NOW + 60 + consent.LEEWAY - 1)
    assert _reason(token, keys, now=NOW + 60 + consent.LEEWAY) == "CONSENT_EXPIRED"


@pytest.mark.parametrize(
    ("binding", "value", "reason"),
    [
        ("caller", "quangang-window", "CONSENT_WRONG_CALLER"),
        ("item", "housing-transfer", "CONSENT_WRONG_ITEM"),
        ("applicant_id_number", "350505199001011258", "CONSENT_WRONG_APPLICANT"),
        ("case_id", "FZ-2026-000124", "CONSENT_WRONG_CASE"),
    ],
)
def test_wrong_binding(
    issuer: Ed25519PrivateKey, keys: Any, binding: str, value: str, reason: str
) -> None:
    token = _issue(issuer)
    with pytest.raises(PermissionDenied) as caught:
        _verify(token, keys, **{binding: value})
    assert caught.value.reason == reason
    assert value not in caught.value.message


def test_non_ascii_applicant_claim_is_a_refusal(issuer: Ed25519PrivateKey, keys: Any) -> None:
    token = _forge(issuer, _claims(applicant="申请人"))
    assert _reason(token, keys) == "CONSENT_WRONG_APPLICANT"


def test_replayed(issuer: Ed25519PrivateKey, keys: Any) -> None:
    cache = consent.ReplayCache()
    token = _issue(issuer)
    _verify(token, keys, cache)
    with pytest.raises(PermissionDenied) as caught:
        _verify(token, keys, cache)
    assert caught.value.reason == "CONSENT_REPLAYED"
    assert len(cache) == 1


def test_refused_token_is_not_burnt(issuer: Ed25519PrivateKey, keys: Any) -> None:
    cache = consent.ReplayCache()
    token = _issue(issuer)
    with pytest.raises(PermissionDenied):
        _verify(token, keys, cache, case_id="other-case")
    assert _verify(token, keys, cache).case_id == "FZ-2026-000123"


def test_replay_cache_forgets_expired_entries() -> None:
    cache = consent.ReplayCache()
    assert not cache.seen("jti-000001", 100.0, now=0.0)
    assert cache.seen("jti-000001", 100.0, now=50.0)
    assert not cache.seen("jti-000001", 300.0, now=150.0)  # expired, then a new use
    assert len(cache) == 1


def test_replay_cache_is_bounded_and_fails_closed() -> None:
    cache = consent.ReplayCache(max_entries=3)
    for i in range(3):
        assert not cache.seen(f"jti-{i:06}", 100.0 + i, now=0.0)
    with pytest.raises(ResourceExhausted) as caught:
        cache.seen("jti-999999", 500.0, now=10.0)
    assert caught.value.reason == "CONSENT_CACHE_FULL"
    assert caught.value.retry_after == pytest.approx(90.0)
    # the earlier entries are still remembered: nothing was evicted to make room
    assert cache.seen("jti-000000", 100.0, now=10.0)
    # once one expires there is room again
    assert not cache.seen("jti-999999", 500.0, now=100.5)


@settings(max_examples=100, deadline=None)
@given(
    case_id=st.text(max_size=64),
    caller=st.text(max_size=40),
    other=st.text(max_size=64),
)
def test_bindings_hold_for_any_strings(case_id: str, caller: str, other: str) -> None:
    issuer = Ed25519PrivateKey.generate()
    keys = trusting(issuer)
    token = _issue(issuer, case_id=case_id, caller=caller)
    if other != case_id:
        assert _reason(token, keys, caller=caller, case_id=other) == "CONSENT_WRONG_CASE"
    assert _verify(token, keys, caller=caller, case_id=case_id).case_id == case_id


# ---- CLI --------------------------------------------------------------------------------


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="proofless")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_consent_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dev = pki.init_dev_pki(tmp_path)
    code = _run(
        "consent",
        "issue",
        "--key",
        str(dev.consent_issuer_key),
        "--id-number",
        ID,
        "--caller",
        "fuzhou-civil-affairs",
        "--item",
        "subsistence-allowance",
        "--case",
        "FZ-2026-000123",
        "--ttl",
        "120",
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    accepted = consent.verify_consent(
        token,
        issuer_keys=key_files.load_issuer_keys(dev.consent_issuer_jwks, [ISS]),
        applicant_id_number=ID,
        caller="fuzhou-civil-affairs",
        item="subsistence-allowance",
        case_id="FZ-2026-000123",
        now=accepted_now(token),
        replay_cache=consent.ReplayCache(),
    )
    assert accepted.expires_at - accepted.issued_at == 120
    assert (
        _run(
            "consent",
            "issue",
            "--key",
            str(tmp_path / "none.key"),
            "--id-number",
            ID,
            "--caller",
            "c",
            "--item",
            "i",
            "--case",
            "k",
        )
        == 1
    )
    assert "cannot read" in capsys.readouterr().err


def accepted_now(token: str) -> float:
    payload = json.loads(jws.b64url_decode(token.split(".")[1]))
    return float(payload["iat"])


# ---- the replay store: this process, or Redis for every replica ---------------------------


async def test_accept_consent_records_the_token_once_in_the_store(
    issuer: Ed25519PrivateKey,
) -> None:
    store = consent.ReplayCache()
    args: dict[str, Any] = {
        "issuer_keys": trusting(issuer),
        "applicant_id_number": ID,
        "caller": "fuzhou-civil-affairs",
        "item": "subsistence-allowance",
        "case_id": "FZ-2026-000123",
        "now": NOW + 5,
        "replays": store,
    }
    token = _issue(issuer)
    with pytest.raises(PermissionDenied):
        await consent.accept_consent(token, **{**args, "case_id": "other"})
    assert len(store) == 0  # a refused token is not burnt
    await consent.accept_consent(token, **args)
    with pytest.raises(PermissionDenied) as caught:
        await consent.accept_consent(token, **args)
    assert caught.value.reason == "CONSENT_REPLAYED"


def test_the_replay_key_names_issuer_and_jti_and_nothing_personal(
    issuer: Ed25519PrivateKey,
) -> None:
    a = _verify(_issue(issuer, jti="same-jti-0001"), trusting(issuer))
    b = _verify(
        _issue(issuer, jti="same-jti-0001", issuer="town-app"), trusting(issuer, iss="town-app")
    )
    assert consent.replay_key(a) != consent.replay_key(b)
    assert ID not in consent.replay_key(a)
    assert len(consent.replay_key(a)) == 64


async def test_redis_replay_cache_records_once_and_expires(redis_url: str) -> None:
    prefix = f"proofless-test:{uuid.uuid4().hex}:"
    store = consent.RedisReplayCache(redis_url, prefix=prefix)
    redis = Redis.from_url(redis_url)
    try:
        assert not await store.used("k1", expires_at=NOW + 60, now=NOW)
        assert await store.used("k1", expires_at=NOW + 60, now=NOW + 1)
        assert not await store.used("k2", expires_at=NOW + 0.001, now=NOW)
        ttl = await redis.pttl(prefix + "k1")
        assert 0 < ttl <= 60_000
    finally:
        await redis.delete(prefix + "k1", prefix + "k2")
        await redis.aclose()
        await store.close()


async def test_redis_replay_cache_fails_closed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    store = consent.RedisReplayCache(url)
    try:
        for _ in range(2):
            with pytest.raises(Unavailable) as caught:
                await store.used("k1", expires_at=NOW + 60, now=NOW)
            assert caught.value.reason == "CONSENT_UNAVAILABLE"
        assert store.failures == 2
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("backend", "url", "message"),
    [
        ("memcached", "", "replay_backend"),
        ("redis", "", "redis_url"),
        ("redis", "http://x", "redis_url"),
    ],
)
def test_build_replay_store_refuses_bad_settings(backend: str, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        consent.build_replay_store(backend, redis_url=url)
    assert isinstance(consent.build_replay_store("local"), consent.ReplayCache)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"replay_backend": "memcached"}, "replay_backend"),
        ({"replay_backend": "redis"}, "redis_url"),
        ({"replay_timeout_ms": 0}, "replay_timeout_ms"),
        ({"issuers": [""]}, "issuers"),
        ({"issuers": "one"}, None),
    ],
)
def test_the_consent_table_is_checked_at_load(table: dict[str, Any], message: str | None) -> None:
    raw = tomllib.loads((ROOT / "deploy" / "config" / "gateway.toml").read_text())
    raw["consent"] = {**raw["consent"], **table}
    if message is None:
        assert parse_config(raw).consent.issuers == ("one",)
        return
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)
