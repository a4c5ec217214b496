"""The `proofless` command: serve the gateway, run the department simulators, call it, verify
proofs, manage certificates, policy and consent, and audit the log."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from gateway import __version__
from gateway.domain.errors import FieldViolation, InvalidArgument, ProoflessError

DEFAULT_CONFIG = Path("deploy/config/gateway.toml")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"gateway configuration (TOML; default {DEFAULT_CONFIG}); "
        "PROOFLESS__SECTION__KEY environment variables override it",
    )


# ---- serve / dev / simulators ---------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.ops.logging import configure_logging
    from gateway.server.app import serve
    from gateway.server.loop import run

    if args.workers > 1:
        from gateway.server.workers import run_workers

        return run_workers(args.config, args.workers, args.log_level)
    configure_logging(args.log_level)
    config = load_config(args.config)
    run(
        serve(config, on_ready=lambda gw: _print_ready(gw, config, args.config)),
        config.server.event_loop,
    )
    return 0


def cmd_simulators(args: argparse.Namespace) -> int:
    from adapters.simulators import serve_forever
    from adapters.simulators.from_catalogue import simulator_departments
    from gateway.catalogue import load_catalogue
    from gateway.config import load_config
    from gateway.ops.logging import configure_logging

    configure_logging(args.log_level)
    config = load_config(args.config)
    catalogue = load_catalogue(config.catalogue_dir, config.departments)
    departments = simulator_departments(catalogue)
    asyncio.run(serve_forever({"simulators": config.simulators, "departments": departments}))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from gateway.devtools.dev import run_dev

    return run_dev(args.config, args.log_level)


def _print_ready(gw: Any, config: Any, config_path: Path) -> None:
    from gateway.devtools.dev import ready_banner

    print(ready_banner(gw, config, config_path), flush=True)


# ---- call -----------------------------------------------------------------------------------

RECORD_RPCS = {
    "household": "GetHouseholdRecord",
    "social-security": "GetSocialSecurityRecord",
    "property": "GetPropertyRecords",
}


def parse_claim(text: str, index: int) -> dict[str, Any]:
    """`type[:key=value,key=value]` → a Claim dict."""
    kind, _, params = text.partition(":")
    pairs = {}
    for part in filter(None, params.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidArgument(
                [FieldViolation(f"--claim #{index + 1}", "parameters are key=value pairs")]
            )
        pairs[key.strip()] = value.strip()
    return {"id": f"c{index + 1}", "type": kind.strip(), "params": pairs}


async def _call(args: argparse.Namespace) -> int:
    from gateway.cli.client import ClientIdentity, describe_rpc_error, secure_channel
    from gateway.config import load_config
    from gateway.domain.idnumber import id_number_violation
    from proofless.v1 import verification_pb2 as pb
    from proofless.v1 import verification_pb2_grpc as pb_grpc

    address = args.address
    if args.cert or args.key:
        if not (args.cert and args.key and args.ca):
            raise InvalidArgument(
                [FieldViolation("--cert/--key/--ca", "give all three, or use --as CALLER")]
            )
        identity = ClientIdentity(args.ca, args.cert, args.key)
    else:
        identity = ClientIdentity.dev(args.certs, args.as_caller)
    if address is None:
        address = load_config(args.config).server.listen
    context = pb.RequestContext(
        service_item=args.item or "",
        case_id=args.case or "",
        purpose=args.purpose or "",
        consent_token=args.consent or "",
    )
    applicant = pb.Applicant(
        id_number=args.id_number or "", name=args.name or "", credit_code=args.credit_code or ""
    )
    async with secure_channel(address, identity) as channel:
        stub = pb_grpc.VerificationServiceStub(channel)
        metadata = (("x-request-id", args.request_id),) if args.request_id else None
        try:
            if args.what in RECORD_RPCS:
                request = pb.RecordRequest(context=context, applicant=applicant)
                if args.fields:
                    request.read_mask.paths.extend(f.strip() for f in args.fields.split(","))
                rpc = getattr(stub, RECORD_RPCS[args.what])
                response = await rpc(request, timeout=args.timeout, metadata=metadata)
            elif args.what == "evidence":
                evidence = pb.EvidenceRequest(
                    context=context, applicant=applicant, evidence_type=args.type or ""
                )
                if args.fields:
                    evidence.read_mask.paths.extend(f.strip() for f in args.fields.split(","))
                response = await stub.GetEvidence(evidence, timeout=args.timeout, metadata=metadata)
            elif args.what == "item":
                parties = []
                for i, text in enumerate(args.party or []):
                    role, sep, subject = text.partition("=")
                    if not sep:
                        raise InvalidArgument(
                            [FieldViolation(f"--party #{i + 1}", "is ROLE=ID_NUMBER")]
                        )
                    # a resident ID (GB 11643) names a person; anything else is taken as a
                    # credit code, which the gateway checks (GB 32100)
                    subject = subject.strip()
                    if id_number_violation(subject, "party") is None:
                        who = pb.Applicant(id_number=subject)
                    else:
                        who = pb.Applicant(credit_code=subject)
                    parties.append(pb.Party(role=role.strip(), subject=who))
                response = await stub.CheckItem(
                    pb.CheckItemRequest(context=context, applicant=applicant, parties=parties),
                    timeout=args.timeout,
                    metadata=metadata,
                )
            elif args.what == "types":
                response = await stub.ListEvidenceTypes(
                    pb.ListEvidenceTypesRequest(), timeout=args.timeout, metadata=metadata
                )
            elif args.what == "claims":
                claims = [pb.Claim(**parse_claim(c, i)) for i, c in enumerate(args.claim or [])]
                response = await stub.VerifyClaims(
                    pb.VerifyClaimsRequest(context=context, applicant=applicant, claims=claims),
                    timeout=args.timeout,
                    metadata=metadata,
                )
            else:
                response = await stub.ListServiceItems(
                    pb.ListServiceItemsRequest(), timeout=args.timeout, metadata=metadata
                )
        except grpc.aio.AioRpcError as err:
            print(describe_rpc_error(err), file=sys.stderr)
            return 1
    print(
        json_format.MessageToJson(
            response, preserving_proto_field_name=True, ensure_ascii=False, indent=2
        )
    )
    args.proof = getattr(getattr(response, "attestation", None), "proof", "")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    code = asyncio.run(_call(args))
    if code == 0 and args.save_proof and args.proof:
        Path(args.save_proof).write_text(args.proof + "\n")
        print(f"proof saved to {args.save_proof}", file=sys.stderr)
    return code


def _add_call(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "call",
        help="call the gateway over mutual TLS as an approval system",
        description="Call a running gateway. `what` is household, social-security, property "
        "(the typed record RPCs), evidence (GetEvidence: any evidence type of the catalogue, "
        "--type CODE), claims (VerifyClaims), items (ListServiceItems) or types "
        "(ListEvidenceTypes: what the caller may ask, by item) or item (CheckItem: every "
        "requirement of --item decided in one call; other persons by --party ROLE=ID).",
        epilog="example: proofless call household --as quangang-window --item housing-transfer "
        "--case QG-2026-000123 --purpose 'buyer residence check' --id-number 350505... "
        "--fields name,region_code,status --save-proof proof.jws",
    )
    p.add_argument("what", choices=[*RECORD_RPCS, "evidence", "claims", "item", "items", "types"])
    _add_config(p)
    p.add_argument("--address", help="host:port (default: [server] listen of --config)")
    p.add_argument(
        "--as",
        dest="as_caller",
        default="quangang-window",
        help="use the dev certificate certs/dev/clients/<caller>.pem (default %(default)s)",
    )
    p.add_argument(
        "--certs", type=Path, default=Path("certs/dev"), help="dev certificate directory"
    )
    p.add_argument("--cert", type=Path, help="client certificate (PEM) instead of --as")
    p.add_argument("--key", type=Path, help="client private key (PEM) instead of --as")
    p.add_argument("--ca", type=Path, help="CA certificate that signed the gateway's certificate")
    p.add_argument("--item", help="service item code (事项编码)")
    p.add_argument("--case", help="case id (办件编号)")
    p.add_argument("--purpose", help="why the data is needed")
    p.add_argument("--consent", help="consent token (compact JWS), where the item requires one")
    p.add_argument("--id-number", help="the applicant's 18-character resident ID number")
    p.add_argument(
        "--credit-code", help="an organisation's unified social credit code (GB 32100-2015)"
    )
    p.add_argument("--type", help="evidence: the catalogue's evidence type code")
    p.add_argument("--name", help="the applicant's name (checked against the record)")
    p.add_argument("--fields", help="comma-separated read mask, e.g. name,region_code")
    p.add_argument(
        "--claim",
        action="append",
        help="a claim TYPE[:k=v,...], repeatable, e.g. property.ownership:owns=false",
    )
    p.add_argument(
        "--party",
        action="append",
        help="item: another person the item names, ROLE=ID_NUMBER (or ROLE=CREDIT_CODE), "
        "repeatable, e.g. member=350102...",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="deadline in seconds")
    p.add_argument("--request-id", help="x-request-id to send (echoed in the audit log)")
    p.add_argument("--save-proof", help="write the proof (compact JWS) to this file")
    p.set_defaults(func=cmd_call)


# ---- proof verify ---------------------------------------------------------------------------


def cmd_proof_verify(args: argparse.Namespace) -> int:
    from gateway.cli.proof import check_proof_file

    report = check_proof_file(Path(args.file), args.jwks)
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


def _add_proof(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("proof", help="work with signed proofs (电子证明)")
    psub = p.add_subparsers(dest="proof_command", required=True)
    v = psub.add_parser(
        "verify",
        help="verify a proof offline against a JWKS",
        description="Check a proof's EdDSA signature with the published JWKS (a file, or the "
        "gateway's https/http /.well-known/jwks.json URL) and that its digest matches the "
        "disclosed data. Prints the verified payload; exits 1 if anything fails.",
    )
    v.add_argument("file", help="file holding the compact JWS ('-' for standard input)")
    v.add_argument("--jwks", required=True, help="JWKS file or URL")
    v.set_defaults(func=cmd_proof_verify)


# ---- demo -----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.devtools.demo import run_demo

    return run_demo(args.config)


# ---- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from gateway.cli.audit import add_audit_commands
    from gateway.cli.certs import add_commands as add_pki_commands
    from gateway.cli.rules import add_commands as add_rules_commands

    parser = argparse.ArgumentParser(
        prog="proofless",
        description="Proofless: the data-sharing gateway for certificate-free government "
        "services. Approval systems call it over mutual-TLS gRPC for verified household, "
        "social-security and property records; every answer carries a signed proof and every "
        "access lands in a tamper-evident audit log.",
    )
    parser.add_argument("--version", action="version", version=f"proofless {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, func, help_text in (
        ("serve", cmd_serve, "run the gateway (gRPC + ops HTTP) until SIGTERM/Ctrl-C"),
        ("simulators", cmd_simulators, "run the embedded department simulators"),
        ("dev", cmd_dev, "run the simulators and the gateway together (what `make run` does)"),
        ("demo", cmd_demo, "a scripted tour of approval-system calls on a fresh gateway"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_config(p)
        if name != "demo":
            p.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
        if name == "serve":
            p.add_argument(
                "--workers",
                type=int,
                default=1,
                metavar="N",
                help="N gateway processes sharing the gRPC port (SO_REUSEPORT), each with its "
                "own audit shard <audit.dir>/worker-<i>, origin <origin>/worker-<i> and ops "
                "port ops_listen+i (default 1: one process, no supervisor)",
            )
        p.set_defaults(func=func)
    _add_call(sub)
    _add_proof(sub)
    add_pki_commands(sub)
    add_rules_commands(sub)
    add_audit_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ProoflessError as err:
        print(f"proofless: {err.diagnostics()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `proofless audit replay DIR | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
