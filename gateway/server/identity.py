"""Who is calling: the caller identity carried by the client certificate.

A caller certificate names its system in a URI SAN `urn:proofless:caller:<id>` and may name
its role in `urn:proofless:role:<role>` (approval, auditor, portal, witness). The TLS layer
has already checked the chain against the CA; this module only reads the leaf.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography import x509

from gateway.crypto.keys import IssuerKey, issuer_of
from gateway.domain.errors import PermissionDenied, Unauthenticated

CALLER_URI_PREFIX = "urn:proofless:caller:"
ROLE_URI_PREFIX = "urn:proofless:role:"
#: the whole id, matched with fullmatch: `$` also matches before a final newline, which let
#: `urn:proofless:caller:<id>\n` through as a caller id of its own
_CALLER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Caller:
    id: str
    roles: frozenset[str]
    serial: int
    not_after: datetime
    #: the issuing CA (name DER, key identifier): revocation is by (issuer, serial)
    issuer: IssuerKey = (b"", b"")


@lru_cache(maxsize=4096)
def caller_from_pem(pem: bytes) -> Caller:
    """Parse a leaf certificate once; the same PEM arrives on every call of a connection."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as exc:
        raise Unauthenticated("client certificate has no usable identity") from exc
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    ids = [u.removeprefix(CALLER_URI_PREFIX) for u in uris if u.startswith(CALLER_URI_PREFIX)]
    if len(ids) != 1 or not _CALLER_ID.fullmatch(ids[0]):
        raise Unauthenticated(
            "client certificate must carry exactly one URI SAN urn:proofless:caller:<id>",
            reason="NO_CALLER_IDENTITY",
        )
    roles = frozenset(
        u.removeprefix(ROLE_URI_PREFIX) for u in uris if u.startswith(ROLE_URI_PREFIX)
    )
    return Caller(
        id=ids[0],
        roles=roles,
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
        issuer=issuer_of(cert),
    )


current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("proofless_caller")


def require_role(role: str) -> Caller:
    """The current call's caller, if its certificate names `role`; else PERMISSION_DENIED."""
    caller = current_caller.get()
    if role not in caller.roles:
        raise PermissionDenied(f"this RPC needs the {role} role", reason="ROLE_NOT_ALLOWED")
    return caller
