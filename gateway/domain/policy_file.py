"""Reading the policy file (TOML) into a `Policy`, checked against the evidence catalogue.

    [defaults]
    rate = { per_second = 20, burst = 40 }         # per caller, unless the caller says
    subject_budget = { per_day = 200 }             # calls about one subject per caller a day

    [callers.<caller-id>]                          # the id in the certificate's caller SAN
    name = "泉港区行政服务中心综合窗口"
    roles = ["approval"]                           # approval | auditor | portal | witness
    rate = { per_second = 100, burst = 200 }

    [items.<item-code>]                            # 事项编码
    name = "二手房交易及不动产转移登记"
    callers = ["quangang-window"]                  # approval callers only
    purpose_required = true
    consent_required = false
    covert_embargo_days = 0                        # > 0: hidden from the citizen that long
    region = "350505"                              # item attributes a constraint may use
    claims = ["property.ownership"]                # catalogue claims, parameters free
    [items.<item-code>.records]
    property = ["certificate_number", "location"]  # catalogue evidence types and fields
    [items.<item-code>.claim."household.residence"]  # a claim with constraints
    repeat = 1                                     # times per request (default 1)
    params.region = { item = "region" }            # fixed | item | in | min | max
    [items.<item-code>.requires.<name>]            # what CheckItem decides in one call
    claim = "marriage.status"                      # a claim, its parameters from the policy,
    params = { status = "married", spouse = { party = "spouse" }, region = { item = "region" } }
    [items.<item-code>.requires.<name>]            # or evidence fields to prefill the form
    prefill = "household"
    fields = ["name", "address"]
    [items.<item-code>.groups.<name>]              # all-of / any-of, of requirements and groups
    any = ["<requirement>", "<group>"]
    [items.<item-code>]
    decide = "<group or requirement>"              # the item's verdict (default: all claims)

Every error names file, table and key; the file's version is the SHA-256 of its bytes,
recorded with every audit entry. `parse_policy` is pure; `load_policy` reads the file.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.domain.errors import ConfigError
from gateway.domain.policy import (
    DEFAULT_RATE,
    DEFAULT_SUBJECT_BUDGET,
    UNSET,
    CallerPolicy,
    ClaimGrant,
    ParamConstraint,
    Policy,
    RateLimit,
    ServiceItem,
    Vocabulary,
)
from gateway.domain.requirements import (
    Group,
    ItemRequirements,
    ParamSource,
    Requirement,
    check_groups,
)
from gateway.domain.vocabulary import ROLES

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
#: an item attribute, a requirement or group, a party role
_ATTRIBUTE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_EMBARGO_DAYS = 3650
_MAX_REPEAT = 16
_TOML_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "a table",
}


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


def _parse_budget(r: _Reader, key: str, default: RateLimit) -> RateLimit:
    if key not in r.data:
        return default
    budget = _Reader(r.source, f"{r.table}.{key}", r.get(key, dict))
    budget.only("per_day")
    per_day = budget.get("per_day", int)
    if per_day < 1:
        budget.fail("per_day", "must be at least 1")
    return RateLimit(per_second=per_day / 86400, burst=per_day)


def parse_policy(data: bytes, source: str, vocabulary: Vocabulary) -> Policy:
    """Parse and validate a policy file's bytes against the catalogue's vocabulary;
    `source` names it in error messages."""
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
    default_rate, default_budget = DEFAULT_RATE, DEFAULT_SUBJECT_BUDGET
    if "defaults" in doc:
        defaults = _Reader(source, "defaults", doc["defaults"])
        defaults.only("rate", "subject_budget")
        default_rate = _parse_rate(defaults, "rate", DEFAULT_RATE)
        default_budget = _parse_budget(defaults, "subject_budget", DEFAULT_SUBJECT_BUDGET)

    callers: dict[str, CallerPolicy] = {}
    for caller_id, raw in _Reader(source, "callers", doc.get("callers", {})).data.items():
        r = _Reader(source, f"callers.{caller_id}", raw)
        if not _ID.fullmatch(caller_id):
            r.fail(None, "caller id must be 1-63 of a-z 0-9 . _ - (as in the certificate SAN)")
        r.only("name", "roles", "rate", "subject_budget")
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
            subject_budget=_parse_budget(r, "subject_budget", default_budget),
        )

    items: dict[str, ServiceItem] = {}
    for code, raw in _Reader(source, "items", doc.get("items", {})).data.items():
        items[code] = _parse_item(source, code, raw, callers, vocabulary)

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
        catalogue=vocabulary.version,
        evidence_types=vocabulary.codes()[0],
        claim_types=vocabulary.codes()[1],
        callers=MappingProxyType(callers),
        items=MappingProxyType(items),
        _grants=MappingProxyType(grants),
        _by_caller=MappingProxyType({c: tuple(v) for c, v in by_caller.items()}),
    )


_ITEM_KEYS = (
    "name",
    "callers",
    "purpose_required",
    "consent_required",
    "covert_embargo_days",
    "claims",
    "claim",
    "records",
    "requires",
    "groups",
    "decide",
)


def _parse_item(
    source: str, code: str, raw: Any, callers: dict[str, CallerPolicy], vocabulary: Vocabulary
) -> ServiceItem:
    r = _Reader(source, f"items.{code}", raw)
    if not _ID.fullmatch(code):
        r.fail(None, "item code must be 1-63 of a-z 0-9 . _ -")
    attributes: dict[str, str] = {}
    for key, value in r.data.items():
        if key in _ITEM_KEYS:
            continue
        if not _ATTRIBUTE.fullmatch(key) or not isinstance(value, str):
            r.fail(
                key, f"unknown key; expected one of {', '.join(_ITEM_KEYS)} or a string attribute"
            )
        attributes[key] = value
    item_callers = r.strings("callers")
    for caller_id in item_callers:
        known = callers.get(caller_id)
        if known is None:
            r.fail("callers", f"names caller {caller_id!r}, which has no [callers.{caller_id}]")
        elif "approval" not in known.roles:
            r.fail("callers", f"caller {caller_id!r} lacks the approval role")
    claims: dict[str, ClaimGrant] = {}
    for claim in r.strings("claims", []):
        if vocabulary.claim_params(claim) is None:
            r.fail("claims", f"the catalogue has no claim {claim!r}")
        claims[claim] = ClaimGrant(claim)
    detailed = _Reader(source, f"items.{code}.claim", r.get("claim", dict, {}))
    for claim, raw_grant in detailed.data.items():
        if claim in claims:
            detailed.fail(claim, "is also listed in claims; list it once")
        grant_table = _Reader(source, f"items.{code}.claim.{claim}", raw_grant)
        claims[claim] = _parse_grant(grant_table, claim, attributes, vocabulary)
    embargo = r.get("covert_embargo_days", int, 0)
    if not 0 <= embargo <= _MAX_EMBARGO_DAYS:
        r.fail("covert_embargo_days", f"must be between 0 and {_MAX_EMBARGO_DAYS}")
    records: dict[str, frozenset[str]] = {}
    rec = _Reader(source, f"items.{code}.records", r.get("records", dict, {}))
    for kind in rec.data:
        known_fields = vocabulary.evidence_fields(kind)
        if known_fields is None:
            rec.fail(kind, "the catalogue has no such evidence type")
        assert known_fields is not None
        names = rec.strings(kind)
        if not names:
            rec.fail(kind, "grants no field; remove the evidence type instead")
        for name in names:
            if name not in known_fields:
                rec.fail(
                    kind,
                    f"unknown field {name!r} of {kind}; expected "
                    + ", ".join(sorted(known_fields)),
                )
        records[kind] = frozenset(names)
    requirements = _parse_requirements(source, code, r, attributes, vocabulary)
    if not records and not claims and not requirements:
        r.fail(None, "grants neither records nor claims, and requires nothing")
    return ServiceItem(
        code=code,
        name=r.get("name", str),
        callers=frozenset(item_callers),
        records=MappingProxyType(records),
        claims=MappingProxyType(claims),
        purpose_required=r.get("purpose_required", bool, False),
        consent_required=r.get("consent_required", bool, False),
        covert_embargo_days=embargo,
        attributes=MappingProxyType(attributes),
        requirements=requirements,
    )


def _parse_requirements(
    source: str, code: str, r: _Reader, attributes: dict[str, str], vocabulary: Vocabulary
) -> ItemRequirements:
    table = _Reader(source, f"items.{code}.requires", r.get("requires", dict, {}))
    requirements: dict[str, Requirement] = {}
    for name, raw in table.data.items():
        if not _ATTRIBUTE.fullmatch(name):
            table.fail(name, "requirement name must be 1-32 of a-z 0-9 _, starting with a letter")
        q = _Reader(source, f"items.{code}.requires.{name}", raw)
        requirements[name] = _parse_requirement(q, name, attributes, vocabulary)
    groups: dict[str, Group] = {}
    gt = _Reader(source, f"items.{code}.groups", r.get("groups", dict, {}))
    for name, raw in gt.data.items():
        g = _Reader(source, f"items.{code}.groups.{name}", raw)
        g.only("all", "any")
        if name in requirements:
            g.fail(None, "a group and a requirement share this name")
        if len(g.data) != 1:
            g.fail(None, "a group is exactly one of all = [...] or any = [...]")
        mode = next(iter(g.data))
        members = g.strings(mode)
        if not members:
            g.fail(mode, "names no member")
        groups[name] = Group(name, mode, tuple(members))
    spec = ItemRequirements(
        MappingProxyType(requirements), MappingProxyType(groups), r.get("decide", str, "")
    )
    problem = check_groups(spec)
    if problem:
        r.fail("groups" if groups else "decide", problem)
    return spec


def _parse_requirement(
    q: _Reader, name: str, attributes: dict[str, str], vocabulary: Vocabulary
) -> Requirement:
    q.only("claim", "params", "prefill", "fields", "subject", "description")
    description = q.get("description", str, "")
    if ("claim" in q.data) == ("prefill" in q.data):
        q.fail(None, 'a requirement is exactly one of claim = "..." or prefill = "..."')
    if "prefill" in q.data:
        evidence = q.get("prefill", str)
        known = vocabulary.evidence_fields(evidence)
        if known is None:
            q.fail("prefill", f"the catalogue has no evidence type {evidence!r}")
        assert known is not None
        fields = q.strings("fields")
        if not fields:
            q.fail("fields", "names no field")
        for f in fields:
            if f not in known:
                q.fail("fields", f"unknown field {f!r} of {evidence}")
        party = _subject_party(q)
        return Requirement(
            name, prefill=evidence, fields=tuple(fields), subject_party=party,
            description=description,
        )  # fmt: skip
    claim = q.get("claim", str)
    kinds = vocabulary.claim_params(claim)
    if kinds is None:
        q.fail("claim", f"the catalogue has no claim {claim!r}")
    assert kinds is not None
    params: dict[str, ParamSource] = {}
    pt = _Reader(q.source, f"{q.table}.params", q.get("params", dict, {}))
    for param, raw in pt.data.items():
        kind = kinds.get(param)
        if kind is None:
            pt.fail(param, f"{claim} has no such parameter; it has {', '.join(kinds)}")
        assert kind is not None
        if isinstance(raw, dict):
            src = _Reader(q.source, f"{q.table}.params.{param}", raw)
            src.only("item", "party")
            if len(raw) != 1:
                src.fail(None, 'a source is exactly one of item = "..." or party = "..."')
            if "item" in raw:
                attribute = src.get("item", str)
                if attribute not in attributes:
                    src.fail("item", f"the item has no attribute {attribute!r}")
                params[param] = ParamSource(item_attribute=attribute)
            else:
                role = src.get("party", str)
                if not _ATTRIBUTE.fullmatch(role):
                    src.fail("party", "a role is 1-32 of a-z 0-9 _, starting with a letter")
                if kind not in ("person", "organisation"):
                    src.fail("party", "only a person or organisation parameter names a party")
                params[param] = ParamSource(party=role)
            continue
        if kind in ("person", "organisation"):
            pt.fail(param, 'a person is named by the request ({ party = "role" }), never here')
        value_type: type = {"integer": int, "bool": bool}.get(kind, str)
        if not isinstance(raw, value_type) or (value_type is int and isinstance(raw, bool)):
            pt.fail(param, f"must be {_TOML_TYPES[value_type]} ({kind})")
        params[param] = ParamSource(value=raw)
    requirement = Requirement(
        name,
        claim=claim,
        params=MappingProxyType(params),
        subject_party=_subject_party(q),
        description=description,
    )
    if len(requirement.roles()) > 1:
        q.fail(None, "names more than one party role; a requirement is about one other party")
    return requirement


def _subject_party(q: _Reader) -> str:
    """`subject = { party = "role" }`: whose own record the requirement reads (default: the
    applicant's)."""
    if "subject" not in q.data:
        return ""
    st = _Reader(q.source, f"{q.table}.subject", q.get("subject", dict))
    st.only("party")
    party: str = st.get("party", str)
    if not _ATTRIBUTE.fullmatch(party):
        st.fail("party", "a role is 1-32 of a-z 0-9 _, starting with a letter")
    return party


def _parse_grant(
    r: _Reader, claim: str, attributes: dict[str, str], vocabulary: Vocabulary
) -> ClaimGrant:
    source, table = r.source, r.table
    r.only("repeat", "params")
    params = vocabulary.claim_params(claim)
    if params is None:
        r.fail(None, f"the catalogue has no claim {claim!r}")
    assert params is not None
    repeat = r.get("repeat", int, 1)
    if not 1 <= repeat <= _MAX_REPEAT:
        r.fail("repeat", f"must be between 1 and {_MAX_REPEAT}")
    constraints: dict[str, ParamConstraint] = {}
    p = _Reader(source, f"{table}.params", r.get("params", dict, {}))
    for name, raw_rule in p.data.items():
        kind = params.get(name)
        if kind is None:
            p.fail(name, f"{claim} has no such parameter; it has {', '.join(params)}")
        assert kind is not None
        constraints[name] = _parse_constraint(
            _Reader(source, f"{table}.params.{name}", raw_rule), kind, attributes
        )
    return ClaimGrant(claim, repeat, MappingProxyType(constraints))


def _parse_constraint(r: _Reader, kind: str, attributes: dict[str, str]) -> ParamConstraint:
    r.only("fixed", "item", "in", "min", "max")
    value_type: type = {"integer": int, "bool": bool}.get(kind, str)
    if kind in ("person", "organisation") and r.data.get("fixed") != "":
        # only `fixed = ""` (must be left out) fits: a policy never names a person
        r.fail(None, "a person or organisation is named by the request, not the policy")
    if "fixed" in r.data:
        if len(r.data) > 1:
            r.fail("fixed", "a fixed value stands alone")
        return ParamConstraint(fixed=r.get("fixed", value_type))
    if "item" in r.data:
        attribute = r.get("item", str)
        if attribute not in attributes:
            r.fail("item", f'the item has no attribute {attribute!r} (e.g. region = "350505")')
        if kind not in ("string", "region", "month", "date", "enum"):
            r.fail("item", "only text parameters can be bound to an item attribute")
        return ParamConstraint(item_attribute=attribute)
    allowed = None
    if "in" in r.data:
        values = r.get("in", list)
        if not values or not all(
            isinstance(v, value_type) and not (value_type is int and isinstance(v, bool))
            for v in values
        ):
            noun = _TOML_TYPES[value_type].split(" ", 1)[1]
            r.fail("in", f"must be a non-empty array of {noun} values")
        allowed = frozenset(values)
    minimum = r.get("min", value_type, None) if "min" in r.data else None
    maximum = r.get("max", value_type, None) if "max" in r.data else None
    if minimum is None and maximum is None and allowed is None:
        r.fail(None, "constrains nothing; use fixed, item, in, min or max")
    return ParamConstraint(allowed=allowed, minimum=minimum, maximum=maximum, fixed=UNSET)


def load_policy(path: Path | str, vocabulary: Vocabulary) -> Policy:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read policy: {exc.strerror}") from exc
    return parse_policy(data, str(p), vocabulary)
