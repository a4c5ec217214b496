"""The evidence catalogue as values: departments, evidence types, their fields, and claims.

What the gateway can fetch is data, not code (ARCHITECTURE.md, "The evidence catalogue"). The
loader (`gateway.catalogue.parse`) reads the TOML files into these frozen values, checks them
as a whole and compiles every claim rule; everything downstream (connectors, the servicer, the
policy, discovery) reads only these. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from gateway.domain.vocabulary import SubjectKind

FieldType = Literal[
    "string", "date", "month", "region", "enum", "integer", "number", "bool", "datetime", "list"
]
FIELD_TYPES: tuple[FieldType, ...] = (
    "string",
    "date",
    "month",
    "region",
    "enum",
    "integer",
    "number",
    "bool",
    "datetime",
    "list",
)
ConnectorKind = Literal["http_json", "sql", "soap"]
CONNECTOR_KINDS: tuple[ConnectorKind, ...] = ("http_json", "sql", "soap")
Cardinality = Literal["one", "many"]
ParamType = Literal[
    "string", "integer", "bool", "region", "month", "date", "enum", "person", "organisation"
]
PARAM_TYPES: tuple[ParamType, ...] = (
    "string",
    "integer",
    "bool",
    "region",
    "month",
    "date",
    "enum",
    "person",
    "organisation",
)
NotFoundVerdict = Literal["does_not_hold", "holds", "undetermined"]


@dataclass(frozen=True)
class EnumSpec:
    """A closed set of canonical values (lower_snake) and the department codes for each."""

    name: str
    values: tuple[str, ...]  # declared order: the sort order, and the typed enum's order
    codes: Mapping[str, str]  # department code → canonical value
    descriptions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldSpec:
    """One canonical field: its type, where it comes from, and how to read it."""

    name: str
    type: FieldType
    description: str
    personal: bool
    sources: tuple[str, ...]  # department keys; the first decides "missing"
    convert: Callable[..., Any] = field(repr=False, compare=False)
    converter: str  # the converter's name in gateway.catalogue.converters.LIBRARY
    required: bool = True
    enum: EnumSpec | None = None
    record: RecordSpec | None = None  # a list's sub-record
    sort: tuple[str, ...] = ()  # a list's sort key (sub-record fields)


#: how mapping reads one field of a row (RecordSpec.steps)
MappingStep = tuple[str, str, tuple[str, ...] | None, bool, "FieldSpec | None", Callable[..., Any]]


@dataclass(frozen=True)
class RecordSpec:
    name: str
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def steps(self) -> tuple[MappingStep, ...]:
        """The fields as gateway.catalogue.mapping reads them for every row, worked out once
        per spec: (name, primary key, every source key or None when there is one, required,
        the field itself when it holds a sub-record else None, converter)."""
        return tuple(
            (
                f.name,
                f.sources[0],
                f.sources if len(f.sources) > 1 else None,
                f.required,
                f if f.record is not None else None,
                f.convert,
            )
            for f in self.fields
        )


@dataclass(frozen=True)
class AsOfSpec:
    """Which field of the department's answer says when the record was current."""

    sources: tuple[str, ...] = ()  # data keys, first present wins (e.g. GXSJ)
    convert: str = "beijing_time"
    envelope: str = ""  # an envelope key holding epoch milliseconds, tried next


@dataclass(frozen=True)
class HttpCall:
    """http_json: one request per evidence fetch, and how to read the answer's envelope."""

    method: Literal["GET", "POST"]
    path: str  # may hold {subject}
    body: Mapping[str, Any]  # JSON body template (POST); string values may hold {subject}
    query: Mapping[str, str]  # query-string template (GET)
    result_field: str  # dotted path of the result code; "" when the department has none
    success: tuple[str, ...]
    not_found: tuple[str, ...]
    data: str  # dotted path of the record (or the list of records); "" = the whole body
    pages: HttpPages | None = None


@dataclass(frozen=True)
class HttpPages:
    """A paged sub-resource merged into the record under `into` (PageHelper style)."""

    into: str
    path: str
    body: Mapping[str, Any]
    page_field: str
    size_field: str
    page_size: int
    list_field: str
    pages_field: str
    total_field: str
    total_counts: str  # the key whose distinct values `total` counts ("" = rows)
    max_pages: int


@dataclass(frozen=True)
class SqlQuery:
    """sql: one parameterised query per evidence fetch (`?` placeholders)."""

    query: str
    params: tuple[str, ...]  # templates, e.g. ("{subject}",)


@dataclass(frozen=True)
class SoapCall:
    """soap: one WSDL operation per evidence fetch."""

    operation: str
    arguments: Mapping[str, str]
    result_field: str
    success: tuple[str, ...]
    not_found: tuple[str, ...]
    data: str


FetchSpec = HttpCall | SqlQuery | SoapCall


@dataclass(frozen=True)
class EvidenceType:
    """A kind of evidence one department holds about a subject (证照 / 数据项)."""

    code: str
    name: str
    description: str
    department: str
    subject: SubjectKind
    cardinality: Cardinality
    record: RecordSpec
    fetch: FetchSpec
    as_of: AsOfSpec
    subject_field: str  # the department's echo of the subject, checked against the query
    message: str = ""  # a typed proofless.v1 message serving this type ("" = Struct only)

    def field(self, name: str) -> FieldSpec | None:
        return self.record.field(name)


@dataclass(frozen=True)
class AuthSpec:
    """How the gateway authenticates to a department. Secrets are file references, read when
    the connector is built, never stored in the catalogue."""

    scheme: Literal[
        "none", "hmac_appkey", "api_key", "bearer", "oauth2_client_credentials", "basic", "mtls"
    ]
    settings: Mapping[str, str]


@dataclass(frozen=True)
class Department:
    code: str
    name: str
    english: str
    connector: ConnectorKind
    endpoint: str  # base URL (http_json), DSN (sql), WSDL location (soap)
    auth: AuthSpec
    timeout_ms: int
    pool_size: int
    health: str  # an HTTP path, a SQL query, or "" (connect only)
    settings: Mapping[str, Any]  # connector extras (schema, service address, TLS files)
    resilience: Mapping[str, Any]  # validated by gateway.server.resilience at build time
    proto_enum: int = 0  # proofless.v1.Department value, 0 for departments added by file
    source: str = ""  # the file it came from


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: ParamType
    description: str
    required: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()  # enum
    max_length: int = 64  # string
    normalize: bool = False  # string: NFKC and trim, so full- and half-width forms compare


@dataclass(frozen=True)
class Undetermined:
    """When `when` holds, the claim is undetermined with a gRPC `code` and a fixed message."""

    when: Any  # a compiled rule
    code: str
    message: str


@dataclass(frozen=True)
class ClaimSpec:
    """A yes/no question about a subject, answered by a CEL rule over evidence (证明事项)."""

    code: str  # "<evidence>.<name>"
    evidence: str  # the evidence type the subject's record comes from
    description: str
    params: tuple[ParamSpec, ...]
    rule_text: str
    rule: Any = field(repr=False, compare=False)  # compiled, see gateway.catalogue.rules
    reads: Mapping[str, str] = field(default_factory=dict)  # variable → other evidence type
    persons: Mapping[str, str] = field(default_factory=dict)  # variable → person param
    when_not_found: NotFoundVerdict = "does_not_hold"
    undetermined: tuple[Undetermined, ...] = ()

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    @property
    def evidence_types(self) -> tuple[str, ...]:
        """Every evidence type the claim reads (its own first)."""
        return (self.evidence, *(e for e in self.reads.values() if e != self.evidence))


@dataclass(frozen=True)
class Catalogue:
    version: str  # hex SHA-256 over the files (name and bytes, in name order)
    departments: Mapping[str, Department]
    evidence: Mapping[str, EvidenceType]
    claims: Mapping[str, ClaimSpec]
    sources: tuple[str, ...] = ()

    # ---- the vocabulary the policy is checked against (gateway.domain.policy.Vocabulary)

    def evidence_fields(self, code: str) -> frozenset[str] | None:
        evidence = self.evidence.get(code)
        return frozenset(evidence.record.names) if evidence is not None else None

    def claim_params(self, code: str) -> Mapping[str, str] | None:
        claim = self.claims.get(code)
        return {p.name: p.type for p in claim.params} if claim is not None else None

    def codes(self) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset(self.evidence), frozenset(self.claims)

    def by_message(self, message: str) -> EvidenceType | None:
        """The evidence type a typed RPC's message serves (e.g. proofless.v1.HouseholdRecord)."""
        for evidence in self.evidence.values():
            if evidence.message == message:
                return evidence
        return None
