"""The claims catalogue: yes/no questions about one applicant, answered from department records.

A claim arrives as `pb.Claim(id, type, params)` with string parameters. `parse_claim` checks
the type against `CATALOGUE` and turns the parameters into a typed, frozen value, collecting a
field violation (`claims[i].type`, `claims[i].params.<name>`) for every problem. `fetch_plan`
says which records the parsed claims need — each (department, person) once however many claims
read it — and `evaluate` decides one claim from the fetched records or department errors.

Everything here is pure: no clock, no I/O. Minimal disclosure: a `ClaimOutcome` carries the
verdict and the claim as asked, never a field of the underlying record, and a second person's
ID number appears only as its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeAlias

import grpc
from google.rpc import code_pb2, status_pb2

from adapters.base import DepartmentId, Fetched, RecordNotFound
from gateway.domain.errors import FieldViolation, ProoflessError
from gateway.domain.idnumber import (
    id_number_violation,
    is_region_code,
    normalise_id_number,
    region_contains,
)
from gateway.domain.times import set_timestamp
from proofless.v1 import verification_pb2 as pb

MAX_MONTHS = 600
MAX_CERTIFICATE_LENGTH = 64
_YEAR_MONTH = re.compile(r"(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])")
_COUNT = re.compile(r"[0-9]{1,4}")

DEPARTMENT_ENUM: Mapping[DepartmentId, pb.Department] = MappingProxyType(
    {
        "household": pb.DEPARTMENT_HOUSEHOLD,
        "social_security": pb.DEPARTMENT_SOCIAL_SECURITY,
        "property": pb.DEPARTMENT_PROPERTY,
    }
)


class Need(NamedTuple):
    """One record to fetch: whose, from which department."""

    department: DepartmentId
    id_number: str


#: What the gateway fetched for a claim request: the record, or the department's typed error.
Results: TypeAlias = Mapping[Need, Fetched[Any] | ProoflessError]


# ---- typed parameters --------------------------------------------------------------------

KinRelation = Literal["spouse", "child", "parent", "sibling", "grandchild", "grandparent"]
KIN_RELATIONS: tuple[KinRelation, ...] = (
    "spouse",
    "child",
    "parent",
    "sibling",
    "grandchild",
    "grandparent",
)
INSURANCE_TYPES: Mapping[str, pb.InsuranceType] = MappingProxyType(
    {
        "pension": pb.INSURANCE_TYPE_PENSION,
        "medical": pb.INSURANCE_TYPE_MEDICAL,
        "unemployment": pb.INSURANCE_TYPE_UNEMPLOYMENT,
        "work_injury": pb.INSURANCE_TYPE_WORK_INJURY,
        "maternity": pb.INSURANCE_TYPE_MATERNITY,
    }
)
EncumbranceKind = Literal["any", "mortgage", "seizure"]
_KIN_BY_NAME: Mapping[str, KinRelation] = MappingProxyType({r: r for r in KIN_RELATIONS})
_KIND_BY_NAME: Mapping[str, EncumbranceKind] = MappingProxyType(
    {"any": "any", "mortgage": "mortgage", "seizure": "seizure"}
)


@dataclass(frozen=True)
class ResidenceParams:
    region: str


@dataclass(frozen=True)
class KinshipParams:
    other_id_number: str  # normalised; never disclosed in clear
    relation: KinRelation  # the other person's relation TO the applicant


@dataclass(frozen=True)
class ContributionParams:
    min_months: int
    from_month: str | None  # YYYY-MM, inclusive
    to_month: str | None  # YYYY-MM, inclusive
    region: str | None
    insurance: str  # a key of INSURANCE_TYPES


@dataclass(frozen=True)
class OwnershipParams:
    region: str | None  # None: anywhere
    owns: bool  # False asks the no-property question (无房证明)


@dataclass(frozen=True)
class EncumbranceParams:
    certificate_number: str  # NFKC-normalised, surrounding whitespace removed
    kind: EncumbranceKind


ClaimParams: TypeAlias = (
    ResidenceParams | KinshipParams | ContributionParams | OwnershipParams | EncumbranceParams
)


# ---- catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    name: str
    doc: str
    required: bool = False
    default: str | None = None


class _Params:
    """Reads one claim's raw parameters, collecting violations instead of raising."""

    def __init__(self, raw: Mapping[str, str], prefix: str, today: date | None) -> None:
        self.raw = raw
        self.prefix = prefix
        self.today = today
        self.violations: list[FieldViolation] = []

    def bad(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.prefix}.{name}", description))

    def get(self, name: str, *, required: bool) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                self.bad(name, "required")
            return None
        return value

    def region(self, name: str, *, required: bool) -> str | None:
        value = self.get(name, required=required)
        if value is not None and not is_region_code(value):
            self.bad(name, "must be a 6-digit GB/T 2260 region code, e.g. 350000, 350500, 350505")
            return None
        return value

    def choice(self, name: str, options: Sequence[str], default: str) -> str | None:
        value = self.get(name, required=False)
        if value is None:
            return default
        if value not in options:
            self.bad(name, "must be one of: " + ", ".join(options))
            return None
        return value

    def month(self, name: str) -> str | None:
        value = self.get(name, required=False)
        if value is not None and not _YEAR_MONTH.fullmatch(value):
            self.bad(name, "must be a month YYYY-MM between 1900-01 and 2999-12")
            return None
        return value


def _residence(p: _Params) -> ClaimParams | None:
    region = p.region("region", required=True)
    return ResidenceParams(region) if region is not None else None


def _kinship(p: _Params) -> ClaimParams | None:
    other = p.get("other_id_number", required=True)
    if other is not None:
        violation = id_number_violation(other, f"{p.prefix}.other_id_number", today=p.today)
        if violation is not None:
            p.violations.append(violation)
            other = None
        else:
            other = normalise_id_number(other)
    raw_relation = p.get("relation", required=True)
    relation = _KIN_BY_NAME.get(raw_relation) if raw_relation is not None else None
    if raw_relation is not None and relation is None:
        p.bad("relation", "must be one of: " + ", ".join(KIN_RELATIONS))
    if other is None or relation is None:
        return None
    return KinshipParams(other, relation)


def _contribution(p: _Params) -> ClaimParams | None:
    raw_months = p.get("min_months", required=True)
    months: int | None = None
    if raw_months is not None:
        if _COUNT.fullmatch(raw_months) and 1 <= int(raw_months) <= MAX_MONTHS:
            months = int(raw_months)
        else:
            p.bad("min_months", f"must be a whole number of months from 1 to {MAX_MONTHS}")
    start, end = p.month("from"), p.month("to")
    if start is not None and end is not None and start > end:
        p.bad("to", "must not be before `from`")
    region = p.region("region", required=False)
    insurance = p.choice("type", tuple(INSURANCE_TYPES), "pension")
    if p.violations or months is None or insurance is None:
        return None
    return ContributionParams(months, start, end, region, insurance)


def _ownership(p: _Params) -> ClaimParams | None:
    region = p.region("region", required=False)
    owns = p.choice("owns", ("true", "false"), "true")
    if p.violations or owns is None:
        return None
    return OwnershipParams(region, owns == "true")


def normalise_certificate_number(value: str) -> str:
    """Certificate numbers such as 闽(2021)泉港区不动产权第0001234号 are typed with full- or
    half-width brackets and stray spaces; NFKC and trimming make both spellings compare equal."""
    return unicodedata.normalize("NFKC", value).strip()


def _encumbrance(p: _Params) -> ClaimParams | None:
    cert = p.get("certificate_number", required=True)
    if cert is not None:
        cert = normalise_certificate_number(cert)
        if not cert or len(cert) > MAX_CERTIFICATE_LENGTH or not cert.isprintable():
            p.bad(
                "certificate_number",
                f"must be 1 to {MAX_CERTIFICATE_LENGTH} printable characters",
            )
            cert = None
    kind = p.choice("kind", tuple(_KIND_BY_NAME), "any")
    if cert is None or kind is None:
        return None
    return EncumbranceParams(cert, _KIND_BY_NAME[kind])


@dataclass(frozen=True)
class ClaimSpec:
    """One catalogue entry; `description` and `params` feed ListServiceItems and `--help`."""

    type: str
    department: DepartmentId
    description: str
    params: tuple[ParamSpec, ...]
    parse: Callable[[_Params], ClaimParams | None] = field(repr=False, compare=False)

    def help(self) -> str:
        lines = [f"{self.type} ({self.department}): {self.description}"]
        for p in self.params:
            extra = " (required)" if p.required else f" (default {p.default})" if p.default else ""
            lines.append(f"  {p.name}{extra}: {p.doc}")
        return "\n".join(lines)


_REGION_DOC = "6-digit region code; a province (350000) or city (350500) covers its counties"

CATALOGUE: Mapping[str, ClaimSpec] = MappingProxyType(
    {
        spec.type: spec
        for spec in (
            ClaimSpec(
                "household.residence",
                "household",
                "the applicant's household registration (户籍) is active and lies in the region",
                (ParamSpec("region", _REGION_DOC, required=True),),
                _residence,
            ),
            ClaimSpec(
                "household.kinship",
                "household",
                "another person is registered in the applicant's household with the given "
                "relation to the applicant (亲属关系证明)",
                (
                    ParamSpec("other_id_number", "the other person's ID number", required=True),
                    ParamSpec(
                        "relation",
                        "the other person's relation to the applicant: " + ", ".join(KIN_RELATIONS),
                        required=True,
                    ),
                ),
                _kinship,
            ),
            ClaimSpec(
                "social_security.contribution",
                "social_security",
                "the applicant paid contributions in at least min_months distinct months of "
                "the period (参保缴费证明)",
                (
                    ParamSpec("min_months", f"1 to {MAX_MONTHS}", required=True),
                    ParamSpec("from", "first month counted, YYYY-MM (inclusive)"),
                    ParamSpec("to", "last month counted, YYYY-MM (inclusive)"),
                    ParamSpec("region", "count only months paid in this region; " + _REGION_DOC),
                    ParamSpec(
                        "type", "insurance: " + ", ".join(INSURANCE_TYPES), default="pension"
                    ),
                ),
                _contribution,
            ),
            ClaimSpec(
                "property.ownership",
                "property",
                "the applicant holds some property in the region (owns=true) or none there "
                "(owns=false, the no-property certificate 无房证明)",
                (
                    ParamSpec("region", "default: anywhere; " + _REGION_DOC),
                    ParamSpec("owns", "true or false", default="true"),
                ),
                _ownership,
            ),
            ClaimSpec(
                "property.encumbrance",
                "property",
                "the applicant's property with this certificate number is mortgaged (抵押) or "
                "seized (查封)",
                (
                    ParamSpec(
                        "certificate_number",
                        f"不动产权证书号, at most {MAX_CERTIFICATE_LENGTH} characters",
                        required=True,
                    ),
                    ParamSpec("kind", "any, mortgage or seizure", default="any"),
                ),
                _encumbrance,
            ),
        )
    }
)


# ---- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedClaim:
    id: str
    type: str
    department: DepartmentId
    params: ClaimParams

    def needs(self, applicant_id: str) -> tuple[Need, ...]:
        """The records this claim reads. Kinship reads two household records."""
        own = Need(self.department, applicant_id)
        if isinstance(self.params, KinshipParams):
            return (own, Need("household", self.params.other_id_number))
        return (own,)


def parse_claim(
    index: int, claim: pb.Claim, *, today: date | None = None
) -> tuple[ParsedClaim | None, list[FieldViolation]]:
    """Parse `claim` (the `index`-th of the request). Never raises on caller input: every
    problem is a violation, and a claim is returned only when there are none. `today` bounds
    birth dates in ID-number parameters (defaults to the system date)."""
    base = f"claims[{index}]"
    spec = CATALOGUE.get(claim.type)
    if spec is None:
        description = (
            "required" if not claim.type else "unknown claim type; one of: " + ", ".join(CATALOGUE)
        )
        return None, [FieldViolation(f"{base}.type", description)]
    known = [p.name for p in spec.params]
    violations: list[FieldViolation] = []
    for name in sorted(claim.params):
        if name in known:
            continue
        # The name is caller text and is never quoted back (it may be a personal number).
        violations.append(
            FieldViolation(
                f"{base}.params", f"unknown parameter for {spec.type}; known: " + ", ".join(known)
            )
        )
    reader = _Params(dict(claim.params), f"{base}.params", today)
    params = spec.parse(reader)
    violations.extend(reader.violations)
    if violations or params is None:
        return None, violations or [FieldViolation(f"{base}.params", "invalid parameters")]
    return ParsedClaim(claim.id, spec.type, spec.department, params), []


def fetch_plan(claims: Iterable[ParsedClaim], applicant_id: str) -> frozenset[Need]:
    """Every record the claims need, each once however many claims read it."""
    return frozenset(need for claim in claims for need in claim.needs(applicant_id))


# ---- evaluation --------------------------------------------------------------------------


_GRPC_CODES: Mapping[int, grpc.StatusCode] = MappingProxyType(
    {getattr(code_pb2, c.name): c for c in grpc.StatusCode}
)


@dataclass(frozen=True)
class ClaimOutcome:
    """The answer to one claim. `status_code` is a google.rpc.Code value, OK (0) unless the
    verdict is UNDETERMINED; then `status_message` says why without any personal data.
    `disclosed` is what a proof may carry: plain JSON types, no record field, no raw ID."""

    claim_id: str
    claim_type: str
    verdict: pb.Verdict
    department: DepartmentId
    as_of: datetime | None
    disclosed: Mapping[str, Any]
    status_code: int = code_pb2.OK
    status_message: str = ""

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return _GRPC_CODES[self.status_code]

    def to_result(self) -> pb.ClaimResult:
        result = pb.ClaimResult(
            id=self.claim_id,
            type=self.claim_type,
            verdict=self.verdict,
            status=status_pb2.Status(code=self.status_code, message=self.status_message),
            source_department=DEPARTMENT_ENUM[self.department],
        )
        if self.as_of is not None:
            set_timestamp(result.as_of, self.as_of)
        return result


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def disclosed_params(params: ClaimParams) -> dict[str, Any]:
    """The claim's parameters as answered (defaults filled in), with no raw ID number."""
    if isinstance(params, ResidenceParams):
        return {"region": params.region}
    if isinstance(params, KinshipParams):
        return {
            "other_id_number_sha256": sha256_hex(params.other_id_number),
            "relation": params.relation,
        }
    if isinstance(params, ContributionParams):
        out: dict[str, Any] = {"min_months": params.min_months, "type": params.insurance}
        for key, value in (
            ("from", params.from_month),
            ("to", params.to_month),
            ("region", params.region),
        ):
            if value is not None:
                out[key] = value
        return out
    if isinstance(params, OwnershipParams):
        out = {"owns": params.owns}
        if params.region is not None:
            out["region"] = params.region
        return out
    return {"certificate_number": params.certificate_number, "kind": params.kind}


class _Undetermined(Exception):
    """Internal control flow: this claim cannot be decided (code, safe message)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_NOT_FOUND = object()  # the department answered that it does not know the person


def _lookup(results: Results, need: Need) -> Any:
    """The fetched answer for `need`, `_NOT_FOUND`, or `_Undetermined` for any other failure."""
    answer = results.get(need)
    if answer is None:
        raise _Undetermined(
            grpc.StatusCode.INTERNAL, f"no answer from the {need.department} department"
        )
    if isinstance(answer, RecordNotFound):
        return _NOT_FOUND
    if isinstance(answer, ProoflessError):
        # Built from the department and the machine reason only: safe by construction.
        raise _Undetermined(
            answer.code, f"the {need.department} department could not answer ({answer.reason})"
        )
    return answer


def _expect(fetched: Fetched[Any], kind: type[Any], department: str) -> Any:
    if not isinstance(fetched.record, kind):
        raise _Undetermined(
            grpc.StatusCode.INTERNAL, f"unexpected record type from the {department} department"
        )
    return fetched.record


def _property_records(fetched: Fetched[Any]) -> Sequence[pb.PropertyRecord]:
    """Property answers are a sequence of PropertyRecord (or a PropertyRecordsResponse)."""
    record = fetched.record
    if isinstance(record, pb.PropertyRecordsResponse):
        return list(record.records)
    if isinstance(record, pb.PropertyRecord):
        return [record]
    if isinstance(record, Iterable) and not isinstance(record, str | bytes):
        items = list(record)
        if all(isinstance(item, pb.PropertyRecord) for item in items):
            return items
    raise _Undetermined(
        grpc.StatusCode.INTERNAL, "unexpected record type from the property department"
    )


# Derivation of the OTHER person's relation to the applicant from both relations to the
# household head (与户主关系). Only pairs whose answer is certain are listed; any other
# pair (e.g. two grandchildren, who may be siblings or cousins) derives nothing and the
# claim does not hold. Key: (applicant's relation to head, other's relation to head).
#
#   applicant   other        other is the applicant's
#   head        spouse       spouse
#   spouse      head         spouse
#   head        child        child
#   spouse      child        child
#   child       head         parent
#   child       spouse       parent
#   child       child        sibling
#   head        parent       parent
#   parent      head         child
#   head        grandchild   grandchild
#   grandchild  head         grandparent
#   head        grandparent  grandparent
#   grandparent head         grandchild
#   head        sibling      sibling
#   sibling     head         sibling
#   sibling     sibling      sibling
#   child       parent       grandparent
#   parent      child        grandchild
#   sibling     parent       parent
#   parent      sibling      child
_R = pb.Relation
KINSHIP_TABLE: Mapping[tuple[int, int], KinRelation] = MappingProxyType(
    {
        (_R.RELATION_HEAD, _R.RELATION_SPOUSE): "spouse",
        (_R.RELATION_SPOUSE, _R.RELATION_HEAD): "spouse",
        (_R.RELATION_HEAD, _R.RELATION_CHILD): "child",
        (_R.RELATION_SPOUSE, _R.RELATION_CHILD): "child",
        (_R.RELATION_CHILD, _R.RELATION_HEAD): "parent",
        (_R.RELATION_CHILD, _R.RELATION_SPOUSE): "parent",
        (_R.RELATION_CHILD, _R.RELATION_CHILD): "sibling",
        (_R.RELATION_HEAD, _R.RELATION_PARENT): "parent",
        (_R.RELATION_PARENT, _R.RELATION_HEAD): "child",
        (_R.RELATION_HEAD, _R.RELATION_GRANDCHILD): "grandchild",
        (_R.RELATION_GRANDCHILD, _R.RELATION_HEAD): "grandparent",
        (_R.RELATION_HEAD, _R.RELATION_GRANDPARENT): "grandparent",
        (_R.RELATION_GRANDPARENT, _R.RELATION_HEAD): "grandchild",
        (_R.RELATION_HEAD, _R.RELATION_SIBLING): "sibling",
        (_R.RELATION_SIBLING, _R.RELATION_HEAD): "sibling",
        (_R.RELATION_SIBLING, _R.RELATION_SIBLING): "sibling",
        (_R.RELATION_CHILD, _R.RELATION_PARENT): "grandparent",
        (_R.RELATION_PARENT, _R.RELATION_CHILD): "grandchild",
        (_R.RELATION_SIBLING, _R.RELATION_PARENT): "parent",
        (_R.RELATION_PARENT, _R.RELATION_SIBLING): "child",
    }
)


def derive_relation(applicant_to_head: int, other_to_head: int) -> KinRelation | None:
    """The other person's relation to the applicant, when the table makes it certain."""
    return KINSHIP_TABLE.get((applicant_to_head, other_to_head))


_Decision: TypeAlias = tuple[bool, datetime | None]


def _decide_residence(p: ResidenceParams, applicant: str, results: Results) -> _Decision:
    answer = _lookup(results, Need("household", applicant))
    if answer is _NOT_FOUND:
        return False, None
    record: pb.HouseholdRecord = _expect(answer, pb.HouseholdRecord, "household")
    holds = record.status == pb.HOUSEHOLD_STATUS_ACTIVE and region_contains(
        p.region, record.region_code
    )
    return holds, answer.as_of


def _decide_kinship(p: KinshipParams, applicant: str, results: Results) -> _Decision:
    if p.other_id_number == applicant:
        return False, None  # nobody is their own kin; the table would say "sibling" for child/child
    # Either person unknown to the registry decides the claim, even if the other fetch failed.
    answers: list[Any] = []
    failure: _Undetermined | None = None
    for person in (applicant, p.other_id_number):
        try:
            answers.append(_lookup(results, Need("household", person)))
        except _Undetermined as exc:
            failure = failure or exc
            answers.append(None)
    if _NOT_FOUND in answers:
        return False, None
    if failure is not None:
        raise failure
    mine, theirs = answers
    a: pb.HouseholdRecord = _expect(mine, pb.HouseholdRecord, "household")
    o: pb.HouseholdRecord = _expect(theirs, pb.HouseholdRecord, "household")
    # The verdict is only as fresh as the older of the two records.
    as_of = min(mine.as_of, theirs.as_of)
    holds = (
        a.status == pb.HOUSEHOLD_STATUS_ACTIVE
        and o.status == pb.HOUSEHOLD_STATUS_ACTIVE
        and a.household_number != ""
        and a.household_number == o.household_number
        and derive_relation(a.relation_to_head, o.relation_to_head) == p.relation
    )
    return holds, as_of


def _decide_contribution(
    p: ContributionParams, applicant: str, results: Results, today: date | None
) -> _Decision:
    answer = _lookup(results, Need("social_security", applicant))
    if answer is _NOT_FOUND:
        return False, None  # no record: zero months
    record: pb.SocialSecurityRecord = _expect(answer, pb.SocialSecurityRecord, "social_security")
    wanted = INSURANCE_TYPES[p.insurance]
    last = p.to_month
    if today is not None:
        this_month = f"{today.year:04d}-{today.month:02d}"
        last = this_month if last is None else min(last, this_month)
    months = {
        c.month
        for c in record.history
        if c.type == wanted
        and _YEAR_MONTH.fullmatch(c.month)
        and (p.from_month is None or c.month >= p.from_month)
        and (last is None or c.month <= last)
        and (p.region is None or region_contains(p.region, c.region_code))
    }
    return len(months) >= p.min_months, answer.as_of


def _decide_ownership(p: OwnershipParams, applicant: str, results: Results) -> _Decision:
    answer = _lookup(results, Need("property", applicant))
    if answer is _NOT_FOUND:
        return not p.owns, None  # unknown to the registry: holds no property
    records = _property_records(answer)
    count = sum(1 for r in records if p.region is None or region_contains(p.region, r.region_code))
    return (count > 0) == p.owns, answer.as_of


def _decide_encumbrance(p: EncumbranceParams, applicant: str, results: Results) -> _Decision:
    answer = _lookup(results, Need("property", applicant))
    records = [] if answer is _NOT_FOUND else _property_records(answer)
    match = [
        r
        for r in records
        if normalise_certificate_number(r.certificate_number) == p.certificate_number
    ]
    if not match:
        raise _Undetermined(
            grpc.StatusCode.NOT_FOUND,
            "the applicant holds no property with the given certificate number",
        )
    record = match[0]
    if p.kind == "mortgage":
        holds = record.mortgaged
    elif p.kind == "seizure":
        holds = record.seized
    else:
        holds = record.mortgaged or record.seized
    return holds, answer.as_of


def evaluate(
    claim: ParsedClaim,
    applicant_id: str,
    results: Results,
    *,
    today: date | None = None,
) -> ClaimOutcome:
    """Decide one claim from the fetched records (keys as `fetch_plan` made them).

    `today`, when given, closes contribution periods: a month after today's is not yet paid
    whatever the history says. Nothing here reads the clock.

    A RecordNotFound for the applicant is an answer (no registration, no contributions, no
    property); any other department error makes the claim UNDETERMINED with that error's
    gRPC code and a message naming the department and the reason, never a personal field.
    """
    p = claim.params
    code, message = grpc.StatusCode.OK, ""
    verdict: pb.Verdict
    as_of: datetime | None = None
    try:
        if isinstance(p, ResidenceParams):
            holds, as_of = _decide_residence(p, applicant_id, results)
        elif isinstance(p, KinshipParams):
            holds, as_of = _decide_kinship(p, applicant_id, results)
        elif isinstance(p, ContributionParams):
            holds, as_of = _decide_contribution(p, applicant_id, results, today)
        elif isinstance(p, OwnershipParams):
            holds, as_of = _decide_ownership(p, applicant_id, results)
        else:
            holds, as_of = _decide_encumbrance(p, applicant_id, results)
        verdict = pb.VERDICT_HOLDS if holds else pb.VERDICT_DOES_NOT_HOLD
    except _Undetermined as undetermined:
        verdict, code, message = pb.VERDICT_UNDETERMINED, undetermined.code, undetermined.message
    # Plain JSON types (dict, str, int, bool) so the proof layer can serialise it as is.
    disclosed = {
        "claim": claim.type,
        "id": claim.id,
        "params": disclosed_params(p),
        "verdict": pb.Verdict.Name(verdict).removeprefix("VERDICT_"),
    }
    return ClaimOutcome(
        claim_id=claim.id,
        claim_type=claim.type,
        verdict=verdict,
        department=claim.department,
        as_of=as_of,
        disclosed=disclosed,
        status_code=getattr(code_pb2, code.name),
        status_message=message,
    )
