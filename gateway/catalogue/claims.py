"""Claims: yes/no questions about a subject, answered by the catalogue's rules. Pure.

A claim arrives as (id, type, string parameters). `parse_claim` checks the type against the
catalogue and reads each parameter by its declared type, collecting a field violation
(`claims[i].type`, `claims[i].params.<name>`) for every problem; an unknown parameter name is
never quoted back (it is caller text and may be a personal number). `ParsedClaim.needs` says
which records the claim reads — (evidence type, subject) pairs, each fetched once however
many claims read it — and `evaluate` decides the claim from the fetched records or the
departments' errors by running its CEL rule (gateway.catalogue.rules).

Minimal disclosure: an outcome carries the verdict and the claim as asked (parameters with
defaults filled in), never a field of the underlying record; a person named in a parameter
appears only as a keyed binding the caller supplies (`bind`), never as an ID number or a
plain hash of one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, NamedTuple, TypeAlias

from gateway.catalogue.functions import nfkc
from gateway.catalogue.schema import Catalogue, ClaimSpec, ParamSpec
from gateway.domain.creditcode import credit_code_violation
from gateway.domain.errors import FieldViolation, ProoflessError, RecordNotFound
from gateway.domain.idnumber import id_number_violation, is_region_code, normalise_id_number

_YEAR_MONTH = re.compile(r"(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])")
_DATE = re.compile(r"(19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}")
_INTEGER = re.compile(r"-?[0-9]{1,9}")
#: the values a parameter of each type stands for in a rule when it was not given
_EMPTY: Final[Mapping[str, Any]] = {"integer": 0, "bool": False}

HOLDS, DOES_NOT_HOLD, UNDETERMINED = "HOLDS", "DOES_NOT_HOLD", "UNDETERMINED"


class Need(NamedTuple):
    """One record to fetch: which evidence about whom."""

    evidence: str
    subject: str


@dataclass(frozen=True)
class Fetch:
    """What a department answered for a Need: the canonical record(s) and their as-of time."""

    department: str
    record: Any  # a dict (cardinality one) or a list of dicts (many)
    as_of: datetime | None


#: What the gateway fetched for a claim request: the record, or the department's typed error.
Results: TypeAlias = Mapping[Need, Fetch | ProoflessError]


@dataclass(frozen=True)
class ParsedClaim:
    id: str
    spec: ClaimSpec
    values: Mapping[str, Any]  # typed, as given; None where not given
    persons: Mapping[str, str]  # rule variable → the normalised ID number of that person

    @property
    def type(self) -> str:
        return self.spec.code

    def needs(self, applicant: str) -> tuple[Need, ...]:
        own = tuple(Need(e, applicant) for e in self.spec.evidence_types)
        others = tuple(Need(self.spec.evidence, idn) for idn in self.persons.values())
        return own + others

    @property
    def effective(self) -> dict[str, Any]:
        """The values the claim is decided with: defaults filled in where none was given
        (after the policy has pinned what it pins)."""
        return {
            p.name: self.values[p.name] if self.values.get(p.name) is not None else p.default
            for p in self.spec.params
        }

    def rule_params(self) -> dict[str, Any]:
        """Every declared parameter, as the rule sees it: a value not given is empty."""
        effective = self.effective
        return {
            p.name: effective[p.name] if effective[p.name] is not None else _EMPTY.get(p.type, "")
            for p in self.spec.params
        }


# ---- parsing -------------------------------------------------------------------------------


class _Reader:
    """Reads one claim's raw parameters, collecting violations instead of raising."""

    def __init__(self, raw: Mapping[str, str], prefix: str, today: date | None) -> None:
        self.raw = raw
        self.prefix = prefix
        self.today = today
        self.violations: list[FieldViolation] = []

    def bad(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(f"{self.prefix}.{name}", description))

    def read(self, p: ParamSpec, applicant: str) -> Any:
        value = self.raw.get(p.name)
        if value is None or value == "":
            if p.required:
                self.bad(p.name, "required")
            return None
        kind = p.type
        if kind == "region":
            if not is_region_code(value):
                self.bad(
                    p.name, "must be a 6-digit GB/T 2260 region code, e.g. 350000, 350500, 350505"
                )
                return None
            return value
        if kind == "month":
            if not _YEAR_MONTH.fullmatch(value):
                self.bad(p.name, "must be a month YYYY-MM between 1900-01 and 2999-12")
                return None
            return value
        if kind == "date":
            try:
                if not _DATE.fullmatch(value):
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                self.bad(p.name, "must be a date YYYY-MM-DD between 1900 and 2999")
                return None
            return value
        if kind == "integer":
            low = p.minimum if p.minimum is not None else -(10**9)
            high = p.maximum if p.maximum is not None else 10**9
            if not _INTEGER.fullmatch(value) or not low <= int(value) <= high:
                self.bad(p.name, f"must be a whole number from {low} to {high}")
                return None
            return int(value)
        if kind == "bool":
            if value not in ("true", "false"):
                self.bad(p.name, "must be one of: true, false")
                return None
            return value == "true"
        if kind == "enum":
            if value not in p.values:
                self.bad(p.name, "must be one of: " + ", ".join(p.values))
                return None
            return value
        if kind == "person":
            violation = id_number_violation(value, f"{self.prefix}.{p.name}", today=self.today)
            if violation is not None:
                self.violations.append(violation)
                return None
            person = normalise_id_number(value)
            if person == applicant:
                self.bad(p.name, "must be another person than the applicant")
                return None
            return person
        if kind == "organisation":
            code = value.strip().upper()
            violation = credit_code_violation(code, f"{self.prefix}.{p.name}")
            if violation is not None:
                self.violations.append(violation)
                return None
            return code
        # string
        text = nfkc(value) if p.normalize else value
        if not text or len(text) > p.max_length or not text.isprintable():
            self.bad(p.name, f"must be 1 to {p.max_length} printable characters")
            return None
        return text


def parse_claim(
    index: int,
    claim_id: str,
    claim_type: str,
    raw: Mapping[str, str],
    catalogue: Catalogue,
    *,
    applicant: str = "",
    today: date | None = None,
) -> tuple[ParsedClaim | None, list[FieldViolation]]:
    """Parse the `index`-th claim of a request. Never raises on caller input: every problem
    is a violation, and a claim is returned only when there are none. `today` bounds birth
    dates in ID-number parameters (defaults to the system date)."""
    base = f"claims[{index}]"
    spec = catalogue.claims.get(claim_type)
    if spec is None:
        description = "required" if not claim_type else "unknown claim type; see ListEvidenceTypes"
        return None, [FieldViolation(f"{base}.type", description)]
    known = [p.name for p in spec.params]
    violations: list[FieldViolation] = []
    if any(name not in known for name in raw):
        # The name is caller text and is never quoted back (it may be a personal number).
        violations.append(
            FieldViolation(
                f"{base}.params", f"unknown parameter for {spec.code}; known: " + ", ".join(known)
            )
        )
    reader = _Reader(raw, f"{base}.params", today)
    values = {p.name: reader.read(p, applicant) for p in spec.params}
    violations.extend(reader.violations)
    first, last = spec.param("from"), spec.param("to")
    if (
        first is not None
        and last is not None
        and first.type == last.type
        and values.get("from")
        and values.get("to")
        and values["from"] > values["to"]
    ):
        violations.append(FieldViolation(f"{base}.params.to", "must not be before `from`"))
    if violations:
        return None, violations
    persons = {var: values[param] for var, param in spec.persons.items()}
    return ParsedClaim(claim_id, spec, values, persons), []


def fetch_plan(claims: Iterable[ParsedClaim], applicant: str) -> frozenset[Need]:
    """Every record the claims need, each once however many claims read it."""
    return frozenset(need for claim in claims for need in claim.needs(applicant))


# ---- evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimOutcome:
    """The answer to one claim. `status` is a gRPC status code name, OK unless the verdict is
    UNDETERMINED; then `message` says why without any personal data. `disclosed` is what a
    proof may carry: plain JSON types, no record field, no raw ID number."""

    claim_id: str
    claim_type: str
    verdict: str  # HOLDS, DOES_NOT_HOLD, UNDETERMINED
    department: str
    as_of: datetime | None
    disclosed: Mapping[str, Any]
    status: str = "OK"
    message: str = ""


class _Undetermined(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_NOT_FOUND = object()


def _lookup(results: Results, need: Need, department: str) -> Any:
    answer = results.get(need)
    if answer is None:
        raise _Undetermined("INTERNAL", f"no answer from the {department} department")
    if isinstance(answer, RecordNotFound):
        return _NOT_FOUND
    if isinstance(answer, ProoflessError):
        # Built from the department and the machine reason only: safe by construction.
        raise _Undetermined(
            answer.code.name, f"the {department} department could not answer ({answer.reason})"
        )
    return answer


def disclosed_params(claim: ParsedClaim, bind: Callable[[str], str]) -> dict[str, Any]:
    """The claim's parameters as answered (defaults filled in, absent ones left out), with a
    person or organisation named only by its keyed binding."""
    out: dict[str, Any] = {}
    effective = claim.effective
    for p in claim.spec.params:
        value = effective.get(p.name)
        if value is None:
            continue
        if p.type in ("person", "organisation"):
            out[f"{p.name}_binding"] = bind(value)
        else:
            out[p.name] = value
    return out


def evaluate(
    claim: ParsedClaim,
    applicant: str,
    results: Results,
    *,
    today: date,
    catalogue: Catalogue,
    bind: Callable[[str], str],
) -> ClaimOutcome:
    """Decide one claim from the fetched records (keys as `fetch_plan` made them).

    `today` closes periods (a month after this one is not yet paid, whatever a history says)
    and is the rule's `today`; nothing here reads the clock. A RecordNotFound for any record
    the claim reads decides it as the catalogue says (`when_not_found`, by default: does not
    hold); any other department error makes it UNDETERMINED with that error's status and a
    message naming the department and the reason, never a personal field.
    """
    spec = claim.spec
    department = catalogue.evidence[spec.evidence].department
    verdict, status, message = UNDETERMINED, "OK", ""
    as_of: datetime | None = None
    try:
        activation, as_of, missing = _activation(claim, applicant, results, catalogue)
        if missing:
            as_of = None
            verdict = {"holds": HOLDS, "does_not_hold": DOES_NOT_HOLD}.get(
                spec.when_not_found, UNDETERMINED
            )
            if verdict == UNDETERMINED:
                status, message = (
                    "NOT_FOUND",
                    f"the {department} department does not know the subject",
                )
        else:
            activation["today"] = today.isoformat()
            activation["this_month"] = f"{today.year:04d}-{today.month:02d}"
            for u in spec.undetermined:
                if u.when.evaluate(activation) is True:
                    raise _Undetermined(u.code, u.message)
            verdict = HOLDS if spec.rule.evaluate(activation) is True else DOES_NOT_HOLD
    except _Undetermined as undetermined:
        verdict, status, message = UNDETERMINED, undetermined.code, undetermined.message
    except (TypeError, KeyError, AttributeError, ValueError, IndexError):
        # A record not of its schema's shape (a connector bug) decides nothing; the message
        # quotes nothing of the record.
        verdict, status = UNDETERMINED, "INTERNAL"
        message = f"the {department} department's record is not of its evidence type's shape"
    # Plain JSON types (dict, str, int, bool) so the proof layer can serialise it as is.
    disclosed = {
        "claim": spec.code,
        "id": claim.id,
        "params": disclosed_params(claim, bind),
        "verdict": verdict,
    }
    return ClaimOutcome(
        claim_id=claim.id,
        claim_type=spec.code,
        verdict=verdict,
        department=department,
        as_of=as_of,
        disclosed=disclosed,
        status=status,
        message=message,
    )


def _activation(
    claim: ParsedClaim, applicant: str, results: Results, catalogue: Catalogue
) -> tuple[dict[str, Any], datetime | None, bool]:
    """The rule's variables, the oldest as-of of the records read, and whether any subject
    is unknown to its department. A subject unknown to a department decides the claim even
    when another fetch failed."""
    spec = claim.spec
    activation: dict[str, Any] = {"params": claim.rule_params()}
    bindings: list[tuple[str, Need]] = []
    own = catalogue.evidence[spec.evidence]
    bindings.append(
        ("records" if own.cardinality == "many" else "record", Need(own.code, applicant))
    )
    for var, code in spec.reads.items():
        bindings.append((var, Need(code, applicant)))
    for var, person in claim.persons.items():
        bindings.append((var, Need(spec.evidence, person)))
    found: dict[str, Fetch] = {}
    failure: _Undetermined | None = None
    missing = False
    for var, need in bindings:
        department = catalogue.evidence[need.evidence].department
        try:
            answer = _lookup(results, need, department)
        except _Undetermined as exc:
            failure = failure or exc
            continue
        if answer is _NOT_FOUND:
            if catalogue.evidence[need.evidence].cardinality == "many":
                # A register of 0..n records (properties, licences) that does not know the
                # subject holds nothing for them: the empty list, which the rule decides.
                found[var] = Fetch(department, [], None)
            else:
                missing = True
        else:
            found[var] = answer
    if missing:
        return activation, None, True
    if failure is not None:
        raise failure
    for var, fetched in found.items():
        activation[var] = fetched.record
    times = [f.as_of for f in found.values() if f.as_of is not None]
    return activation, (min(times) if times else None), False


__all__: Sequence[str] = (
    "DOES_NOT_HOLD",
    "HOLDS",
    "UNDETERMINED",
    "ClaimOutcome",
    "Fetch",
    "Need",
    "ParsedClaim",
    "Results",
    "disclosed_params",
    "evaluate",
    "fetch_plan",
    "parse_claim",
)
