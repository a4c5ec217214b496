"""Red-team item 11: keys.

a. The JWKS published only the current proof-signing key: rotating it broke the verification
   of every proof signed before. Retired keys stay published with their validity (`exp`), are
   never used to sign, and `proofless proof verify` accepts a proof of a retired key only when
   its `iat` lies within that validity.
b. Consent and citizen tokens were not checked for `iss`: any key in the issuers' JWKS could
   mint tokens in any issuer's name, and a key of an issuer nobody trusted was as good as the
   citizen app's. `iss` must now be a configured trusted issuer its key may sign for.
c. The consent replay cache was per process: with `serve --workers N` or N replicas a token
   worked N times. `[consent] replay_backend = "redis"` records each token once for all of
   them, and refuses consent (CONSENT_UNAVAILABLE) while Redis does not answer.
d. (Item 3's remainder.) Consent tokens carried `applicant` = the unsalted SHA-256 of the ID
   number: reversed by trying the ~10^11 IDs, and the same value in every token about a person
   linked them. It is now the citizen tokens' construction: HMAC under a salt fresh per token.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws as jose_jws
from joserfc.jwk import KeySet
from redis.asyncio import Redis

from gateway.cli.main import main as proofless
from gateway.crypto import jws
from gateway.crypto.citizen import issue_citizen_token
from gateway.crypto.consent import DEFAULT_TTL, LEEWAY, issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from gateway.crypto.proof_check import check_proof
from gateway.crypto.proofs import RetiredKey
from gateway.devtools.pki import DevPki
from gateway.domain.errors import ConfigError, IntegrityError
from proofless.v1 import audit_pb2
from proofless.v1 import verification_pb2 as pb
from tests.support.stack import Stack, poll

pytestmark = pytest.mark.asyncio(loop_scope="module")


# ---- helpers --------------------------------------------------------------------------------


async def household_proof(stack: Stack, case: str) -> str:
    stub = await stack.verification("quangang-window")
    req = pb.RecordRequest(
        context=pb.RequestContext(service_item="housing-transfer", case_id=case, purpose="t"),
        applicant=pb.Applicant(id_number=stack.scenarios["household_head"]),
    )
    req.read_mask.paths.extend(["name", "region_code"])
    reply = await stub.GetHouseholdRecord(req, timeout=5)
    return reply.attestation.proof


def jwks_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.gateway.ops_port}/.well-known/jwks.json"


async def published_jwks(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(jwks_url(stack)) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


async def verify_cli(
    tmp_path: Path, token: str, jwks_source: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`proofless proof verify FILE --jwks SOURCE` (in a thread: the ops server it may fetch
    from runs on this event loop)."""
    path = tmp_path / f"proof-{time.monotonic_ns()}.jws"
    path.write_text(token)
    capsys.readouterr()
    code = await asyncio.to_thread(proofless, ["proof", "verify", str(path), "--jwks", jwks_source])
    out = capsys.readouterr()
    return code, out.out + out.err


def kid_of(token: str) -> str:
    kid: str = jws.parse_header(token)["kid"]
    return kid


def resign(token: str, key: Ed25519PrivateKey, **changes: Any) -> str:
    """The proof's payload with `changes`, signed by `key` (named by its kid)."""
    claims = json.loads(jws.b64url_decode(token.split(".")[1]))
    claims.update(changes)
    body = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header = {**jws.parse_header(token), "kid": jws.kid_of(key.public_key())}
    return jws.sign(body.encode(), key, header)


# ---- a. retired proof-signing keys ----------------------------------------------------------


async def test_a_rotated_key_keeps_older_proofs_verifiable(
    make_stack: Callable[..., Any],
    pki: DevPki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key_file = keys / "proof-signing.key"
    shutil.copy(pki.proof_signing_key, key_file)
    old_key = load_ed25519_private_key(key_file)
    overrides = {"proofs": {"signing_key": str(key_file)}}

    async with make_stack(overrides, tmp_path / "run-1") as stack:
        before = await household_proof(stack, "K11-A-1")
        assert len((await published_jwks(stack))["keys"]) == 1
        # rotate under the running gateway: it switches without a restart
        assert proofless(["certs", "rotate-proof-key", "--key", str(key_file)]) == 0
        rotated = capsys.readouterr().out
        assert "retired proof-signing key" in rotated

        async def switched() -> bool:
            return kid_of(await household_proof(stack, "K11-A-2")) != kid_of(before)

        await poll(switched, "the gateway signing with the rotated key")
        during = await household_proof(stack, "K11-A-3")
        code, out = await verify_cli(tmp_path, before, jwks_url(stack), capsys)
        assert code == 0, out

    async with make_stack(overrides, tmp_path / "run-2") as stack:
        after = await household_proof(stack, "K11-A-4")
        published = await published_jwks(stack)
        current, retired = published["keys"]
        assert current["kid"] == kid_of(after) == kid_of(during)
        assert "exp" not in current
        assert retired["kid"] == kid_of(before)
        assert isinstance(retired["exp"], int)
        assert retired["exp"] > json.loads(jws.b64url_decode(before.split(".")[1]))["iat"]
        assert "d" not in retired

        # the proof signed before the rotation and the one after both verify, offline
        for token in (before, after):
            code, out = await verify_cli(tmp_path, token, jwks_url(stack), capsys)
            assert code == 0, out
            assert '"valid": true' in out
        # an independent JOSE library reads the set (it ignores exp) and checks both
        keyset = KeySet.import_key_set(published)
        for token in (before, after):
            jose_jws.deserialize_compact(token, keyset, algorithms=["EdDSA"])

        # whoever holds the retired key cannot sign a proof dated after its retirement
        late = resign(before, old_key, iat=retired["exp"])
        code, out = await verify_cli(tmp_path, late, jwks_url(stack), capsys)
        assert code == 1
        assert "PROOF_KEY_NOT_VALID" in out
        inside = resign(before, old_key, iat=retired["exp"] - 1)
        code, out = await verify_cli(tmp_path, inside, jwks_url(stack), capsys)
        assert code == 0, out


async def test_the_gateway_refuses_to_sign_with_a_key_listed_as_retired(
    make_stack: Callable[..., Any], pki: DevPki, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key_file = keys / "proof-signing.key"
    shutil.copy(pki.proof_signing_key, key_file)
    retired = keys / "retired-proof-keys"
    retired.mkdir()
    key = load_ed25519_private_key(key_file)
    jwk = {**jws.jwk_of(key.public_key()), "exp": int(time.time())}
    (retired / f"{jwk['kid']}.jwk.json").write_text(json.dumps(jwk))
    with pytest.raises(ConfigError, match="listed as retired"):
        async with make_stack({"proofs": {"signing_key": str(key_file)}}, tmp_path / "run"):
            pass


async def test_retired_keys_named_in_the_config_are_published_and_bounded(
    make_stack: Callable[..., Any], tmp_path: Path
) -> None:
    old = Ed25519PrivateKey.generate()
    exp = int(time.time()) - 60
    retired = RetiredKey(old.public_key(), retired_at=exp, since=exp - 3600)
    listed = tmp_path / "old.jwk.json"
    listed.write_text(json.dumps(retired.jwk()))
    config = {"proofs": {"retired_keys": [str(listed)]}}
    async with make_stack(config, tmp_path / "run") as stack:
        published = await published_jwks(stack)
        assert [k["kid"] for k in published["keys"]][1:] == [retired.kid]
        assert published["keys"][1]["nbf"] == exp - 3600
        template = await household_proof(stack, "K11-A-5")
    for iat, valid in ((exp - 1, True), (exp, False), (exp - 3600, True), (exp - 3601, False)):
        token = resign(template, old, iat=iat)
        if valid:
            assert check_proof(token, published)["key_retired_at"] == exp
        else:
            with pytest.raises(IntegrityError) as info:
                check_proof(token, published)
            assert info.value.reason == "PROOF_KEY_NOT_VALID"
    # a validity that is not a number trusts nothing the key signed
    broken = {"keys": [published["keys"][0], {**published["keys"][1], "exp": "soon"}]}
    with pytest.raises(IntegrityError):
        check_proof(resign(template, old, iat=exp - 1), broken)
    # a retired key listed in the config but missing is a start-up error, not a silent gap
    with pytest.raises(ConfigError, match=r"missing\.jwk\.json"):
        async with make_stack(
            {"proofs": {"retired_keys": [str(tmp_path / "missing.jwk.json")]}}, tmp_path / "r2"
        ):
            pass


# ---- b. the issuer of consent and citizen tokens ----------------------------------------------

CONSENT_CALLER = "fuzhou-civil-affairs"
CONSENT_ITEM = "subsistence-allowance"
DEV_ISSUER = "proofless-dev-consent"


def consent_request(applicant: str, case_id: str, token: str) -> pb.RecordRequest:
    req = pb.RecordRequest(
        context=pb.RequestContext(
            service_item=CONSENT_ITEM, case_id=case_id, purpose="allowance", consent_token=token
        ),
        applicant=pb.Applicant(id_number=applicant),
    )
    req.read_mask.paths.extend(["name", "household_number"])
    return req


def consent_for(key: Ed25519PrivateKey, applicant: str, case_id: str, **kw: Any) -> str:
    return issue_consent(
        key,
        applicant_id_number=applicant,
        caller=CONSENT_CALLER,
        item=CONSENT_ITEM,
        case_id=case_id,
        **kw,
    )


def reason_of(err: grpc.aio.AioRpcError, details: Callable[..., list[Any]]) -> str:
    return next(d.reason for d in details(err) if hasattr(d, "reason"))


async def test_a_token_must_name_an_issuer_its_key_is_trusted_for(
    make_stack: Callable[..., Any],
    pki: DevPki,
    tmp_path: Path,
    details: Callable[..., list[Any]],
) -> None:
    citizen_app = load_ed25519_private_key(pki.consent_issuer_key)
    # the JWKS also holds the key of an issuer the gateway does not trust for consent
    other_app = Ed25519PrivateKey.generate()
    jwks = jws.jwks_of([citizen_app.public_key(), other_app.public_key()])
    jwks["keys"][1]["iss"] = "other-app"
    issuers = tmp_path / "issuers.jwks.json"
    issuers.write_text(json.dumps(jwks))
    config = {"consent": {"issuers_jwks": str(issuers), "issuers": [DEV_ISSUER]}}
    async with make_stack(config, tmp_path / "run") as stack:
        applicant = stack.scenarios["household_head"]
        stub = await stack.verification(CONSENT_CALLER)
        good = consent_for(citizen_app, applicant, "K11-B-1")
        assert (await stub.GetHouseholdRecord(consent_request(applicant, "K11-B-1", good))).record
        for n, (key, iss) in enumerate(
            (
                (citizen_app, "someone-else"),  # a trusted key, an issuer nobody trusts
                (other_app, "other-app"),  # a key whose issuer is not trusted
                (other_app, DEV_ISSUER),  # that key claiming the trusted issuer's name
            )
        ):
            case = f"K11-B-{n + 2}"
            token = consent_for(key, applicant, case, issuer=iss)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetHouseholdRecord(consent_request(applicant, case, token))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(info.value, details) == "CONSENT_UNTRUSTED_ISSUER"

        portal = await stack.audit("citizen-portal")
        listing = audit_pb2.ListAccessesRequest(
            id_number=applicant,
            citizen_token=issue_citizen_token(
                citizen_app, id_number=applicant, portal="citizen-portal", issuer="someone-else"
            ),
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await portal.ListAccesses(listing)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reason_of(info.value, details) == "CITIZEN_TOKEN_UNTRUSTED_ISSUER"
        listing.citizen_token = stack.citizen_token(applicant)
        assert (await portal.ListAccesses(listing)).accesses


async def test_an_issuers_jwks_that_trusts_no_issuer_is_refused_at_start(
    make_stack: Callable[..., Any], pki: DevPki, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"\[consent\] issuers"):
        async with make_stack({"consent": {"issuers": []}}, tmp_path / "run"):
            pass


async def test_a_new_issuer_key_is_trusted_without_a_restart(
    make_stack: Callable[..., Any], pki: DevPki, tmp_path: Path
) -> None:
    """The issuers' keys were said to load once at start: an issuer's rotation needs the
    gateway to follow its JWKS file, and it does."""
    citizen_app = load_ed25519_private_key(pki.consent_issuer_key)
    rotated = Ed25519PrivateKey.generate()
    issuers = tmp_path / "issuers.jwks.json"
    issuers.write_text(json.dumps(jws.jwks_of(citizen_app.public_key())))
    async with make_stack({"consent": {"issuers_jwks": str(issuers)}}, tmp_path / "run") as stack:
        applicant = stack.scenarios["household_head"]
        stub = await stack.verification(CONSENT_CALLER)
        n = 0

        async def accepted() -> bool:
            nonlocal n
            n += 1
            case = f"K11-B-R{n}"
            token = consent_for(rotated, applicant, case)
            try:
                await stub.GetHouseholdRecord(consent_request(applicant, case, token))
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                return False
            return True

        assert not await accepted()
        issuers.write_text(
            json.dumps(jws.jwks_of([citizen_app.public_key(), rotated.public_key()]))
        )
        await poll(accepted, "the gateway trusting the issuer's new key")


# ---- c. one use of a consent token across replicas -------------------------------------------


def shared_replays(redis_url: str, prefix: str) -> dict[str, Any]:
    return {"consent": {"replay_backend": "redis", "redis_url": redis_url, "replay_prefix": prefix}}


async def test_a_consent_token_works_once_across_two_gateways(
    make_stack: Callable[..., Any],
    tmp_path: Path,
    redis_url: str,
    details: Callable[..., list[Any]],
) -> None:
    prefix = f"proofless-test:consent:{uuid.uuid4().hex}:"
    config = shared_replays(redis_url, prefix)
    redis = Redis.from_url(redis_url)
    try:
        async with (
            make_stack(config, tmp_path / "replica-1") as first,
            make_stack(config, tmp_path / "replica-2") as second,
        ):
            applicant = first.scenarios["household_head"]
            token = consent_for(
                load_ed25519_private_key(first.pki.consent_issuer_key), applicant, "K11-C-1"
            )
            stub = await first.verification(CONSENT_CALLER)
            granted = await stub.GetHouseholdRecord(consent_request(applicant, "K11-C-1", token))
            assert granted.attestation.proof
            # the same token at the other replica: refused, not honoured a second time
            other = await second.verification(CONSENT_CALLER)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await other.GetHouseholdRecord(consent_request(applicant, "K11-C-1", token))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert reason_of(info.value, details) == "CONSENT_REPLAYED"
            # one key in Redis, kept no longer than the token lives (plus the clock leeway)
            keys = [k async for k in redis.scan_iter(match=prefix + "*")]
            assert len(keys) == 1
            assert applicant.encode() not in keys[0]
            ttl_ms = await redis.pttl(keys[0])
            assert 0 < ttl_ms <= (DEFAULT_TTL + LEEWAY) * 1000
    finally:
        async for key in redis.scan_iter(match=prefix + "*"):
            await redis.delete(key)
        await redis.aclose()


async def test_consent_is_refused_while_the_shared_replay_store_is_down(
    make_stack: Callable[..., Any],
    pki: DevPki,
    tmp_path: Path,
    details: Callable[..., list[Any]],
) -> None:
    with socket.socket() as s:  # a port nothing listens on: Redis is down
        s.bind(("127.0.0.1", 0))
        down = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    async with make_stack(shared_replays(down, "proofless-test:"), tmp_path / "run") as stack:
        applicant = stack.scenarios["household_head"]
        token = consent_for(load_ed25519_private_key(pki.consent_issuer_key), applicant, "K11-C-2")
        stub = await stack.verification(CONSENT_CALLER)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetHouseholdRecord(
                consent_request(applicant, "K11-C-2", token),
                metadata=(("x-request-id", "k11-c-down"),),
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(info.value, details) == "CONSENT_UNAVAILABLE"
        log = stack.gateway.audit
        entries = [json.loads(e) for e in await log.entries(0, log.tree_size)]
        (entry,) = [e for e in entries if e.get("request_id") == "k11-c-down"]
        assert entry["reason"] == "CONSENT_UNAVAILABLE"
        assert entry["departments"] == []  # nothing was fetched


# ---- d. the applicant in a consent token --------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(jws.b64url_decode(token.split(".")[1]))
    return claims


async def test_a_consent_token_names_its_applicant_by_a_salted_binding(
    stack: Stack,
    capsys: pytest.CaptureFixture[str],
    details: Callable[..., list[Any]],
) -> None:
    applicant = stack.scenarios["household_head"]
    tokens = []
    for case in ("K11-D-1", "K11-D-2"):
        code = proofless(
            [
                "consent", "issue", "--key", str(stack.pki.consent_issuer_key),
                "--id-number", applicant, "--caller", CONSENT_CALLER, "--item", CONSENT_ITEM,
                "--case", case,
            ]
        )  # fmt: skip
        assert code == 0
        tokens.append(capsys.readouterr().out.strip())
    unsalted = hashlib.sha256(applicant.encode()).hexdigest()
    first, second = map(claims_of, tokens)
    for claims in (first, second):
        assert unsalted not in json.dumps(claims)
        assert applicant not in json.dumps(claims)
        assert len(jws.b64url_decode(claims["salt"])) == 16
    # two tokens about one person share no value a third party could link them by
    assert first["applicant"] != second["applicant"]
    assert first["salt"] != second["salt"]

    stub = await stack.verification(CONSENT_CALLER)
    for case, token in zip(("K11-D-1", "K11-D-2"), tokens, strict=True):
        reply = await stub.GetHouseholdRecord(consent_request(applicant, case, token))
        assert reply.attestation.proof
    # a token in the old, linkable form is no longer accepted
    old = dict(claims_of(tokens[0]), applicant=unsalted, case_id="K11-D-3", jti="old-form-0001")
    del old["salt"]
    header = jws.parse_header(tokens[0])
    key = load_ed25519_private_key(stack.pki.consent_issuer_key)
    forged = jws.sign(json.dumps(old).encode(), key, header)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetHouseholdRecord(consent_request(applicant, "K11-D-3", forged))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value, details) == "CONSENT_INVALID"


async def test_a_token_with_a_malformed_salt_is_refused_not_an_internal_error(
    stack: Stack, details: Callable[..., list[Any]]
) -> None:
    idn = stack.scenarios["household_head"]
    token = stack.citizen_token(idn)
    claims = dict(claims_of(token), salt="**not-base64url**")
    key = load_ed25519_private_key(stack.pki.consent_issuer_key)
    forged = jws.sign(json.dumps(claims).encode(), key, jws.parse_header(token))
    portal = await stack.audit("citizen-portal")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await portal.ListAccesses(
            audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=forged)
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason_of(info.value, details) == "CITIZEN_TOKEN_INVALID"
