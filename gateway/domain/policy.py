"""Access policy, the "use-licence list" (用证清单): which caller may use which service item
(事项), and for it which evidence, fields and claims, with which parameters, with or without
consent and purpose.

Deny by default: a caller, item, evidence type, field or claim not named in the file is
refused. The file names evidence types, fields and claims of the evidence catalogue; a policy
naming one the catalogue lacks does not load (`gateway.domain.policy_file` parses it against
the catalogue's `Vocabulary`). Decisions run on every request, so parsing precomputes them
into frozensets and dicts. Pure.

Claims are oracles as much as records are: a caller allowed `social_security.contribution`
could rebuild a month-by-month history from one-month windows. So an item constrains each
claim's parameters (fixed values, allowed sets, ranges, or bound to the item's own region),
bounds how often one claim type may repeat in one request (once, unless the item says more),
and every caller has a budget of calls per subject and day (gateway.server.ratelimit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.domain.errors import PermissionDenied
from gateway.domain.requirements import ItemRequirements


class Vocabulary(Protocol):
    """What the policy needs to know of the evidence catalogue."""

    @property
    def version(self) -> str: ...

    def evidence_fields(self, code: str) -> frozenset[str] | None:
        """The top-level fields of an evidence type, or None when there is no such type."""
        ...

    def claim_params(self, code: str) -> Mapping[str, str] | None:
        """A claim's parameters (name → type), or None when there is no such claim."""
        ...

    def codes(self) -> tuple[frozenset[str], frozenset[str]]:
        """Every evidence type and every claim the catalogue declares."""
        ...


@dataclass(frozen=True)
class RateLimit:
    """Token bucket: `per_second` tokens refill, at most `burst` saved up."""

    per_second: float
    burst: int


DEFAULT_RATE = RateLimit(per_second=50.0, burst=100)
#: calls about one subject that one caller may make in a day (each claim counts as one)
DEFAULT_SUBJECT_BUDGET = RateLimit(per_second=200 / 86400, burst=200)


@dataclass(frozen=True)
class CallerPolicy:
    id: str
    name: str
    roles: frozenset[str]
    rate: RateLimit
    subject_budget: RateLimit = DEFAULT_SUBJECT_BUDGET


_UNSET: Any = object()


@dataclass(frozen=True)
class ParamConstraint:
    """What an item allows for one claim parameter. `fixed` (or `item_attribute`, a value
    of the item such as its region) pins it: the caller may leave it out or send exactly
    that. `allowed` is a closed set; `minimum`/`maximum` bound integers and, compared as
    text, months and dates."""

    fixed: Any = _UNSET
    item_attribute: str = ""
    allowed: frozenset[Any] | None = None
    minimum: Any = None
    maximum: Any = None

    def describe(self) -> str:
        if self.fixed is not _UNSET:
            return f"fixed to {_show(self.fixed)}" if self.fixed != "" else "must be left out"
        if self.item_attribute:
            return f"fixed to the item's {self.item_attribute}"
        parts = []
        if self.allowed is not None:
            parts.append("one of " + ", ".join(sorted(map(_show, self.allowed))))
        if self.minimum is not None:
            parts.append(f"at least {self.minimum}")
        if self.maximum is not None:
            parts.append(f"at most {self.maximum}")
        return "; ".join(parts) or "any"


def _show(value: Any) -> str:
    """A policy value as the policy file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class ClaimGrant:
    """A claim an item grants, how often it may repeat in one request, and its parameters'
    constraints (parameters not named are free within the claim's own types)."""

    code: str
    repeat: int = 1
    params: Mapping[str, ParamConstraint] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceItem:
    """A service item (事项) and what using it entitles a listed caller to."""

    code: str
    name: str
    callers: frozenset[str]
    records: Mapping[str, frozenset[str]]  # evidence type → allowed top-level fields
    claims: Mapping[str, ClaimGrant]
    purpose_required: bool
    consent_required: bool
    covert_embargo_days: int
    attributes: Mapping[str, str] = field(default_factory=dict)  # e.g. region = "350505"
    requirements: ItemRequirements = field(default_factory=ItemRequirements)  # CheckItem


@dataclass(frozen=True)
class Policy:
    version: str  # hex SHA-256 of the file bytes
    source: str
    catalogue: str  # version of the catalogue it was checked against
    evidence_types: frozenset[str]  # the catalogue's, for explanations
    claim_types: frozenset[str]
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
        """The items `caller_id` may use, by code."""
        return self._by_caller.get(caller_id, ())

    def has_role(self, caller_id: str, role: str) -> bool:
        caller = self.callers.get(caller_id)
        return caller is not None and role in caller.roles

    # ---- decisions ----------------------------------------------------------------------

    def grant(self, caller_id: str, item_code: str) -> ServiceItem:
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

        Raises PermissionDenied: CALLER_UNKNOWN, ITEM_UNKNOWN, ITEM_NOT_ALLOWED,
        RECORD_NOT_ALLOWED, FIELD_NOT_ALLOWED (nothing requested is allowed).
        """
        item = self.grant(caller_id, item_code)
        allowed = item.records.get(record_type)
        if allowed is None:
            raise PermissionDenied(
                f"service item {item_code} does not grant {record_type} records",
                reason="RECORD_NOT_ALLOWED",
            )
        requested = tuple(requested_fields)
        if not requested:
            return allowed
        out = frozenset(p for p in requested if p in allowed)
        if not out:
            raise PermissionDenied(
                f"none of the requested {record_type} fields is allowed for {item_code}",
                reason="FIELD_NOT_ALLOWED",
            )
        return out

    def authorize_claims(
        self,
        caller_id: str,
        item_code: str,
        claims: Sequence[tuple[str, Mapping[str, Any]]],
        effective: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Each claim's parameters as the item allows them (pinned values filled in), or
        PermissionDenied: CLAIM_NOT_ALLOWED (naming the first refused type), CLAIM_REPEATED,
        CLAIM_PARAMS_NOT_ALLOWED (naming the parameter and the rule, never the value).

        `claims` holds the values as the caller gave them; `effective`, one per claim, the
        values the rule will use (the catalogue's defaults filled in), so that leaving a
        parameter out cannot step around an `in`, `min` or `max` rule."""
        item = self.grant(caller_id, item_code)
        counts: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for n, (code, values) in enumerate(claims):
            grant = item.claims.get(code)
            if grant is None:
                # a type the catalogue lacks is caller text, never quoted back
                shown = code if code in self.claim_types else "an unknown claim type"
                raise PermissionDenied(
                    f"service item {item_code} does not grant {shown}", reason="CLAIM_NOT_ALLOWED"
                )
            counts[code] = counts.get(code, 0) + 1
            if counts[code] > grant.repeat:
                raise PermissionDenied(
                    f"service item {item_code} allows {code} at most {grant.repeat} time(s) "
                    "per request",
                    reason="CLAIM_REPEATED",
                )
            defaults = effective[n] if effective is not None else {}
            out.append(_constrained(item, grant, dict(values), defaults))
        return out

    def explain(self, caller_id: str, item_code: str, proof: str) -> str:
        """Why `caller_id` may or may not use `proof` (an evidence or claim type) for the item."""
        try:
            item = self.grant(caller_id, item_code)
        except PermissionDenied as denied:
            return f"DENIED ({denied.reason}): {denied.message}; policy {self.version[:12]}"
        if proof in item.records:
            fields = ", ".join(sorted(item.records[proof]))
            return (
                f"ALLOWED: {caller_id} may read {proof} records for {item_code} "
                f"({item.name}); fields: {fields}; {_conditions(item)}; "
                f"policy {self.version[:12]}"
            )
        grant = item.claims.get(proof)
        if grant is not None:
            limits = "; ".join(f"{n} {c.describe()}" for n, c in sorted(grant.params.items()))
            return (
                f"ALLOWED: {caller_id} may verify {proof} for {item_code} ({item.name}), "
                f"at most {grant.repeat} per request"
                + (f"; parameters: {limits}" if limits else "")
                + f"; {_conditions(item)}; policy {self.version[:12]}"
            )
        if proof in self.claim_types:
            reason = "CLAIM_NOT_ALLOWED"
        elif proof in self.evidence_types:
            reason = "RECORD_NOT_ALLOWED"
        else:
            known = ", ".join(sorted(self.evidence_types | self.claim_types))
            return (
                f"DENIED (PROOF_UNKNOWN): {proof!r} is neither an evidence type nor a claim "
                f"({known})"
            )
        return (
            f"DENIED ({reason}): service item {item_code} does not grant {proof}; "
            f"policy {self.version[:12]}"
        )


def _constrained(
    item: ServiceItem, grant: ClaimGrant, values: dict[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    for name, rule in grant.params.items():
        value = values.get(name)
        pinned = item.attributes.get(rule.item_attribute, "") if rule.item_attribute else rule.fixed
        if pinned is not _UNSET:
            if value is None or value == "":
                values[name] = pinned if pinned != "" else None
                continue
            if value != pinned:
                raise _param_denied(grant.code, name, rule)
            continue
        if value is None:
            value = defaults.get(name)  # left out: the default the rule would use
            if value is None or value == "":
                continue  # no default either: the claim's own meaning ("anywhere")
        if rule.allowed is not None and value not in rule.allowed:
            raise _param_denied(grant.code, name, rule)
        if rule.minimum is not None and value < rule.minimum:
            raise _param_denied(grant.code, name, rule)
        if rule.maximum is not None and value > rule.maximum:
            raise _param_denied(grant.code, name, rule)
    return values


def _param_denied(claim: str, name: str, rule: ParamConstraint) -> PermissionDenied:
    return PermissionDenied(
        f"{claim}: parameter {name} {rule.describe()} for this service item",
        reason="CLAIM_PARAMS_NOT_ALLOWED",
    )


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


UNSET = _UNSET

__all__ = [
    "DEFAULT_RATE",
    "DEFAULT_SUBJECT_BUDGET",
    "UNSET",
    "CallerPolicy",
    "ClaimGrant",
    "ParamConstraint",
    "Policy",
    "RateLimit",
    "ServiceItem",
    "Vocabulary",
    "explain_allowed",
]
