"""Reading catalogue files: one TOML file per department, checked as a whole.

A file declares `[department]` (who, how to reach them, how to authenticate, resilience),
`[enums.<name>]` (code tables), `[evidence.<code>]` (each evidence type: subject kind,
cardinality, how to fetch it, its fields and where each comes from) and, inside each evidence
type, `[evidence.<code>.claims.<name>]` (claims: typed parameters and a CEL rule). The format
is documented in ARCHITECTURE.md ("The evidence catalogue") and by the files in
deploy/catalogue/.

`parse_file` turns one file's text into its department, evidence types and claims, with every
problem recorded as an `Issue` with its line. `gateway.catalogue.load` puts the files together
and checks what spans them (unique codes, claims reading other files' evidence, typed
messages) and compiles the rules. Pure: text in, values out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.catalogue import converters
from gateway.catalogue.reader import Invalid, Issues, Table
from gateway.catalogue.schema import (
    CONNECTOR_KINDS,
    FIELD_TYPES,
    PARAM_TYPES,
    AsOfSpec,
    AuthSpec,
    Department,
    EnumSpec,
    EvidenceType,
    FetchSpec,
    FieldSpec,
    HttpCall,
    HttpPages,
    ParamSpec,
    RecordSpec,
    SoapCall,
    SqlQuery,
)
from gateway.catalogue.tomlpos import KeyLines
from gateway.domain.vocabulary import SUBJECT_KINDS
from proofless.v1 import verification_pb2 as pb

CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_FIELD = re.compile(r"[a-z][a-z0-9_]{0,47}")
_ENUM_VALUE = re.compile(r"[a-z][a-z0-9_]{0,47}")
_PLACEHOLDERS = frozenset({"{subject}", "{request_id}"})
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")

#: the converter a field type reads with unless it names another
DEFAULT_CONVERTER: Mapping[str, str] = {
    "string": "text",
    "date": "date",
    "month": "month6",
    "region": "region_code",
    "integer": "integer",
    "number": "number",
    "bool": "flag",
    "datetime": "beijing_time",
}
AUTH_SCHEMES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # scheme → (required keys, optional keys); values are strings, secrets are *_file paths
    "none": ((), ()),
    "hmac_appkey": (("app_key", "secret_file"), ()),
    "api_key": (("key_file",), ("header",)),
    "bearer": (("token_file",), ()),
    "basic": (("username", "password_file"), ()),
    "oauth2_client_credentials": (
        ("token_url", "client_id", "client_secret_file"),
        ("scope", "client_auth"),
    ),
    "mtls": (("cert_file", "key_file"), ("ca_file",)),
}


@dataclass
class RawClaim:
    """A claim as read, before its rule is compiled against the whole catalogue."""

    code: str
    evidence: str
    description: str
    params: tuple[ParamSpec, ...]
    rule: str
    reads: dict[str, str]
    persons: dict[str, str]
    when_not_found: str
    undetermined: list[tuple[str, str, str]]  # (when, code, message)
    table: Table


@dataclass
class ParsedFile:
    source: str
    issues: Issues
    department: Department | None = None
    evidence: dict[str, EvidenceType] = field(default_factory=dict)
    claims: list[RawClaim] = field(default_factory=list)


def parse_file(text: str, source: str, overrides: Mapping[str, Any] | None = None) -> ParsedFile:
    """One catalogue file. `overrides` (the gateway configuration's `[departments.<code>]`)
    replaces department keys for this deployment: endpoints, credentials, pool sizes."""
    out = ParsedFile(source, Issues(source, KeyLines(text)))
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        out.issues.add((), f"not valid TOML: {exc}")
        return out
    try:
        top = Table(out.issues, (), doc)
        top.only("department", "enums", "evidence")
        dep_table = top.table("department", required=True)
        assert dep_table is not None
        code = dep_table.text("code")
        if overrides and code in overrides:
            dep_table.data = _merged(dep_table.data, _as_department(overrides[code]))
        out.department = _department(dep_table, source)
    except Invalid:
        return out
    enums = _enums(top)
    evidence_table = top.table("evidence")
    if evidence_table is None:
        top.note("evidence", "a department file declares at least one evidence type")
        return out
    for code, table in evidence_table.children():
        try:
            evidence, claims = _evidence(code, table, out.department, enums)
        except Invalid:
            continue
        out.evidence[code] = evidence
        out.claims.extend(claims)
    return out


_DEPARTMENT_KEYS = frozenset(
    {
        "code",
        "name",
        "english",
        "connector",
        "endpoint",
        "timeout_ms",
        "pool_size",
        "health",
        "proto_enum",
        "auth",
        "settings",
        "resilience",
    }
)


def _as_department(over: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration override as [department] keys: resilience knobs may be written flat
    (`[departments.household] retries = 0`), as operators tune them next to the endpoint."""
    out: dict[str, Any] = {}
    resilience: dict[str, Any] = {}
    for key, value in over.items():
        if key in _DEPARTMENT_KEYS:
            out[key] = value
        else:
            resilience[key] = value
    if resilience:
        out["resilience"] = {**dict(out.get("resilience", {})), **resilience}
    return out


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        out[key] = (
            _merged(current, value)
            if isinstance(current, Mapping) and isinstance(value, Mapping)
            else value
        )
    return out


# ---- department -------------------------------------------------------------------------


def _department(t: Table, source: str) -> Department:
    t.only(
        "code",
        "name",
        "english",
        "connector",
        "endpoint",
        "timeout_ms",
        "pool_size",
        "health",
        "proto_enum",
        "auth",
        "settings",
        "resilience",
    )
    code = t.text("code")
    if not CODE.fullmatch(code):
        t.fail("code", "must be 1-32 of a-z 0-9 _, starting with a letter")
    connector = t.choice("connector", CONNECTOR_KINDS)
    timeout_ms = t.get("timeout_ms", int, 2000)
    if not 1 <= timeout_ms <= 120_000:
        t.note("timeout_ms", "must be between 1 and 120000")
    pool_size = t.get("pool_size", int, 16)
    if not 1 <= pool_size <= 1024:
        t.note("pool_size", "must be between 1 and 1024")
    auth = _auth(t.table("auth"))
    settings = t.table("settings")
    resilience = t.table("resilience")
    proto_enum = 0
    if "proto_enum" in t.data:
        name = t.text("proto_enum")
        try:
            proto_enum = pb.Department.Value(name)
        except ValueError:
            t.note("proto_enum", f"proofless.v1.Department has no value {name}")
    return Department(
        code=code,
        name=t.text("name"),
        english=t.text("english", ""),
        connector=connector,  # type: ignore[arg-type]
        endpoint=t.text("endpoint"),
        auth=auth,
        timeout_ms=timeout_ms,
        pool_size=pool_size,
        health=t.text("health", ""),
        settings=dict(settings.data) if settings else {},
        resilience=dict(resilience.data) if resilience else {},
        proto_enum=proto_enum,
        source=source,
    )


def _auth(t: Table | None) -> AuthSpec:
    if t is None:
        return AuthSpec("none", {})
    scheme = t.choice("scheme", tuple(AUTH_SCHEMES))
    required, optional = AUTH_SCHEMES[scheme]
    t.only("scheme", *required, *optional)
    settings = {key: t.text(key) for key in required}
    settings.update({key: t.text(key) for key in optional if key in t.data})
    return AuthSpec(scheme, settings)  # type: ignore[arg-type]


# ---- enums ------------------------------------------------------------------------------


def _enums(top: Table) -> dict[str, EnumSpec]:
    out: dict[str, EnumSpec] = {}
    table = top.table("enums")
    if table is None:
        return out
    for name, t in table.children():
        try:
            t.only("values", "codes", "descriptions")
            values = t.strings("values")
            for i, value in enumerate(values):
                if not _ENUM_VALUE.fullmatch(value):
                    t.note("values", f"value {i} must be lower_snake_case (a-z 0-9 _)")
            if len(set(values)) != len(values):
                t.note("values", "lists a value twice")
            codes_t = t.table("codes", required=True)
            assert codes_t is not None
            codes: dict[str, str] = {}
            for code, value in codes_t.data.items():
                if not isinstance(value, str) or value not in values:
                    codes_t.note(code, "must map to one of the enum's values")
                    continue
                codes[code] = value
            descriptions_t = t.table("descriptions")
            descriptions = (
                {k: str(v) for k, v in descriptions_t.data.items()} if descriptions_t else {}
            )
            out[name] = EnumSpec(name, tuple(values), codes, descriptions)
        except Invalid:
            continue
    return out


# ---- evidence types ---------------------------------------------------------------------


def _evidence(
    code: str, t: Table, department: Department, enums: Mapping[str, EnumSpec]
) -> tuple[EvidenceType, list[RawClaim]]:
    if not CODE.fullmatch(code):
        t.fail(None, "evidence code must be 1-32 of a-z 0-9 _, starting with a letter")
    kinds = {"http_json": "http", "sql": "sql", "soap": "soap"}
    t.only(
        "name",
        "description",
        "subject",
        "cardinality",
        "message",
        "subject_field",
        "as_of",
        "field",
        "records",
        "claims",
        kinds[department.connector],
    )
    records = _sub_records(t, enums)
    record = RecordSpec(code, _fields(t, "field", enums, records))
    if not record.fields:
        t.fail("field", "an evidence type has at least one field")
    fetch_t = t.table(kinds[department.connector], required=True)
    assert fetch_t is not None
    fetch = _fetch(department.connector, fetch_t)
    evidence = EvidenceType(
        code=code,
        name=t.text("name"),
        description=t.text("description", ""),
        department=department.code,
        subject=t.choice("subject", tuple(sorted(SUBJECT_KINDS))),  # type: ignore[arg-type]
        cardinality=t.choice("cardinality", ("one", "many"), "one"),  # type: ignore[arg-type]
        record=record,
        fetch=fetch,
        as_of=_as_of(t.table("as_of")),
        subject_field=t.text("subject_field", ""),
        message=t.text("message", ""),
    )
    claims: list[RawClaim] = []
    claims_t = t.table("claims")
    if claims_t is not None:
        for name, ct in claims_t.children():
            try:
                claims.append(_claim(code, name, ct))
            except Invalid:
                continue
    return evidence, claims


def _sub_records(t: Table, enums: Mapping[str, EnumSpec]) -> dict[str, RecordSpec]:
    out: dict[str, RecordSpec] = {}
    records_t = t.table("records")
    if records_t is None:
        return out
    for name, rt in records_t.children():
        rt.only("field")
        out[name] = RecordSpec(name, _fields(rt, "field", enums, {}))
    return out


def _fields(
    t: Table, key: str, enums: Mapping[str, EnumSpec], records: Mapping[str, RecordSpec]
) -> tuple[FieldSpec, ...]:
    out: list[FieldSpec] = []
    seen: set[str] = set()
    for ft in t.tables(key):
        try:
            f = _field(ft, enums, records)
        except Invalid:
            continue
        if f.name in seen:
            ft.note("name", f"field {f.name!r} is declared twice")
            continue
        seen.add(f.name)
        out.append(f)
    return tuple(out)


def _field(t: Table, enums: Mapping[str, EnumSpec], records: Mapping[str, RecordSpec]) -> FieldSpec:
    t.only(
        "name",
        "type",
        "from",
        "convert",
        "personal",
        "required",
        "description",
        "enum",
        "record",
        "sort",
    )
    name = t.text("name")
    if not _FIELD.fullmatch(name):
        t.fail("name", "must be lower_snake_case (a-z 0-9 _), starting with a letter")
    kind = t.choice("type", FIELD_TYPES)
    sources = tuple(t.strings("from"))
    if not sources or not all(sources):
        t.fail("from", "names the department key(s) the field comes from")
    enum: EnumSpec | None = None
    record: RecordSpec | None = None
    if kind == "enum":
        enum_name = t.text("enum")
        enum = enums.get(enum_name)
        if enum is None:
            t.fail("enum", f"no [enums.{enum_name}] in this file")
        assert enum is not None
        convert, converter = converters.code(enum.codes), "code"
        if "convert" in t.data:
            t.note("convert", "an enum field reads its code table; remove convert")
    elif kind == "list":
        record_name = t.text("record")
        record = records.get(record_name)
        if record is None:
            t.fail("record", f"no [[...records.{record_name}.field]] for this evidence type")
        convert, converter = _no_convert, "rows"
    else:
        converter = t.text("convert", DEFAULT_CONVERTER[kind])
        entry = converters.LIBRARY.get(converter)
        if entry is None:
            t.fail(
                "convert",
                f"unknown converter; one of {', '.join(sorted(converters.LIBRARY))}",
            )
        assert entry is not None
        convert, arity = entry
        if arity != len(sources):
            t.fail("from", f"converter {converter} reads {arity} department key(s)")
    sort = tuple(t.strings("sort", []))
    if sort and record is None:
        t.note("sort", "only a list field has a sort order")
    for key in sort:
        if record is not None and record.field(key) is None:
            t.note("sort", f"the sub-record has no field {key!r}")
    return FieldSpec(
        name=name,
        type=kind,  # type: ignore[arg-type]
        description=t.text("description", ""),
        personal=t.get("personal", bool, False),
        sources=sources,
        convert=convert,
        converter=converter,
        required=t.get("required", bool, True),
        enum=enum,
        record=record,
        sort=sort,
    )


def _no_convert(value: object) -> object:
    return value


def _as_of(t: Table | None) -> AsOfSpec:
    if t is None:
        return AsOfSpec()
    t.only("from", "convert", "envelope")
    convert = t.text("convert", "beijing_time")
    if convert not in ("beijing_time", "date", "epoch_ms"):
        t.note("convert", "must be beijing_time, date or epoch_ms")
    return AsOfSpec(tuple(t.strings("from", [])), convert, t.text("envelope", ""))


# ---- how each connector kind fetches ----------------------------------------------------


def _template(t: Table, key: str, value: Any) -> None:
    for found in _PLACEHOLDER.findall(str(value)):
        if found not in _PLACEHOLDERS:
            t.note(key, f"unknown placeholder {found}; known: {', '.join(sorted(_PLACEHOLDERS))}")


def _codes(t: Table, key: str) -> tuple[str, ...]:
    value = t.data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        t.fail(key, "must be an array of codes (strings or integers)")
    return tuple(str(v) for v in value)


def _fetch(kind: str, t: Table) -> FetchSpec:
    if kind == "sql":
        t.only("query", "params")
        query = t.text("query")
        params = tuple(t.strings("params", ["{subject}"]))
        for p in params:
            _template(t, "params", p)
        if query.count("?") != len(params):
            t.note("query", f"has {query.count('?')} placeholders for {len(params)} params")
        return SqlQuery(query, params)
    if kind == "soap":
        t.only("operation", "arguments", "result_field", "success", "not_found", "data")
        args_t = t.table("arguments")
        arguments = {k: str(v) for k, v in (args_t.data if args_t else {}).items()}
        for v in arguments.values():
            _template(t, "arguments", v)
        return SoapCall(
            operation=t.text("operation"),
            arguments=arguments,
            result_field=t.text("result_field", ""),
            success=_codes(t, "success"),
            not_found=_codes(t, "not_found"),
            data=t.text("data", ""),
        )
    t.only(
        "method",
        "path",
        "body",
        "query",
        "result_field",
        "success",
        "not_found",
        "data",
        "pages",
    )
    method = t.choice("method", ("GET", "POST"), "POST")
    path = t.text("path")
    _template(t, "path", path)
    body_t = t.table("body")
    body = dict(body_t.data) if body_t else {}
    query_t = t.table("query")
    query_params = {k: str(v) for k, v in (query_t.data if query_t else {}).items()}
    for key, value in (*body.items(), *query_params.items()):
        _template(t, key, value)
    pages_t = t.table("pages")
    return HttpCall(
        method=method,  # type: ignore[arg-type]
        path=path,
        body=body,
        query=query_params,
        result_field=t.text("result_field", ""),
        success=_codes(t, "success"),
        not_found=_codes(t, "not_found"),
        data=t.text("data", ""),
        pages=_pages(pages_t) if pages_t else None,
    )


def _pages(t: Table) -> HttpPages:
    t.only(
        "into",
        "path",
        "body",
        "page_field",
        "size_field",
        "page_size",
        "list_field",
        "pages_field",
        "total_field",
        "total_counts",
        "max_pages",
    )
    body_t = t.table("body")
    page_size = t.get("page_size", int, 24)
    if not 1 <= page_size <= 1000:
        t.note("page_size", "must be between 1 and 1000")
    return HttpPages(
        into=t.text("into"),
        path=t.text("path"),
        body=dict(body_t.data) if body_t else {},
        page_field=t.text("page_field", "pageNum"),
        size_field=t.text("size_field", "pageSize"),
        page_size=page_size,
        list_field=t.text("list_field", "list"),
        pages_field=t.text("pages_field", "pages"),
        total_field=t.text("total_field", "total"),
        total_counts=t.text("total_counts", ""),
        max_pages=t.get("max_pages", int, 500),
    )


# ---- claims -----------------------------------------------------------------------------


def _claim(evidence: str, name: str, t: Table) -> RawClaim:
    if not CODE.fullmatch(name):
        t.fail(None, "claim name must be 1-32 of a-z 0-9 _, starting with a letter")
    t.only("description", "rule", "param", "reads", "persons", "when_not_found", "undetermined")
    params: list[ParamSpec] = []
    for pt in t.tables("param"):
        try:
            params.append(_param(pt))
        except Invalid:
            continue
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        t.note("param", "declares a parameter twice")
    reads_t = t.table("reads")
    reads = {k: str(v) for k, v in (reads_t.data if reads_t else {}).items()}
    persons_t = t.table("persons")
    persons = {k: str(v) for k, v in (persons_t.data if persons_t else {}).items()}
    for var, param in persons.items():
        spec = next((p for p in params if p.name == param), None)
        if spec is None or spec.type != "person":
            t.note("persons", f"{var} must name a parameter of type person")
    undetermined = [
        (
            ut.text("when"),
            ut.choice("code", ("NOT_FOUND", "FAILED_PRECONDITION")),
            ut.text("message"),
        )
        for ut in t.tables("undetermined")
    ]
    return RawClaim(
        code=f"{evidence}.{name}",
        evidence=evidence,
        description=t.text("description"),
        params=tuple(params),
        rule=t.text("rule"),
        reads=reads,
        persons=persons,
        when_not_found=t.choice(
            "when_not_found", ("does_not_hold", "holds", "undetermined"), "does_not_hold"
        ),
        undetermined=undetermined,
        table=t,
    )


def _param(t: Table) -> ParamSpec:
    t.only(
        "name",
        "type",
        "description",
        "required",
        "default",
        "min",
        "max",
        "values",
        "max_length",
        "normalize",
    )
    name = t.text("name")
    if not _FIELD.fullmatch(name):
        t.fail("name", "must be lower_snake_case (a-z 0-9 _), starting with a letter")
    kind = t.choice("type", PARAM_TYPES)
    values = tuple(t.strings("values", []))
    if kind == "enum" and not values:
        t.fail("values", "an enum parameter lists its values")
    default = t.data.get("default")
    if default is not None:
        expected = {"integer": int, "bool": bool}.get(kind, str)
        if not isinstance(default, expected) or (expected is int and isinstance(default, bool)):
            t.note("default", f"must be a {kind} like the parameter")
        if kind == "enum" and default not in values:
            t.note("default", "must be one of the values")
        if kind in ("person", "organisation"):
            t.note("default", "a person or organisation parameter has no default")
    minimum = t.get("min", int, None)
    maximum = t.get("max", int, None)
    if (minimum is not None or maximum is not None) and kind != "integer":
        t.note("min", "only integer parameters have a range")
    return ParamSpec(
        name=name,
        type=kind,  # type: ignore[arg-type]
        description=t.text("description", ""),
        required=t.get("required", bool, False),
        default=default,
        minimum=minimum,
        maximum=maximum,
        values=values,
        max_length=t.get("max_length", int, 64),
        normalize=t.get("normalize", bool, False),
    )
