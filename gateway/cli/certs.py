"""`proofless certs|consent`: the command-line faces of the dev CA (gateway.devtools.pki), the
proof-signing key's rotation (gateway.crypto.keys) and consent tokens (gateway.crypto.consent).
Each command returns an exit code; a ProoflessError becomes its diagnostics on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.crypto import citizen, consent, keys
from gateway.devtools import pki
from gateway.domain.errors import ProoflessError
from gateway.domain.vocabulary import ROLES

Command = Callable[[argparse.Namespace], int]


def _guarded(func: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ProoflessError as err:
            print(f"proofless: {err.diagnostics()}", file=sys.stderr)
            return 1

    run.__doc__ = func.__doc__
    return run


def _help_of(parser: argparse.ArgumentParser) -> Command:
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


# ---- certs ------------------------------------------------------------------------------


def cmd_certs_init(args: argparse.Namespace) -> int:
    dev = pki.init_dev_pki(args.dir)
    print(f"dev PKI ready in {dev.dir}")
    for e in pki.list_certs(dev.dir):
        print(f"  {e.kind:6} {e.subject:22} {e.role:9} {e.path}")
    return 0


def cmd_certs_issue(args: argparse.Namespace) -> int:
    issued = pki.issue_client(args.dir, args.caller, args.role, days=args.days)
    print(f"issued {issued.cert_path} (key {issued.key_path})")
    print(f"  serial {issued.cert.serial_number:x}")
    print(f"  valid until {issued.cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z")
    return 0


def cmd_certs_revoke(args: argparse.Namespace) -> int:
    serial = int(args.serial, 16) if args.serial else None
    for e in pki.revoke(args.dir, args.caller, serial=serial):
        print(f"revoked {e.subject} serial {e.serial:x}")
    print(f"CRL re-signed: {pki.DevPki(Path(args.dir)).ca_crl}")
    return 0


def cmd_certs_list(args: argparse.Namespace) -> int:
    print(f"{'caller':22} {'role':9} {'serial':40} {'not_after':17} revoked")
    for e in pki.list_certs(args.dir):
        revoked = e.revoked_at.strftime("%Y-%m-%d %H:%M") if e.revoked_at else "-"
        print(
            f"{e.subject:22} {e.role or e.kind:9} {e.serial:<40x} "
            f"{e.not_after:%Y-%m-%d %H:%M} {revoked}"
        )
    return 0


def cmd_certs_crl(args: argparse.Namespace) -> int:
    crl = pki.write_crl(args.dir, days=args.days)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    print(f"CRL #{number} written to {pki.DevPki(Path(args.dir)).ca_crl}")
    print(f"  this update {crl.last_update_utc:%Y-%m-%d %H:%M}Z")
    if crl.next_update_utc is not None:
        print(f"  next update {crl.next_update_utc:%Y-%m-%d %H:%M}Z")
    for revoked in crl:
        print(f"  revoked {revoked.serial_number:x} at {revoked.revocation_date_utc:%Y-%m-%d}")
    return 0


def cmd_certs_rotate_proof_key(args: argparse.Namespace) -> int:
    key = Path(args.key) if args.key else pki.DevPki(Path(args.dir)).proof_signing_key
    retired_dir = Path(args.retired) if args.retired else key.parent / keys.RETIRED_PROOF_KEYS_DIR
    retired, new_kid = keys.rotate_proof_key(key, retired_dir, grace_s=args.grace)
    until = datetime.fromtimestamp(retired.retired_at, UTC)
    print(f"retired proof-signing key {retired.kid}")
    print(f"  published in {retired_dir / (retired.kid + keys.RETIRED_KEY_SUFFIX)}")
    print(f"  covers proofs issued before {until:%Y-%m-%d %H:%M:%S}Z")
    print(f"new proof-signing key {new_kid} in {key}")
    print("  running gateways pick it up within seconds (they watch the key files) or on restart")
    return 0


def _add_certs(sub: Any) -> None:
    certs = sub.add_parser(
        "certs",
        help="dev CA, server and caller certificates, CRL, signing keys",
        description="Manage a certificate directory: the CA, the gateway's server certificate, "
        "client certificates whose URI SANs name the caller (urn:proofless:caller:<id>) and its "
        "role, the CRL, and the Ed25519 keys and secrets the gateway reads.",
    )
    certs.set_defaults(func=_help_of(certs))
    cs = certs.add_subparsers(dest="certs_command", metavar="ACTION")

    def with_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", default="certs/dev", help="certificate directory (certs/dev)")

    p = cs.add_parser(
        "init",
        help="create whatever of the dev PKI is missing (idempotent)",
        description="Create the dev CA, server certificate (localhost, 127.0.0.1, ::1), one "
        "client certificate per demo caller, an empty CRL and the signing keys and secrets. "
        "Existing files are kept; .complete is written last. Private keys are mode 0600.",
    )
    with_dir(p)
    p.set_defaults(func=_guarded(cmd_certs_init))

    p = cs.add_parser(
        "issue",
        help="issue (or re-issue) a caller's client certificate",
        description="Write clients/<caller>.pem and .key signed by the directory's CA and "
        "record the certificate in index.json.",
    )
    with_dir(p)
    p.add_argument("--caller", required=True, help="caller id, e.g. quangang-window")
    p.add_argument("--role", required=True, choices=sorted(ROLES), help="the caller's role")
    p.add_argument("--days", type=int, default=pki.LEAF_DAYS, help="validity in days (365)")
    p.set_defaults(func=_guarded(cmd_certs_issue))

    p = cs.add_parser(
        "revoke",
        help="revoke a caller's certificates and re-sign the CRL",
        description="Mark the caller's unrevoked certificates (or only --serial) revoked in "
        "index.json and write a new ca.crl. A running gateway picks the CRL up on change.",
    )
    with_dir(p)
    p.add_argument("--caller", required=True, help="caller id")
    p.add_argument("--serial", help="only this serial (hex, as `certs list` shows it)")
    p.set_defaults(func=_guarded(cmd_certs_revoke))

    p = cs.add_parser(
        "list",
        help="list issued certificates",
        description="Every certificate issued from the directory: caller, role, serial, "
        "expiry and revocation.",
    )
    with_dir(p)
    p.set_defaults(func=_guarded(cmd_certs_list))

    p = cs.add_parser(
        "crl",
        help="re-sign the CRL and print it",
        description="Re-sign ca.crl from index.json with the next CRL number and a fresh "
        "next-update time, then print its revoked serials.",
    )
    with_dir(p)
    p.add_argument("--days", type=int, default=pki.CRL_DAYS, help="CRL validity in days (365)")
    p.set_defaults(func=_guarded(cmd_certs_crl))

    p = cs.add_parser(
        "rotate-proof-key",
        help="retire the proof-signing key and make a new one",
        description="Write the current proof-signing key's public JWK, with the time it retires "
        "as 'exp', to the retired-keys directory (which the gateway publishes in its JWKS beside "
        "the current key, so proofs signed before the rotation keep verifying), then replace the "
        "key file with a fresh Ed25519 key (0600). The old private key is not kept. Gateways "
        "watching the files switch within seconds; the grace period covers proofs they sign "
        "with the old key until then.",
    )
    with_dir(p)
    p.add_argument("--key", help="the proof-signing key (default DIR/proof-signing.key)")
    p.add_argument(
        "--retired",
        help=f"retired-keys directory (default {keys.RETIRED_PROOF_KEYS_DIR}/ beside the key); "
        "the gateway's [proofs] retired_keys must name it",
    )
    p.add_argument(
        "--grace",
        type=int,
        default=keys.DEFAULT_ROTATION_GRACE_S,
        metavar="SECONDS",
        help="how long the old key still covers new proofs, for gateways that have not switched "
        f"yet ({keys.DEFAULT_ROTATION_GRACE_S})",
    )
    p.set_defaults(func=_guarded(cmd_certs_rotate_proof_key))


# ---- consent ----------------------------------------------------------------------------


def cmd_consent_issue(args: argparse.Namespace) -> int:
    key = keys.load_ed25519_private_key(args.key)
    token = consent.issue_consent(
        key,
        applicant_id_number=args.id_number,
        caller=args.caller,
        item=args.item,
        case_id=args.case,
        ttl=args.ttl,
    )
    print(token)
    return 0


def cmd_consent_citizen(args: argparse.Namespace) -> int:
    key = keys.load_ed25519_private_key(args.key)
    print(citizen.issue_citizen_token(key, id_number=args.id_number, portal=args.portal))
    return 0


def _add_consent(sub: Any) -> None:
    con = sub.add_parser(
        "consent",
        help="issue consent tokens (授权) for demos and tests",
        description="Consent tokens: the applicant's authorisation, signed by a trusted "
        "consent issuer, for one caller, service item and case.",
    )
    con.set_defaults(func=_help_of(con))
    cs = con.add_subparsers(dest="consent_command", metavar="ACTION")
    p = cs.add_parser(
        "issue",
        help="sign a consent token and print it",
        description="Sign a single-use consent token with the issuer key and print the "
        "compact JWS; pass it as context.consent_token.",
    )
    p.add_argument("--key", default="certs/dev/consent-issuer.key", help="issuer Ed25519 key")
    p.add_argument("--id-number", required=True, help="the applicant's 18-character ID number")
    p.add_argument("--caller", required=True, help="the approval system's caller id")
    p.add_argument("--item", required=True, help="service item code")
    p.add_argument("--case", required=True, help="case id (办件编号)")
    p.add_argument(
        "--ttl",
        type=int,
        default=consent.DEFAULT_TTL,
        help=f"lifetime in seconds ({consent.DEFAULT_TTL}; at most {consent.MAX_LIFETIME})",
    )
    p.set_defaults(func=_guarded(cmd_consent_issue))
    p = cs.add_parser(
        "citizen",
        help="sign a citizen token for a portal and print it",
        description="Sign a citizen token (the identity provider's word that this citizen is "
        "logged in at this portal) and print the compact JWS; pass it as "
        "ListAccessesRequest.citizen_token. Valid for "
        f"{citizen.DEFAULT_TTL} seconds.",
    )
    p.add_argument("--key", default="certs/dev/consent-issuer.key", help="issuer Ed25519 key")
    p.add_argument("--id-number", required=True, help="the citizen's 18-character ID number")
    p.add_argument("--portal", default="citizen-portal", help="the portal's caller id")
    p.set_defaults(func=_guarded(cmd_consent_citizen))


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `certs` and `consent` on the `proofless` command."""
    _add_certs(subparsers)
    _add_consent(subparsers)
