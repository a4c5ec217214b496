"""From a department's answer to a canonical record, and from that to a typed message.

`map_record(spec, row, what)` applies an evidence type's fields to one department row and
returns the canonical record: a plain dict of the fields that were present (optional fields
the department left blank are absent), every value in its canonical form. Any failure is one
`DepartmentMalformed` naming the department key, never the value (values are personal data).

`TypedBuilder` turns canonical records into the proofless.v1 message a typed RPC answers
with (HouseholdRecord, …): enum values become the message's enum numbers, lists become
repeated sub-messages. The catalogue is checked against the message when it loads
(`check_message`), so building never guesses. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import descriptor, symbol_database
from google.protobuf.message import Message

from gateway.catalogue.converters import FAILURES
from gateway.catalogue.schema import EvidenceType, FieldSpec, RecordSpec
from gateway.domain.errors import DepartmentMalformed

_FD = descriptor.FieldDescriptor


def map_record(spec: RecordSpec, row: object, what: str) -> dict[str, Any]:
    """The canonical record of one department row (a mapping of department keys)."""
    if not isinstance(row, Mapping):
        raise DepartmentMalformed(f"{what}: expected an object")
    out: dict[str, Any] = {}
    get = row.get
    for name, primary, sources, required, sub, convert in spec.steps:
        value = get(primary)
        # is_empty, inline: this loop runs for every field of every answer
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise DepartmentMalformed(f"{what}: field {primary} is missing")
            continue
        if sub is not None:
            out[name] = _rows(sub, value, what)
            continue
        try:
            out[name] = convert(value) if sources is None else convert(*map(get, sources))
        except FAILURES:
            # `from None`: the original exception may quote the value.
            raise DepartmentMalformed(f"{what}: field {primary} is unreadable") from None
    return out


def _rows(f: FieldSpec, value: object, what: str) -> list[dict[str, Any]]:
    assert f.record is not None
    if not isinstance(value, list):
        raise DepartmentMalformed(f"{what}: field {f.sources[0]} is unreadable")
    rows = [map_record(f.record, item, f"{what} {f.record.name}") for item in value]
    if f.sort:
        rows.sort(key=_sort_key(f.record, f.sort))
    return rows


SortKey = Callable[[Mapping[str, Any]], tuple[Any, ...]]


def _sort_key(spec: RecordSpec, keys: Sequence[str]) -> SortKey:
    """Rows sort by the named fields; an enum sorts by its declared order, so a typed
    message's repeated field comes out as its enum numbers would order it."""
    orders: list[tuple[str, Mapping[str, int] | None]] = []
    for key in keys:
        f = spec.field(key)
        order = {v: i for i, v in enumerate(f.enum.values)} if f and f.enum else None
        orders.append((key, order))

    def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            row.get(k, "") if order is None else order.get(row.get(k, ""), -1)
            for k, order in orders
        )

    return sort_key


# ---- typed messages ----------------------------------------------------------------------


class CatalogueMismatch(Exception):
    """The catalogue and a typed message disagree (raised at load, with a precise text)."""


def _enum_prefix(enum_type: Any) -> str:
    """HouseholdStatus → HOUSEHOLD_STATUS_ (the proto3 style guide's value prefix)."""
    name = enum_type.name
    out = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()
    return out + "_"


_COMPATIBLE: Mapping[str, frozenset[int]] = {
    "string": frozenset({_FD.TYPE_STRING}),
    "date": frozenset({_FD.TYPE_STRING}),
    "month": frozenset({_FD.TYPE_STRING}),
    "region": frozenset({_FD.TYPE_STRING}),
    "datetime": frozenset({_FD.TYPE_STRING}),
    "integer": frozenset(
        {_FD.TYPE_INT32, _FD.TYPE_INT64, _FD.TYPE_UINT32, _FD.TYPE_UINT64, _FD.TYPE_SINT64}
    ),
    "number": frozenset({_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT}),
    "bool": frozenset({_FD.TYPE_BOOL}),
    "enum": frozenset({_FD.TYPE_ENUM}),
    "list": frozenset({_FD.TYPE_MESSAGE}),
}


Plan = dict[str, Callable[[Any], Any]]


def _plan(spec: RecordSpec, message: Any, where: str) -> Plan:
    """How each canonical field becomes a keyword argument of `message` (a descriptor)."""
    plan: Plan = {}
    for f in spec.fields:
        target = message.fields_by_name.get(f.name)
        if target is None:
            raise CatalogueMismatch(f"{where}.{f.name}: {message.full_name} has no such field")
        if target.type not in _COMPATIBLE[f.type]:
            raise CatalogueMismatch(
                f"{where}.{f.name}: a {f.type} field cannot fill {message.full_name}.{f.name}"
            )
        repeated = target.is_repeated
        if (f.type == "list") != repeated:
            raise CatalogueMismatch(
                f"{where}.{f.name}: list fields fill repeated fields, and only they"
            )
        if f.type == "enum":
            assert f.enum is not None
            prefix = _enum_prefix(target.enum_type)
            numbers: dict[str, int] = {}
            for value in f.enum.values:
                number = target.enum_type.values_by_name.get(prefix + value.upper())
                if number is None:
                    raise CatalogueMismatch(
                        f"{where}.{f.name}: {target.enum_type.full_name} has no value "
                        f"{prefix + value.upper()} for {value!r}"
                    )
                numbers[value] = number.number
            plan[f.name] = numbers.__getitem__
        elif f.type == "list":
            assert f.record is not None
            sub = _plan(f.record, target.message_type, f"{where}.{f.name}")
            cls = symbol_database.Default().GetSymbol(target.message_type.full_name)
            plan[f.name] = _list_builder(sub, cls)
        else:
            plan[f.name] = _same
    return plan


def _list_builder(plan: Plan, cls: Any) -> Callable[[Any], Any]:
    def build(rows: Any) -> Any:
        return [cls(**_kwargs(row, plan)) for row in rows]

    return build


def _same(value: Any) -> Any:
    return value


def _kwargs(record: Mapping[str, Any], plan: Plan) -> dict[str, Any]:
    return {name: plan[name](value) for name, value in record.items()}


class TypedBuilder:
    """Builds the typed message of an evidence type from its canonical records."""

    def __init__(self, evidence: EvidenceType) -> None:
        self.message_class: type[Message] = symbol_database.Default().GetSymbol(evidence.message)
        self._plan = _plan(
            evidence.record, self.message_class.DESCRIPTOR, f"evidence.{evidence.code}"
        )

    def build(self, record: Mapping[str, Any]) -> Message:
        return self.message_class(**_kwargs(record, self._plan))


def check_message(evidence: EvidenceType) -> None:
    """Raise CatalogueMismatch unless every field of `evidence` fills its typed message."""
    try:
        symbol_database.Default().GetSymbol(evidence.message)
    except KeyError:
        raise CatalogueMismatch(
            f"evidence.{evidence.code}.message: no message {evidence.message} in proofless.v1"
        ) from None
    TypedBuilder(evidence)
