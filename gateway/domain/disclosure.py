"""What a response discloses: the record narrowed to the allowed top-level fields, and the same
fields as the plain dict the proof payload carries.

`mask_and_disclose(record, fields)` is byte-for-byte what the servicer used to compute with
`FieldMask(paths=sorted(fields)).MergeMessage(record, out)` followed by
`json_format.MessageToDict(out, preserving_proto_field_name=True)`, in one pass over the set
fields and with a per-message-type conversion plan built once (MessageToDict re-inspects every
descriptor on every call: it was ~25 µs of each request). Messages with anything the plan does
not cover (maps, well-known types, bytes, 32-bit floats, extensions, closed enums, custom enum
JSON names) fall back to MessageToDict, so the output never differs.
tests/unit/test_disclosure.py compares the two on every record type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)
_FD = descriptor.FieldDescriptor
Convert = Callable[[Any], Any]

_INT64 = frozenset({_FD.CPPTYPE_INT64, _FD.CPPTYPE_UINT64})
_PLAIN = frozenset({_FD.CPPTYPE_INT32, _FD.CPPTYPE_UINT32, _FD.CPPTYPE_BOOL})
# Message types MessageToDict prints specially (Timestamp, Struct, wrappers, ...).
_SPECIAL_PACKAGE = "google.protobuf."

# full_name -> {field number -> converter}, or None: use MessageToDict
_PLANS: dict[str, dict[int, Convert] | None] = {}


def _identity(value: Any) -> Any:
    return value


def _double(value: float) -> Any:
    if math.isinf(value):
        return "-Infinity" if value < 0.0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return value


def _enum(enum_type: Any) -> Convert | None:
    if enum_type.is_closed:
        return None  # an unknown number raises in MessageToDict: leave that to it
    names: dict[int, str] = {}
    for value in enum_type.values:
        if value.GetOptions().ListFields():
            return None  # e.g. a custom JSON name
        names.setdefault(value.number, value.name)
    return lambda number: names.get(number, number)


def _scalar(field: Any) -> Convert | None:
    cpp = field.cpp_type
    if cpp == _FD.CPPTYPE_MESSAGE:
        plan = _plan(field.message_type)
        if plan is None:
            return None
        return lambda message: _convert(message, plan)
    if cpp == _FD.CPPTYPE_ENUM:
        return _enum(field.enum_type)
    if cpp == _FD.CPPTYPE_STRING:
        return None if field.type == _FD.TYPE_BYTES else _identity
    if cpp in _PLAIN:
        return _identity
    if cpp in _INT64:
        return str
    if cpp == _FD.CPPTYPE_DOUBLE:
        return _double
    return None  # CPPTYPE_FLOAT: MessageToDict rounds it to the shortest float32 form


def _field(field: Any) -> Convert | None:
    if field.is_extension:
        return None
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return None
    convert = _scalar(field)
    if convert is None or not field.is_repeated:
        return convert
    if convert is _identity:
        return list
    return lambda values: [convert(v) for v in values]


def _plan(message_type: Any) -> dict[int, Convert] | None:
    """The conversion plan of a message type (a descriptor; typed Any: upb's and the
    pure-Python descriptor classes differ), or None when MessageToDict must do it."""
    name = message_type.full_name
    if name in _PLANS:
        return _PLANS[name]
    if name.startswith(_SPECIAL_PACKAGE):
        _PLANS[name] = None
        return None
    plan: dict[int, Convert] = {}
    _PLANS[name] = plan  # recursive types see the plan being built
    for field in message_type.fields:
        convert = _field(field)
        if convert is None:
            _PLANS[name] = None
            return None
        plan[field.number] = convert
    return plan


def _convert(message: Message, plan: dict[int, Convert]) -> dict[str, Any]:
    return {field.name: plan[field.number](value) for field, value in message.ListFields()}


def disclose(message: Message) -> dict[str, Any]:
    """`MessageToDict(message, preserving_proto_field_name=True)`, faster."""
    plan = _plan(message.DESCRIPTOR)
    if plan is None:
        return json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=False
        )
    return _convert(message, plan)


def mask_and_disclose(record: M, fields: frozenset[str]) -> tuple[M, dict[str, Any]]:
    """The record with only the top-level `fields` kept, and `disclose()` of that."""
    out = type(record)()
    plan = _plan(record.DESCRIPTOR)
    data: dict[str, Any] = {}
    for field, value in record.ListFields():
        name = field.name
        if name not in fields:
            continue
        if field.is_repeated or field.cpp_type == _FD.CPPTYPE_MESSAGE:
            getattr(out, name).MergeFrom(value)
        else:
            setattr(out, name, value)
        if plan is not None:
            data[name] = plan[field.number](value)
    if plan is None:
        data = disclose(out)
    return out, data
