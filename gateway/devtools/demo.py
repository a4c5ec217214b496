"""`proofless demo` (what `make demo` runs): a scripted tour of a working day at three
approval systems, against a fresh gateway and fresh department simulators in this process.

Every call is a real mutual-TLS gRPC call; the audit log lands in var/demo/ so it can be
inspected and verified afterwards.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from gateway.cli.client import describe_rpc_error
from gateway.config import merge_tables
from gateway.crypto.consent import issue_consent
from gateway.crypto.keys import load_ed25519_private_key
from gateway.crypto.proof_check import check_proof
from gateway.devtools.pki import DevPki
from gateway.devtools.recipe import gateway_with_simulators
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc

DEMO_STATE = Path("var/demo")
VERDICTS = {
    pb.VERDICT_HOLDS: "HOLDS",
    pb.VERDICT_DOES_NOT_HOLD: "DOES NOT HOLD",
    pb.VERDICT_UNDETERMINED: "UNDETERMINED",
}


def _brief(message: Message) -> str:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    data.pop("attestation", None)
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) < 400 else text[:397] + "..."


class Tour:
    def __init__(self, address: str, pki: DevPki, jwks: dict[str, Any]) -> None:
        self.address = address
        self.pki = pki
        self.jwks = jwks
        self.step = 0
        self.failures = 0
        self._stubs: dict[str, pb_grpc.VerificationServiceStub] = {}
        self._channels: list[grpc.aio.Channel] = []

    def stub(self, caller: str) -> pb_grpc.VerificationServiceStub:
        if caller not in self._stubs:
            creds = grpc.ssl_channel_credentials(
                self.pki.ca_pem.read_bytes(),
                self.pki.client_key(caller).read_bytes(),
                self.pki.client_pem(caller).read_bytes(),
            )
            channel = grpc.aio.secure_channel(self.address, creds)
            self._channels.append(channel)
            self._stubs[caller] = pb_grpc.VerificationServiceStub(channel)
        return self._stubs[caller]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def run(
        self,
        title: str,
        caller: str,
        call: Callable[[pb_grpc.VerificationServiceStub], Awaitable[Message]],
        *,
        expect: grpc.StatusCode = grpc.StatusCode.OK,
    ) -> Any:
        self.step += 1
        print(f"\n[{self.step:2}] {title}\n     caller: {caller}")
        t0 = time.perf_counter()
        try:
            response = await call(self.stub(caller))
        except grpc.aio.AioRpcError as err:
            print("     → " + describe_rpc_error(err).replace("\n", "\n       "))
            if err.code() != expect:
                self.failures += 1
                print(f"     !! expected {expect.name}")
            return None
        if expect != grpc.StatusCode.OK:
            self.failures += 1
            print(f"     !! expected {expect.name}, got OK")
        if isinstance(response, pb.VerifyClaimsResponse):
            for r in response.results:
                note = f" ({r.status.message})" if r.verdict == pb.VERDICT_UNDETERMINED else ""
                print(
                    f"     → {r.id}: {r.type} {dict(r.params) if hasattr(r, 'params') else ''}"
                    f"{VERDICTS.get(r.verdict, '?')}{note}"
                )
        elif isinstance(response, pb.CheckItemResponse):
            for req in response.requirements:
                who = f" [{req.party}]" if req.party else ""
                what = req.claim_type or "group"
                undetermined = req.verdict == pb.VERDICT_UNDETERMINED
                note = f" ({req.status.message})" if undetermined else ""
                print(f"     · {req.name}{who}: {what} {VERDICTS.get(req.verdict, '?')}{note}")
            for p in response.prefill:
                print(f"     · prefill {p.name}: {len(p.records)} {p.evidence_type} record(s)")
            print(
                f"     → item {response.service_item}: {VERDICTS.get(response.verdict, '?')}"
                f" in {(time.perf_counter() - t0) * 1000:.0f} ms, one call"
            )
        else:
            print(f"     → {_brief(response)}")
        att = getattr(response, "attestation", None)
        if att is not None and att.proof:
            check_proof(att.proof, self.jwks)
            print(
                f"     proof {att.proof_id[:12]}… verified · audit #{att.audit_index}"
                f" · fields {list(att.disclosed_fields)}"
            )
        return response


def _ctx(item: str, case: str, purpose: str = "", consent: str = "") -> pb.RequestContext:
    return pb.RequestContext(
        service_item=item, case_id=case, purpose=purpose, consent_token=consent
    )


def _req(
    item: str, case: str, idn: str, purpose: str = "", fields: tuple[str, ...] = ()
) -> pb.RecordRequest:
    req = pb.RecordRequest(context=_ctx(item, case, purpose), applicant=pb.Applicant(id_number=idn))
    req.read_mask.paths.extend(fields)
    return req


def _claims(
    item: str,
    case: str,
    idn: str,
    purpose: str,
    *claims: tuple[str, str, dict[str, str]],
    consent: str = "",
) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=_ctx(item, case, purpose, consent),
        applicant=pb.Applicant(id_number=idn),
        claims=[pb.Claim(id=i, type=t, params=p) for i, t, p in claims],
    )


async def tour(t: Tour, s: dict[str, str], pki: DevPki) -> None:
    code = grpc.StatusCode
    await t.run(
        "一窗通办: what may the Quangang one-window system use? (ListServiceItems)",
        "quangang-window",
        lambda c: c.ListServiceItems(pb.ListServiceItemsRequest()),
    )
    seller = await t.run(
        "二手房交易 second-hand housing transfer: the seller's titles (不动产)",
        "quangang-window",
        lambda c: c.GetPropertyRecords(
            _req(
                "housing-transfer",
                "QG-2026-000417",
                s["mortgaged_property"],
                "seller's title check",
            )
        ),
    )
    certificate = (
        next((r.certificate_number for r in seller.records if r.mortgaged), "")
        if seller is not None
        else ""
    )
    await t.run(
        "二手房交易: is the flat being sold mortgaged or seized? (property.encumbrance)",
        "quangang-window",
        lambda c: c.VerifyClaims(
            _claims(
                "housing-transfer",
                "QG-2026-000417",
                s["mortgaged_property"],
                "encumbrance check",
                ("encumbered", "property.encumbrance", {"certificate_number": certificate}),
            )
        ),
    )
    await t.run(
        "二手房交易: purchase limits — is the buyer registered in Quanzhou, and flat-free there?",
        "quangang-window",
        lambda c: c.VerifyClaims(
            _claims(
                "housing-transfer",
                "QG-2026-000417",
                s["no_property"],
                "buyer purchase-limit check",
                ("resident", "household.residence", {"region": "350500"}),
                ("no-flat", "property.ownership", {"region": "350500", "owns": "false"}),
            )
        ),
    )
    await t.run(
        "城乡居民养老保险 resident pension: 15 years of contributions, registered in Fujian",
        "fuan-hrss",
        lambda c: c.VerifyClaims(
            _claims(
                "resident-pension",
                "FA-2026-003151",
                s["long_contributor"],
                "pension eligibility",
                ("fifteen-years", "social_security.contribution", {"min_months": "180"}),
                ("fujian", "household.residence", {"region": "350000"}),
            )
        ),
    )
    await t.run(
        "职工退休一件事 retirement: insurances and history, minimal fields",
        "fuan-hrss",
        lambda c: c.GetSocialSecurityRecord(
            _req(
                "retirement",
                "FA-2026-003152",
                s["pensioner_quangang"],
                "pension base",
                ("name", "insurances"),
            )
        ),
    )
    await t.run(
        "社会保障卡申领 social security card: name, gender, birth date only",
        "quangang-window",
        lambda c: c.GetHouseholdRecord(
            _req(
                "ss-card",
                "QG-2026-000418",
                s["household_head"],
                "",
                ("name", "gender", "birth_date"),
            )
        ),
    )
    await t.run(
        "大中专学生户口迁移 student household transfer: is this the student's parent?",
        "quangang-window",
        lambda c: c.VerifyClaims(
            _claims(
                "student-hukou-transfer",
                "QG-2026-000419",
                s["household_child"],
                "kinship check",
                (
                    "parent",
                    "household.kinship",
                    {"other_id_number": s["household_head"], "relation": "parent"},
                ),
            )
        ),
    )
    consent = issue_consent(
        load_ed25519_private_key(pki.consent_issuer_key),
        applicant_id_number=s["no_property"],
        caller="fuzhou-civil-affairs",
        item="subsistence-allowance",
        case_id="FZ-2026-010203",
        ttl=600,
    )
    await t.run(
        "最低生活保障 subsistence allowance, with the family's consent (授权): no property, "
        "contributions",
        "fuzhou-civil-affairs",
        lambda c: c.VerifyClaims(
            _claims(
                "subsistence-allowance",
                "FZ-2026-010203",
                s["no_property"],
                "means test",
                ("no-property", "property.ownership", {"owns": "false"}),
                ("contributions", "social_security.contribution", {"min_months": "1"}),
                consent=consent,
            )
        ),
    )
    await t.run(
        "最低生活保障 without consent → refused",
        "fuzhou-civil-affairs",
        lambda c: c.VerifyClaims(
            _claims(
                "subsistence-allowance",
                "FZ-2026-010204",
                s["no_property"],
                "means test",
                ("no-property", "property.ownership", {"owns": "false"}),
            )
        ),
        expect=code.PERMISSION_DENIED,
    )
    await t.run(
        "一件事一次办: the buyer under the purchase limit, every requirement in one call "
        "(CheckItem)",
        "quangang-window",
        lambda c: c.CheckItem(
            pb.CheckItemRequest(
                context=_ctx("housing-transfer", "QG-2026-000418", "buyer eligibility"),
                applicant=pb.Applicant(id_number=s["no_property"]),
            )
        ),
    )
    await t.run(
        "护士执业注册延续 AI 秒批: a nurse's renewal decided in one call over four departments "
        "(registration and employer, residence, contributions, medical insurance)",
        "ningde-window",
        lambda c: c.CheckItem(
            pb.CheckItemRequest(
                context=_ctx("nurse-renewal", "ND-2026-007731"),
                applicant=pb.Applicant(id_number=s["nurse_renewal_due"]),
            )
        ),
    )
    await t.run(
        "a system asking beyond its use-licence list → refused (用证清单)",
        "quangang-window",
        lambda c: c.GetSocialSecurityRecord(
            _req("resident-pension", "QG-2026-000420", s["long_contributor"], "curiosity")
        ),
        expect=code.PERMISSION_DENIED,
    )
    bad = s["household_head"][:17] + ("0" if s["household_head"][17] != "0" else "1")
    await t.run(
        "a mistyped ID number (checksum) → INVALID_ARGUMENT, the number is never echoed",
        "quangang-window",
        lambda c: c.GetHouseholdRecord(_req("ss-card", "QG-2026-000421", bad)),
        expect=code.INVALID_ARGUMENT,
    )
    await t.run(
        "a deceased person is not resident anywhere",
        "fuan-hrss",
        lambda c: c.VerifyClaims(
            _claims(
                "resident-pension",
                "FA-2026-003153",
                s["deceased"],
                "pension eligibility",
                ("resident", "household.residence", {"region": "350000"}),
            )
        ),
    )
    await t.run(
        "a valid ID nobody knows → NOT_FOUND",
        "quangang-window",
        lambda c: c.GetHouseholdRecord(_req("ss-card", "QG-2026-000422", s["unknown"])),
        expect=code.NOT_FOUND,
    )


async def _demo(raw: dict[str, Any], config_path: Path) -> int:
    raw = merge_tables(
        raw,
        {
            "server": {
                "listen": "127.0.0.1:0",
                "ops_listen": "127.0.0.1:0",
                "http_listen": "",
                "grace_seconds": 1,
            },
            "audit": {"dir": str(DEMO_STATE / "audit"), "origin": "proofless.dev/demo"},
            "simulators": {
                "household_listen": "127.0.0.1:0",
                "social_security_listen": "127.0.0.1:0",
            },
            "departments": {
                "property": {"endpoint": f"sqlite:///{DEMO_STATE / 'frontdb.sqlite3'}"}
            },
        },
    )
    pki = DevPki(Path(raw["tls"]["ca"]).parent)
    started = time.perf_counter()
    async with gateway_with_simulators(raw, source=str(config_path)) as run:
        sims, gw = run.sims, run.gateway
        print(
            f"Proofless demo: gateway on {gw.address}, departments simulated "
            f"({len(sims.population.people)} synthetic citizens)"
        )
        t = Tour(gw.address, pki, dict(gw.signer.jwks()))
        try:
            await tour(t, dict(sims.population.scenarios), pki)
        finally:
            await t.close()
        size = gw.audit.tree_size
        vkey = gw.audit.vkey
    elapsed = time.perf_counter() - started
    print(f"\n{t.step} calls in {elapsed:.1f} s; {size} audit entries in {DEMO_STATE / 'audit'}.")
    print(
        f"Verify the log offline:\n  .venv/bin/proofless audit verify {DEMO_STATE / 'audit'} "
        f"--key '{vkey}'"
    )
    if t.failures:
        print(f"{t.failures} step(s) did not behave as expected")
        return 1
    return 0


def run_demo(config_path: Path) -> int:
    raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    shutil.rmtree(DEMO_STATE, ignore_errors=True)
    return asyncio.run(_demo(raw, config_path))
