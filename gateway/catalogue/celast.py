"""Reading a type-checked CEL expression (the `CheckedExpr` wire format of the CEL spec).

cel-expr-python (Google's cel-cpp) parses and type-checks claim rules; `Expression.serialize`
hands the checked expression back as a `google.protobuf.Any` holding a `cel.expr.CheckedExpr`.
The gateway needs only its tree (to compile the rule to Python, gateway.catalogue.rules) and
the type of each node, so this module describes just those messages of the CEL spec's
syntax.proto and checked.proto, field for field (the wire format, not the spec's files),
in a private descriptor pool. Pure.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

_FD = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "proofless.celast"

# (message, [(field, number, type, label, type_name)]); type_name relative to the package
_MESSAGES: list[tuple[str, list[tuple[str, int, int, int, str]]]] = [
    (
        "Constant",
        [
            ("null_value", 1, _FD.TYPE_INT32, _FD.LABEL_OPTIONAL, ""),
            ("bool_value", 2, _FD.TYPE_BOOL, _FD.LABEL_OPTIONAL, ""),
            ("int64_value", 3, _FD.TYPE_INT64, _FD.LABEL_OPTIONAL, ""),
            ("uint64_value", 4, _FD.TYPE_UINT64, _FD.LABEL_OPTIONAL, ""),
            ("double_value", 5, _FD.TYPE_DOUBLE, _FD.LABEL_OPTIONAL, ""),
            ("string_value", 6, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
            ("bytes_value", 7, _FD.TYPE_BYTES, _FD.LABEL_OPTIONAL, ""),
        ],
    ),
    ("Ident", [("name", 1, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, "")]),
    (
        "Select",
        [
            ("operand", 1, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("field", 2, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
            ("test_only", 3, _FD.TYPE_BOOL, _FD.LABEL_OPTIONAL, ""),
        ],
    ),
    (
        "Call",
        [
            ("target", 1, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("function", 2, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
            ("args", 3, _FD.TYPE_MESSAGE, _FD.LABEL_REPEATED, "Expr"),
        ],
    ),
    ("CreateList", [("elements", 1, _FD.TYPE_MESSAGE, _FD.LABEL_REPEATED, "Expr")]),
    (
        "CreateStruct",
        [("message_name", 1, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, "")],
    ),
    (
        "Comprehension",
        [
            ("iter_var", 1, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
            ("iter_range", 2, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("accu_var", 3, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
            ("accu_init", 4, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("loop_condition", 5, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("loop_step", 6, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("result", 7, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
            ("iter_var2", 8, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
        ],
    ),
    (
        "Expr",
        [
            ("id", 2, _FD.TYPE_INT64, _FD.LABEL_OPTIONAL, ""),
            ("const_expr", 3, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Constant"),
            ("ident_expr", 4, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Ident"),
            ("select_expr", 5, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Select"),
            ("call_expr", 6, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Call"),
            ("list_expr", 7, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "CreateList"),
            ("struct_expr", 8, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "CreateStruct"),
            ("comprehension_expr", 9, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Comprehension"),
        ],
    ),
    ("ListType", [("elem_type", 1, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Type")]),
    (
        "Type",
        [
            ("primitive", 3, _FD.TYPE_INT32, _FD.LABEL_OPTIONAL, ""),
            ("list_type", 6, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "ListType"),
            ("message_type", 9, _FD.TYPE_STRING, _FD.LABEL_OPTIONAL, ""),
        ],
    ),
    (
        "TypeEntry",
        [
            ("key", 1, _FD.TYPE_INT64, _FD.LABEL_OPTIONAL, ""),
            ("value", 2, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Type"),
        ],
    ),
    (
        "CheckedExpr",
        [
            ("type_map", 3, _FD.TYPE_MESSAGE, _FD.LABEL_REPEATED, "TypeEntry"),
            ("expr", 4, _FD.TYPE_MESSAGE, _FD.LABEL_OPTIONAL, "Expr"),
        ],
    ),
]

# The oneofs of the spec (Expr.expr_kind, Constant.constant_kind, Type.type_kind) are read
# here as plain optional fields: `HasField` tells which one is set, as the oneof would.
PRIMITIVE_BOOL, PRIMITIVE_INT64, PRIMITIVE_UINT64 = 1, 2, 3
PRIMITIVE_DOUBLE, PRIMITIVE_STRING, PRIMITIVE_BYTES = 4, 5, 6


def _build() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(
        name="proofless/celast.proto", package=_PACKAGE, syntax="proto2"
    )
    for name, fields in _MESSAGES:
        message = file.message_type.add(name=name)
        for field, number, kind, label, type_name in fields:
            f = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
        for name, _ in _MESSAGES
    }


_CLASSES = _build()


def checked_expr(serialized: bytes) -> Any:
    """The CheckedExpr inside what `cel_expr_python` `Expression.serialize()` returns."""
    packed = any_pb2.Any.FromString(serialized)
    if not packed.type_url.endswith("/cel.expr.CheckedExpr"):
        raise ValueError(f"not a checked CEL expression: {packed.type_url}")
    return _CLASSES["CheckedExpr"].FromString(packed.value)
