"""Compact JWS with EdDSA: RFC 8037 appendix A vectors, tampering, an independent JOSE library,
and property tests."""

from __future__ import annotations

import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jws as jrfc_jws
from joserfc.jwk import OKPKey

from gateway.crypto import jws
from gateway.domain.errors import ConfigError, IntegrityError

# RFC 8037 appendix A.1 (private key), A.2 (public key), A.3 (thumbprint), A.4 (signature).
RFC_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
RFC_PAYLOAD = b"Example of Ed25519 signing"
RFC_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


@pytest.fixture
def rfc_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(jws.b64url_decode(RFC_D))


def _b64json(value: object) -> str:
    return jws.b64url_encode(json.dumps(value, separators=(",", ":")).encode())


# ---- RFC 8037 appendix A ----------------------------------------------------------------


def test_rfc8037_a2_public_key(rfc_key: Ed25519PrivateKey) -> None:
    assert jws.jwk_of(rfc_key.public_key())["x"] == RFC_X


def test_rfc8037_a3_thumbprint(rfc_key: Ed25519PrivateKey) -> None:
    assert jws.kid_of(rfc_key.public_key()) == RFC_THUMBPRINT


def test_rfc8037_a4_signature_is_exact(rfc_key: Ed25519PrivateKey) -> None:
    assert jws.sign(RFC_PAYLOAD, rfc_key, {"alg": "EdDSA"}) == RFC_JWS


def test_rfc8037_a5_verification(rfc_key: Ed25519PrivateKey) -> None:
    header, payload = jws.verify(RFC_JWS, {RFC_THUMBPRINT: rfc_key.public_key()})
    assert header == {"alg": "EdDSA"}
    assert payload == RFC_PAYLOAD


def test_rfc_vector_verifies_through_a_jwks() -> None:
    jwks = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC_X}]}
    assert jws.verify(RFC_JWS, jwks)[1] == RFC_PAYLOAD


# ---- keys -------------------------------------------------------------------------------


def test_jwk_of_has_every_member(rfc_key: Ed25519PrivateKey) -> None:
    assert jws.jwk_of(rfc_key.public_key()) == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": RFC_X,
        "kid": RFC_THUMBPRINT,
        "use": "sig",
        "alg": "EdDSA",
    }


def test_jwks_round_trip() -> None:
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(3)]
    parsed = jws.keys_from_jwks(jws.jwks_of(keys))
    assert set(parsed) == {jws.kid_of(k) for k in keys}
    for kid, key in parsed.items():
        assert jws.kid_of(key) == kid
    single = jws.jwks_of(keys[0])
    assert len(single["keys"]) == 1
    assert set(jws.keys_from_jwks(jws.jwks_of({"a": keys[1]}))) == {jws.kid_of(keys[1])}


def test_keys_from_jwks_skips_other_key_types_and_uses() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    jwks = {
        "keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "OKP", "crv": "X25519", "x": RFC_X, "kid": "ecdh"},
            {**jws.jwk_of(key), "use": "enc", "kid": "enc"},
            jws.jwk_of(key),
        ]
    }
    assert list(jws.keys_from_jwks(jwks)) == [jws.kid_of(key)]


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ({}, "'keys' array"),
        ({"keys": "x"}, "'keys' array"),
        ({"keys": [1]}, "keys[0]: a JWK is an object"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC_X, "d": RFC_D}]}, "private key"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]}, "32-byte"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519"}]}, "32-byte"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC_X, "kid": 7}]}, "'kid'"),
        ({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": RFC_X}] * 2}, "appears twice"),
    ],
)
def test_keys_from_jwks_refuses_bad_sets(jwks: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        jws.keys_from_jwks(jwks, source="issuer.json")
    assert caught.value.message.startswith("issuer.json: ")


# ---- refusals ---------------------------------------------------------------------------


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def keys(key: Ed25519PrivateKey) -> dict[str, object]:
    return {jws.kid_of(key.public_key()): key.public_key()}


def _forge(key: Ed25519PrivateKey, header: dict[str, object], payload: bytes = b"{}") -> str:
    """Sign an arbitrary header, bypassing sign()'s own checks."""
    signing_input = f"{_b64json(header)}.{jws.b64url_encode(payload)}"
    return f"{signing_input}.{jws.b64url_encode(key.sign(signing_input.encode()))}"


def test_round_trip_with_kid(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    token = jws.sign(b"payload", key, {"kid": jws.kid_of(key.public_key()), "typ": "x"})
    header, payload = jws.verify(token, keys)  # type: ignore[arg-type]
    assert header["alg"] == "EdDSA"
    assert header["typ"] == "x"
    assert payload == b"payload"
    assert jws.parse_header(token) == header


def test_sign_refuses_other_algorithms(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="EdDSA"):
        jws.sign(b"x", key, {"alg": "HS256"})


def _reason(token: str, keys: object) -> str:
    with pytest.raises(jws.ProofInvalid) as caught:
        jws.verify(token, keys)  # type: ignore[arg-type]
    assert isinstance(caught.value, IntegrityError)
    return caught.value.reason


def test_tampered_payload(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    h, _, s = jws.sign(b'{"result":true}', key, {"kid": jws.kid_of(key.public_key())}).split(".")
    forged_payload = jws.b64url_encode(b'{"result":false}')
    forged = f"{h}.{forged_payload}.{s}"
    assert _reason(forged, keys) == "JWS_SIGNATURE_INVALID"


def test_tampered_header(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    kid = jws.kid_of(key.public_key())
    _, p, s = jws.sign(b"x", key, {"kid": kid}).split(".")
    forged = f"{_b64json({'alg': 'EdDSA', 'kid': kid, 'typ': 'other'})}.{p}.{s}"
    assert _reason(forged, keys) == "JWS_SIGNATURE_INVALID"


def test_tampered_signature(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    h, p, s = jws.sign(b"x", key, {"kid": jws.kid_of(key.public_key())}).split(".")
    raw = bytearray(jws.b64url_decode(s))
    raw[10] ^= 1
    assert _reason(f"{h}.{p}.{jws.b64url_encode(bytes(raw))}", keys) == "JWS_SIGNATURE_INVALID"


def test_signed_by_another_key(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    other = Ed25519PrivateKey.generate()
    token = jws.sign(b"x", other, {"kid": jws.kid_of(key.public_key())})
    assert _reason(token, keys) == "JWS_SIGNATURE_INVALID"


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", "RS256", "Ed25519", None])
def test_other_algorithms_refused(
    key: Ed25519PrivateKey, keys: dict[str, object], alg: str | None
) -> None:
    header: dict[str, object] = {"kid": jws.kid_of(key.public_key())}
    if alg is not None:
        header["alg"] = alg
    assert _reason(_forge(key, header), keys) == "JWS_ALG_NOT_ALLOWED"


def test_crit_refused(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    header = {"alg": "EdDSA", "kid": jws.kid_of(key.public_key()), "crit": ["b64"], "b64": False}
    assert _reason(_forge(key, header), keys) == "JWS_CRIT_UNSUPPORTED"


def test_unknown_kid(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    assert _reason(jws.sign(b"x", key, {"kid": "nope"}), keys) == "JWS_KEY_UNKNOWN"
    assert _reason(jws.sign(b"x", key, {"kid": 5}), keys) == "JWS_KEY_UNKNOWN"


def test_missing_kid_needs_a_single_key(key: Ed25519PrivateKey, keys: dict[str, object]) -> None:
    token = jws.sign(b"x", key, {})
    assert jws.verify(token, keys)[1] == b"x"  # type: ignore[arg-type]
    two = {**keys, "other": Ed25519PrivateKey.generate().public_key()}
    assert _reason(token, two) == "JWS_KEY_UNKNOWN"


def test_non_ed25519_key_refused(key: Ed25519PrivateKey) -> None:
    assert _reason(jws.sign(b"x", key, {"kid": "k"}), {"k": object()}) == "JWS_KEY_UNKNOWN"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "eyJhbGciOiJFZERTQSJ9..",
        RFC_JWS + "=",
        RFC_JWS.replace("eyJhbGciOiJFZERTQSJ9", "eyJhbGciOiJFZERTQSJ9="),
        RFC_JWS.replace("-", "+"),
        RFC_JWS[:-1] + "h",  # non-canonical final character: same bytes, other encoding
        RFC_JWS[:-4],
        "x" * (jws.MAX_TOKEN_LENGTH + 1),
        f"{_b64json([1])}.e30.{'A' * 86}",
        f"{jws.b64url_encode(b'{bad json')}.e30.{'A' * 86}",
        f"{jws.b64url_encode(bytes([0xFF, 0xFE]))}.e30.{'A' * 86}",
        f"{jws.b64url_encode(b'[' * 5000)}.e30.{'A' * 86}",
        jws.b64url_encode(b'{"alg":"EdDSA","alg":"none"}') + ".e30." + "A" * 86,
    ],
)
def test_malformed_tokens(rfc_key: Ed25519PrivateKey, token: str) -> None:
    assert _reason(token, {RFC_THUMBPRINT: rfc_key.public_key()}) == "JWS_MALFORMED"


def test_non_string_token() -> None:
    assert _reason(b"abc", {}) == "JWS_MALFORMED"  # type: ignore[arg-type]


def test_short_signature(rfc_key: Ed25519PrivateKey) -> None:
    h, p, _ = RFC_JWS.split(".")
    token = f"{h}.{p}.{jws.b64url_encode(b'x' * 63)}"
    assert _reason(token, {RFC_THUMBPRINT: rfc_key.public_key()}) == "JWS_MALFORMED"


# ---- an independent implementation ------------------------------------------------------


# joserfc warns that RFC 9864 deprecates "EdDSA" for "Ed25519"; ARCHITECTURE.md ("Formats")
# fixes alg EdDSA (RFC 8037), which every JOSE library still verifies.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_independent_jose_library_verifies_our_tokens(key: Ed25519PrivateKey) -> None:
    token = jws.sign(b'{"a":1}', key, {"kid": jws.kid_of(key.public_key())})
    public = OKPKey.import_key(jws.jwk_of(key.public_key()))
    result = jrfc_jws.deserialize_compact(token, public, algorithms=["EdDSA"])
    assert result.payload == b'{"a":1}'


# ---- properties -------------------------------------------------------------------------

_HEADER_VALUES = st.one_of(st.text(max_size=20), st.integers(), st.booleans())


@settings(max_examples=60, deadline=None)
@given(
    payload=st.binary(max_size=512),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda s: s not in ("alg", "crit", "kid")),
        _HEADER_VALUES,
        max_size=4,
    ),
)
def test_sign_verify_round_trip(payload: bytes, extra: dict[str, object]) -> None:
    key = Ed25519PrivateKey.generate()
    kid = jws.kid_of(key.public_key())
    header, out = jws.verify(
        jws.sign(payload, key, {"kid": kid, **extra}), jws.jwks_of(key.public_key())
    )
    assert out == payload
    assert header == {"alg": "EdDSA", "kid": kid, **extra}


@settings(max_examples=200, deadline=None)
@given(token=st.text(alphabet="eyJhbGciOiJFZERTQSJ9.-_=+/ ", max_size=200) | st.text(max_size=80))
def test_arbitrary_text_is_a_typed_refusal(token: str) -> None:
    with pytest.raises(jws.ProofInvalid):
        jws.verify(token, {RFC_THUMBPRINT: Ed25519PrivateKey.generate().public_key()})


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    text = jws.b64url_encode(data)
    assert "=" not in text
    assert jws.b64url_decode(text) == data
