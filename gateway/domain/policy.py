"""Access policy, the "use-licence list" (用证清单): which caller may use which service item
(事项), and for it which records, fields and claims, with or without consent and purpose.

Deny by default: a caller, item, record type, field or claim not named in the file is refused.
The file is TOML; its version is the SHA-256 of its bytes, recorded with every audit entry.

    [callers.<caller-id>]                 # the id in the certificate's urn:proofless:caller: SAN
    name = "泉港区行政服务中心综合窗口"
    roles = ["approval"]                  # approval | auditor | portal | witness
    rate = { per_second = 100, burst = 200 }   # optional; else [defaults].rate

    [items.<item-code>]                   # 事项编码
    name = "二手房交易及不动产转移登记"
    callers = ["quangang-window"]         # approval callers only
    purpose_required = true
    consent_required = false
    covert_embargo_days = 0               # > 0: hidden from the citizen portal for that long
    claims = ["property.ownership"]       # from CLAIM_TYPES
    [items.<item-code>.records]
    property = ["certificate_number", "location"]   # top-level fields of proofless.v1 records

Parsing validates everything (field names against the generated descriptors) and precomputes
every decision into frozensets, because decisions run on every request. `parse_policy` is pure;
`load_policy` is the thin file-reading shell (reloading lives in gateway.config.reload).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.domain.errors import ConfigError, PermissionDenied
from gateway.domain.vocabulary import ROLES
from proofless.v1 import verification_pb2

#: record type → the proofless.v1 message whose top-level fields a grant may name
RECORD_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "household": "HouseholdRecord",
        "social_security": "SocialSecurityRecord",
        "property": "PropertyRecord",
    }
)


def _message_fields(message: str) -> frozenset[str]:
    descriptor = verification_pb2.DESCRIPTOR.message_types_by_name[message]
    return frozenset(f.name for f in descriptor.fields)


#: record type → every top-level field name it has
RECORD_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {kind: _message_fields(message) for kind, message in RECORD_MESSAGES.items()}
)

#: The claim catalogue (DESIGN.md "API contract").
CLAIM_TYPES = frozenset(
    {
        "household.residence",
        "household.kinship",
        "social_security.contribution",
        "property.ownership",
        "property.encumbrance",
    }
)

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_PATH_SEGMENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_MAX_EMBARGO_DAYS = 3650


@dataclass(frozen=True)
class RateLimit:
    """Token bucket: `per_second` tokens refill, at most `burst` saved up."""

    per_second: float
    burst: int


DEFAULT_RATE = RateLimit(per_second=50.0, burst=100)


@dataclass(frozen=True)
class CallerPolicy:
    id: str
    name: str
    roles: frozenset[str]
    rate: RateLimit


@dataclass(frozen=True)
class ServiceItem:
    """A service item (事项) and what using it entitles a listed caller to."""

    code: str
    name: str
    callers: frozenset[str]
    records: Mapping[str, frozenset[str]]  # record type → allowed top-level fields
    claims: frozenset[str]
    purpose_required: bool
    consent_required: bool
    covert_embargo_days: int


@dataclass(frozen=True)
class Policy:
    version: str  # hex SHA-256 of the file bytes
    source: str
    callers: Mapping[str, CallerPolicy]
    items: Mapping[str, ServiceItem]
    # (caller, item) → the item, for callers on it: one dict lookup per decision
    _grants: Mapping[tuple[str, str], ServiceItem] = field(repr=False, compare=False)
    _by_caller: Mapping[str, tuple[ServiceItem, ...]] = field(repr=False, compare=False)

    # ---- lookups ------------------------------------------------------------------------

    def item(self, code: str) -> ServiceItem | None:
        return self.items.get(code)

    def caller(self, caller_id: str) -> CallerPolicy | None:
        return self.callers.get(caller_id)

    def items_for(self, caller_id: str) -> tuple[ServiceItem, ...]:
        """The items `caller_id` may use, by code (ListServiceItems)."""
        return self._by_caller.get(caller_id, ())

    # ---- decisions ----------------------------------------------------------------------

    def _grant(self, caller_id: str, item_code: str) -> ServiceItem:
        granted = self._grants.get((caller_id, item_code))
        if granted is not None:
            return granted
        if caller_id not in self.callers:
            raise PermissionDenied("caller is not in the policy", reason="CALLER_UNKNOWN")
        if item_code not in self.items:
            raise PermissionDenied("service item is not in the policy", reason="ITEM_UNKNOWN")
        raise PermissionDenied(
            f"caller {caller_id} may not use service item {item_code}", reason="ITEM_NOT_ALLOWED"
        )

    def authorize_record(
        self,
        caller_id: str,
        item_code: str,
        record_type: str,
        requested_fields: Sequence[str] | Iterable[str],
    ) -> frozenset[str]:
        """The field paths that may leave: requested ∩ allowed (nothing requested = all allowed).

        A dotted path (`members.name`) is allowed when its top-level field is. Raises
        PermissionDenied: CALLER_UNKNOWN, ITEM_UNKNOWN, ITEM_NOT_ALLOWED, RECORD_NOT_ALLOWED,
        FIELD_NOT_ALLOWED (nothing requested is allowed).
        """
        item = self._grant(caller_id, item_code)
        allowed = item.records.get(record_type)
        if allowed is None:
            raise PermissionDenied(
                f"service item {item_code} does not grant {record_type} records",
                reason="RECORD_NOT_ALLOWED",
            )
        requested = tuple(requested_fields)
        if not requested:
            return allowed
        out = frozenset(p for p in requested if p in allowed or _allowed_subpath(p, allowed))
        if not out:
            raise PermissionDenied(
                f"none of the requested {record_type} fields is allowed for {item_code}",
                reason="FIELD_NOT_ALLOWED",
            )
        return out

    def authorize_claims(self, caller_id: str, item_code: str, claim_types: Iterable[str]) -> None:
        """None when every claim type is granted; else PermissionDenied (CALLER_UNKNOWN,
        ITEM_UNKNOWN, ITEM_NOT_ALLOWED, CLAIM_NOT_ALLOWED naming the first refused type)."""
        item = self._grant(caller_id, item_code)
        for claim in claim_types:
            if claim not in item.claims:
                shown = claim if claim in CLAIM_TYPES else "an unknown claim type"
                raise PermissionDenied(
                    f"service item {item_code} does not grant {shown}", reason="CLAIM_NOT_ALLOWED"
                )

    def explain(self, caller_id: str, item_code: str, proof: str) -> str:
        """Why `caller_id` may or may not use `proof` (a record or claim type) for the item."""
        try:
            if proof in RECORD_FIELDS:
                fields = self.authorize_record(caller_id, item_code, proof, ())
                item = self.items[item_code]
                return (
                    f"ALLOWED: {caller_id} may read {proof} records for {item_code} "
                    f"({item.name}); fields: {', '.join(sorted(fields))}; "
                    f"{_conditions(item)}; policy {self.version[:12]}"
                )
            if proof in CLAIM_TYPES:
                self.authorize_claims(caller_id, item_code, (proof,))
                item = self.items[item_code]
                return (
                    f"ALLOWED: {caller_id} may verify {proof} for {item_code} ({item.name}); "
                    f"{_conditions(item)}; policy {self.version[:12]}"
                )
        except PermissionDenied as denied:
            return f"DENIED ({denied.reason}): {denied.message}; policy {self.version[:12]}"
        kinds = ", ".join(sorted(RECORD_FIELDS) + sorted(CLAIM_TYPES))
        return f"DENIED (PROOF_UNKNOWN): {proof!r} is neither a record type nor a claim ({kinds})"


def explain_allowed(text: str) -> bool:
    return text.startswith("ALLOWED")


def _conditions(item: ServiceItem) -> str:
    parts = [
        f"consent {'required' if item.consent_required else 'not required'}",
        f"purpose {'required' if item.purpose_required else 'not required'}",
    ]
    if item.covert_embargo_days:
        parts.append(f"covert: hidden from the citizen for {item.covert_embargo_days} days")
    return ", ".join(parts)


def _allowed_subpath(path: str, allowed: frozenset[str]) -> bool:
    head, dot, _ = path.partition(".")
    return bool(dot) and head in allowed and all(_PATH_SEGMENT.match(s) for s in path.split("."))


# ---- parsing ----------------------------------------------------------------------------


class _Reader:
    """Typed access to one TOML table with precise errors: file, table, key."""

    def __init__(self, source: str, table: str, data: Any) -> None:
        self.source, self.table = source, table
        if not isinstance(data, dict):
            self.fail(None, "must be a table")
        self.data: dict[str, Any] = data

    def fail(self, key: str | None, problem: str) -> None:
        where = f"{self.source}: [{self.table}]" + (f" key '{key}'" if key else "")
        raise ConfigError(f"{where}: {problem}")

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail(key, f"unknown key; expected one of {', '.join(allowed)}")

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is required")
            return default
        value = self.data[key]
        # a TOML boolean is never a number here (bool is an int in Python); an integer is a
        # fine number where a float is expected
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            self.fail(key, f"must be {_TOML_TYPES.get(kind, kind.__name__)}")
        return value

    def strings(self, key: str, default: Any = ...) -> list[str]:
        value = self.get(key, list, default)
        if not all(isinstance(v, str) for v in value):
            self.fail(key, "must be an array of strings")
        if len(set(value)) != len(value):
            self.fail(key, "lists a value twice")
        return list(value)


_TOML_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "a table",
}


def _parse_rate(r: _Reader, key: str, default: RateLimit) -> RateLimit:
    if key not in r.data:
        return default
    rate = _Reader(r.source, f"{r.table}.{key}", r.get(key, dict))
    rate.only("per_second", "burst")
    per_second = float(rate.get("per_second", float))
    burst = rate.get("burst", int)
    if not per_second > 0:
        rate.fail("per_second", "must be greater than 0")
    if burst < 1:
        rate.fail("burst", "must be at least 1")
    return RateLimit(per_second=per_second, burst=burst)


def parse_policy(data: bytes, source: str) -> Policy:
    """Parse and validate a policy file's bytes; `source` names it in error messages."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    top = _Reader(source, "", doc)
    for key in top.data:
        if key not in ("defaults", "callers", "items"):
            raise ConfigError(
                f"{source}: unknown top-level key '{key}'; expected defaults, callers, items"
            )
    default_rate = DEFAULT_RATE
    if "defaults" in doc:
        defaults = _Reader(source, "defaults", doc["defaults"])
        defaults.only("rate")
        default_rate = _parse_rate(defaults, "rate", DEFAULT_RATE)

    callers: dict[str, CallerPolicy] = {}
    for caller_id, raw in _Reader(source, "callers", doc.get("callers", {})).data.items():
        r = _Reader(source, f"callers.{caller_id}", raw)
        if not _ID.match(caller_id):
            r.fail(None, "caller id must be 1-63 of a-z 0-9 . _ - (as in the certificate SAN)")
        r.only("name", "roles", "rate")
        roles = r.strings("roles")
        for role in roles:
            if role not in ROLES:
                r.fail("roles", f"unknown role {role!r}; expected {', '.join(sorted(ROLES))}")
        if not roles:
            r.fail("roles", "must name at least one role")
        callers[caller_id] = CallerPolicy(
            id=caller_id,
            name=r.get("name", str),
            roles=frozenset(roles),
            rate=_parse_rate(r, "rate", default_rate),
        )

    items: dict[str, ServiceItem] = {}
    for code, raw in _Reader(source, "items", doc.get("items", {})).data.items():
        items[code] = _parse_item(source, code, raw, callers)

    grants: dict[tuple[str, str], ServiceItem] = {}
    by_caller: dict[str, list[ServiceItem]] = {}
    for code in sorted(items):
        item = items[code]
        for caller_id in item.callers:
            grants[(caller_id, code)] = item
            by_caller.setdefault(caller_id, []).append(item)
    return Policy(
        version=hashlib.sha256(data).hexdigest(),
        source=source,
        callers=MappingProxyType(callers),
        items=MappingProxyType(items),
        _grants=MappingProxyType(grants),
        _by_caller=MappingProxyType({c: tuple(v) for c, v in by_caller.items()}),
    )


def _parse_item(
    source: str, code: str, raw: Any, callers: Mapping[str, CallerPolicy]
) -> ServiceItem:
    r = _Reader(source, f"items.{code}", raw)
    if not _ID.match(code):
        r.fail(None, "item code must be 1-63 of a-z 0-9 . _ -")
    r.only(
        "name",
        "callers",
        "purpose_required",
        "consent_required",
        "covert_embargo_days",
        "claims",
        "records",
    )
    item_callers = r.strings("callers")
    for caller_id in item_callers:
        known = callers.get(caller_id)
        if known is None:
            r.fail("callers", f"names caller {caller_id!r}, which has no [callers.{caller_id}]")
        elif "approval" not in known.roles:
            r.fail("callers", f"caller {caller_id!r} lacks the approval role")
    claims = r.strings("claims", [])
    for claim in claims:
        if claim not in CLAIM_TYPES:
            expected = ", ".join(sorted(CLAIM_TYPES))
            r.fail("claims", f"unknown claim type {claim!r}; expected {expected}")
    embargo = r.get("covert_embargo_days", int, 0)
    if not 0 <= embargo <= _MAX_EMBARGO_DAYS:
        r.fail("covert_embargo_days", f"must be between 0 and {_MAX_EMBARGO_DAYS}")
    records: dict[str, frozenset[str]] = {}
    rec = _Reader(source, f"items.{code}.records", r.get("records", dict, {}))
    for kind in rec.data:
        if kind not in RECORD_FIELDS:
            rec.fail(kind, f"unknown record type; expected {', '.join(sorted(RECORD_FIELDS))}")
        names = rec.strings(kind)
        if not names:
            rec.fail(kind, "grants no field; remove the record type instead")
        for name in names:
            if name not in RECORD_FIELDS[kind]:
                rec.fail(
                    kind,
                    f"unknown field {name!r} of {RECORD_MESSAGES[kind]}; expected "
                    + ", ".join(sorted(RECORD_FIELDS[kind])),
                )
        records[kind] = frozenset(names)
    if not records and not claims:
        r.fail(None, "grants neither records nor claims")
    return ServiceItem(
        code=code,
        name=r.get("name", str),
        callers=frozenset(item_callers),
        records=MappingProxyType(records),
        claims=frozenset(claims),
        purpose_required=r.get("purpose_required", bool, False),
        consent_required=r.get("consent_required", bool, False),
        covert_embargo_days=embargo,
    )


# ---- the file shell ---------------------------------------------------------------------


def load_policy(path: Path | str) -> Policy:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read policy: {exc.strerror}") from exc
    return parse_policy(data, str(p))
