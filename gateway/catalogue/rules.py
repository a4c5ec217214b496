"""Claim rules: CEL, type-checked by Google's implementation, compiled to Python.

Rules are Common Expression Language (the expression standard of Envoy RBAC, Kubernetes
admission policies and protovalidate). Each rule is parsed and TYPE-CHECKED at load by
cel-expr-python (cel-cpp): every evidence type is declared to it as a protobuf message built
from the catalogue's field list, every claim's parameters as another, and the domain
functions (gateway.catalogue.functions) with their signatures, so an unknown field, a
parameter the claim does not declare, a string compared with an integer or a wrong argument
is a load error with the checker's own message and column.

Evaluation does not go through a CEL runtime: measured on these machines, cel-cpp spends
~430 µs converting a 360-month contribution history into its values and ~5 ms running the
contribution rule over it, the Rust bindings ~78 ms; a gateway call has ~250 µs for all its
own work. The checked expression's tree (gateway.catalogue.celast) is instead translated into
one Python expression over the canonical records (plain dicts and lists), compiled once:
comprehension macros become Python comprehensions, field access on a declared field that a
department left out reads its proto3 default ("" / 0 / false / []), exactly what the checker
assumed. Only constructs this translation knows are accepted; anything else (timestamps,
maps literals, bytes, optional values…) is a load error naming the construct. One deviation
from CEL, documented in ARCHITECTURE.md: `&&` and `||` evaluate left to right, so an error
on the left is not absorbed by the right; any error during evaluation makes the claim
UNDETERMINED rather than failing the call. tests/unit/catalogue/test_rules.py holds the
compiled rules to cel-cpp's own answers on generated records.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool

from gateway.catalogue import celast, functions
from gateway.catalogue.schema import EvidenceType, ParamSpec, RecordSpec

try:  # an optional import only in the sense that mypy has no stubs for it
    from cel_expr_python import cel
except ImportError as exc:  # pragma: no cover - a broken install
    raise ImportError("cel-expr-python is required to load the evidence catalogue") from exc


class RuleError(Exception):
    """A rule that does not check or cannot be compiled; the text says where and why."""


# ---- the types rules see -----------------------------------------------------------------


@dataclass(frozen=True)
class RuleType:
    """A type in the rule environment: a CEL primitive, a list, or a record (a message)."""

    kind: str  # "string", "int", "double", "bool", "list", "record"
    element: RuleType | None = None
    record: tuple[tuple[str, RuleType], ...] = ()
    name: str = ""  # a record's message name in the rule environment
    always: frozenset[str] = frozenset()  # fields every record has (required by the catalogue)

    def default(self) -> Any:
        return {"string": "", "int": 0, "double": 0.0, "bool": False}.get(self.kind)


STRING: Final = RuleType("string")
INT: Final = RuleType("int")
DOUBLE: Final = RuleType("double")
BOOL: Final = RuleType("bool")

_FIELD_KINDS: Final = {
    "string": STRING,
    "date": STRING,
    "month": STRING,
    "region": STRING,
    "enum": STRING,
    "datetime": STRING,
    "integer": INT,
    "number": DOUBLE,
    "bool": BOOL,
}
_PARAM_KINDS: Final = {"integer": INT, "bool": BOOL}
_PACKAGE: Final = "proofless.catalogue"


def _record_type(spec: RecordSpec, name: str) -> RuleType:
    fields: list[tuple[str, RuleType]] = []
    for f in spec.fields:
        if f.type == "list":
            assert f.record is not None
            sub = _record_type(f.record, f"{name}_{f.record.name}")
            fields.append((f.name, RuleType("list", element=sub)))
        else:
            fields.append((f.name, _FIELD_KINDS[f.type]))
    always = frozenset(f.name for f in spec.fields if f.required)
    return RuleType("record", record=tuple(fields), name=f"{_PACKAGE}.{name}", always=always)


def evidence_type(evidence: EvidenceType) -> RuleType:
    """`record` (cardinality one) or `records` (many) for an evidence type."""
    record = _record_type(evidence.record, f"evidence_{evidence.code}")
    return RuleType("list", element=record) if evidence.cardinality == "many" else record


def params_type(params: Sequence[ParamSpec]) -> RuleType:
    """A claim's parameters: each rule is checked in its own environment, so one name."""
    fields = tuple((p.name, _PARAM_KINDS.get(p.type, STRING)) for p in params)
    # ParsedClaim.rule_params gives every declared parameter a value
    always = frozenset(name for name, _ in fields)
    return RuleType("record", record=fields, name=f"{_PACKAGE}.params", always=always)


# ---- the checking environment ------------------------------------------------------------

_FD = descriptor_pb2.FieldDescriptorProto
_PROTO_KINDS: Final = {
    "string": _FD.TYPE_STRING,
    "int": _FD.TYPE_INT64,
    "double": _FD.TYPE_DOUBLE,
    "bool": _FD.TYPE_BOOL,
}


def _collect(t: RuleType, out: dict[str, RuleType]) -> None:
    if t.kind == "list" and t.element is not None:
        _collect(t.element, out)
    if t.kind == "record" and t.name not in out:
        out[t.name] = t
        for _, sub in t.record:
            _collect(sub, out)


def _pool(variables: Mapping[str, RuleType]) -> descriptor_pool.DescriptorPool:
    records: dict[str, RuleType] = {}
    for t in variables.values():
        _collect(t, records)
    file = descriptor_pb2.FileDescriptorProto(
        name="proofless/catalogue_rules.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, t in records.items():
        message = file.message_type.add(name=name.removeprefix(f"{_PACKAGE}."))
        for number, (fname, ftype) in enumerate(t.record, start=1):
            f = message.field.add(name=fname, number=number, label=_FD.LABEL_OPTIONAL)
            target = ftype
            if ftype.kind == "list":
                f.label = _FD.LABEL_REPEATED
                assert ftype.element is not None
                target = ftype.element
            if target.kind == "record":
                f.type = _FD.TYPE_MESSAGE
                f.type_name = "." + target.name
            else:
                f.type = _PROTO_KINDS[target.kind]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool


def _cel_type(t: RuleType) -> Any:
    if t.kind == "list":
        assert t.element is not None
        return cel.Type.List(_cel_type(t.element))
    if t.kind == "record":
        return cel.Type(t.name)
    return {
        "string": cel.Type.STRING,
        "int": cel.Type.INT,
        "double": cel.Type.DOUBLE,
        "bool": cel.Type.BOOL,
    }[t.kind]


def _function_decls() -> list[Any]:
    s, i, b = cel.Type.STRING, cel.Type.INT, cel.Type.BOOL
    dyn_list = cel.Type.List(cel.Type.DYN)
    spec = [
        ("region_contains", "region_contains_string_string", b, [s, s], functions.region_contains),
        ("distinct_count", "distinct_count_list", i, [dyn_list], functions.distinct_count),
        ("kin_relation", "kin_relation_string_string", s, [s, s], functions.kin_relation),
        ("nfkc", "nfkc_string", s, [s], functions.nfkc),
        ("add_days", "add_days_string_int", s, [s, i], functions.add_days),
        ("add_months", "add_months_string_int", s, [s, i], functions.add_months),
    ]
    return [
        cel.FunctionDecl(name, [cel.Overload(oid, ret, params, impl=impl)])
        for name, oid, ret, params, impl in spec
    ]


#: domain function name → the Python callable the compiled rule calls
DOMAIN: Final[Mapping[str, Callable[..., Any]]] = {
    "region_contains": functions.region_contains,
    "distinct_count": functions.distinct_count,
    "kin_relation": functions.kin_relation,
    "nfkc": functions.nfkc,
    "add_days": functions.add_days,
    "add_months": functions.add_months,
}


def check(text: str, variables: Mapping[str, RuleType]) -> Any:
    """Parse and type-check `text`; the checked expression, or RuleError."""
    env = cel.NewEnv(
        descriptor_pool=_pool(variables),
        variables={name: _cel_type(t) for name, t in variables.items()},
        functions=_function_decls(),
    )
    try:
        expression = env.compile(text)
    except (RuntimeError, ValueError) as exc:
        raise RuleError(_checker_message(str(exc))) from None
    if expression.return_type() != cel.Type.BOOL:
        raise RuleError(f"must be a bool expression, not {expression.return_type().name()}")
    return expression


def _checker_message(text: str) -> str:
    """cel-cpp's error text without its status-code wrapper."""
    text = text.removeprefix("INVALID_ARGUMENT: ").removesuffix(" [INVALID_ARGUMENT]")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


# ---- compiling the checked tree to Python ------------------------------------------------

_BINARY: Final = {
    "_==_": "==",
    "_!=_": "!=",
    "_<_": "<",
    "_<=_": "<=",
    "_>_": ">",
    "_>=_": ">=",
    "_+_": "+",
    "_-_": "-",
    "_*_": "*",
    "@in": "in",
}
_STRING_METHODS: Final = {"startsWith": "startswith", "endsWith": "endswith"}


@dataclass
class _Compiler:
    types: Mapping[int, Any]
    variables: Mapping[str, RuleType]
    records: Mapping[str, RuleType]  # message name → record type
    scopes: list[dict[str, str]] = field(default_factory=list)
    counter: int = 0
    #: loop-invariant field reads, computed once before the expression: name → code
    hoisted: dict[str, str] = field(default_factory=dict)

    def fail(self, what: str) -> RuleError:
        return RuleError(f"uses {what}, which claim rules do not support")

    def default_of(self, expr_id: int) -> str:
        t = self.types.get(expr_id)
        if t is None:
            return "None"
        if t.HasField("list_type"):
            return "_EMPTY_LIST"
        if t.HasField("message_type"):
            return "_EMPTY_RECORD"
        if t.HasField("primitive"):
            return {
                celast.PRIMITIVE_BOOL: "False",
                celast.PRIMITIVE_INT64: "0",
                celast.PRIMITIVE_DOUBLE: "0.0",
                celast.PRIMITIVE_STRING: "''",
            }.get(t.primitive, "None")
        return "None"

    def expr(self, e: Any) -> str:
        if e.HasField("const_expr"):
            return self.const(e.const_expr)
        if e.HasField("ident_expr"):
            return self.ident(e.ident_expr.name)
        if e.HasField("select_expr"):
            s = e.select_expr
            operand = self.expr(s.operand)
            if s.test_only:  # has(x.f): set, and not its proto3 default
                return f"_has({operand}, {s.field!r})"
            operand_type = self.types.get(s.operand.id)
            record = (
                self.records.get(operand_type.message_type)
                if operand_type is not None and operand_type.HasField("message_type")
                else None
            )
            if record is not None and s.field in record.always:
                code = f"{operand}[{s.field!r}]"
            else:
                code = f"{operand}.get({s.field!r}, {self.default_of(e.id)})"
            return self.hoist(code) if self.invariant(operand) else code
        if e.HasField("call_expr"):
            return self.call(e.call_expr, e.id)
        if e.HasField("list_expr"):
            return "[" + ", ".join(self.expr(x) for x in e.list_expr.elements) + "]"
        if e.HasField("comprehension_expr"):
            return self.comprehension(e.comprehension_expr)
        raise self.fail("a message or map literal")

    def const(self, c: Any) -> str:
        for name in ("bool_value", "int64_value", "double_value", "string_value"):
            if c.HasField(name):
                return repr(getattr(c, name))
        raise self.fail("a null, unsigned or bytes literal")

    def ident(self, name: str) -> str:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.variables:
            return f"_{name}"
        raise self.fail(f"the name {name!r}")

    def call(self, c: Any, expr_id: int) -> str:
        fn = c.function
        args = [self.expr(a) for a in c.args]
        target = self.expr(c.target) if c.HasField("target") else None
        if fn == "_&&_":
            return f"({args[0]} and {args[1]})"
        if fn == "_||_":
            return f"({args[0]} or {args[1]})"
        if fn == "!_":
            return f"(not {args[0]})"
        if fn == "-_":
            return f"(-{args[0]})"
        if fn == "_?_:_":
            return f"({args[1]} if {args[0]} else {args[2]})"
        if fn in _BINARY:
            return f"({args[0]} {_BINARY[fn]} {args[1]})"
        if fn == "_/_":
            return f"_div({args[0]}, {args[1]})"
        if fn == "_%_":
            return f"_mod({args[0]}, {args[1]})"
        if fn == "_[_]":
            return f"({args[0]})[{args[1]}]"
        if fn == "size":
            return f"len({target if target is not None else args[0]})"
        if fn in _STRING_METHODS and target is not None:
            return f"({target}).{_STRING_METHODS[fn]}({args[0]})"
        if fn == "contains" and target is not None:
            return f"({args[0]} in {target})"
        if fn in DOMAIN and target is None:
            return f"_fn[{fn!r}](" + ", ".join(args) + ")"
        raise self.fail(f"the function {fn!r}")

    def invariant(self, code: str) -> bool:
        """A read that depends on no comprehension variable, inside a comprehension: it can
        be computed once. (Only field reads are hoisted: they cannot fail on a record.)"""
        return bool(self.scopes) and "_v" not in code

    def hoist(self, code: str) -> str:
        for name, existing in self.hoisted.items():
            if existing == code:
                return name
        name = f"_h{len(self.hoisted)}"
        self.hoisted[name] = code
        return name

    def ident_code(self, name: str) -> str:
        return self.ident(name)

    def local(self, name: str) -> str:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise self.fail(f"the variable name {name!r}")
        self.counter += 1
        return f"_v{self.counter}_{name}"

    def comprehension(self, c: Any) -> str:
        """The standard macro expansions (exists, all, exists_one, filter, map) as Python
        comprehensions; nothing else."""
        source = self.expr(c.iter_range)
        var = self.local(c.iter_var)
        self.scopes.append({c.iter_var: var})
        try:
            kind, predicate, value = self._macro(c)
            p = self.expr(predicate) if predicate is not None else None
            v = self.expr(value) if value is not None else None
        finally:
            self.scopes.pop()
        loop = f"for {var} in {source}"
        if kind == "exists":
            return f"any({p} {loop})"
        if kind == "all":
            return f"all({p} {loop})"
        if kind == "exists_one":
            return f"(sum(1 {loop} if {p}) == 1)"
        if kind == "filter":
            return f"[{var} {loop} if {p}]"
        if p is None:
            return f"[{v} {loop}]"
        return f"[{v} {loop} if {p}]"

    def _macro(self, c: Any) -> tuple[str, Any, Any]:
        accu = c.accu_var
        init, step, result = c.accu_init, c.loop_step, c.result

        def is_accu(e: Any) -> bool:
            return bool(e.HasField("ident_expr") and e.ident_expr.name == accu)

        def call(e: Any, name: str) -> Any:
            return e.call_expr if e.HasField("call_expr") and e.call_expr.function == name else None

        if not is_accu(result) and call(result, "_==_") is None:
            raise self.fail("a comprehension other than exists, all, exists_one, filter, map")
        if init.HasField("const_expr") and init.const_expr.HasField("bool_value"):
            op = call(step, "_||_" if not init.const_expr.bool_value else "_&&_")
            if op is not None and is_accu(op.args[0]):
                return ("exists" if not init.const_expr.bool_value else "all"), op.args[1], None
        if init.HasField("const_expr") and init.const_expr.HasField("int64_value"):
            cond = call(step, "_?_:_")
            if cond is not None:
                return "exists_one", cond.args[0], None
        if init.HasField("list_expr"):
            cond = call(step, "_?_:_")
            append = call(cond.args[1], "_+_") if cond is not None else call(step, "_+_")
            if append is not None and is_accu(append.args[0]):
                item = append.args[1].list_expr.elements[0]
                if item.HasField("ident_expr") and item.ident_expr.name == c.iter_var and cond:
                    return "filter", cond.args[0], None
                return "map", cond.args[0] if cond is not None else None, item
        raise self.fail("a comprehension other than exists, all, exists_one, filter, map")


def _has(record: Any, name: str) -> bool:
    value = record.get(name) if isinstance(record, dict) else None
    return value not in (None, "", 0, 0.0, False, [], {})


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        q = abs(a) // abs(b)  # CEL truncates toward zero; a zero divisor raises
        return q if (a >= 0) == (b >= 0) else -q
    return a / b


def _mod(a: Any, b: Any) -> Any:
    return a - _div(a, b) * b


_EMPTY_RECORD: Final[Mapping[str, Any]] = {}
_GLOBALS: Final = {
    "__builtins__": {"any": any, "all": all, "sum": sum, "len": len},
    "_fn": DOMAIN,
    "_has": _has,
    "_div": _div,
    "_mod": _mod,
    "_EMPTY_LIST": (),
    "_EMPTY_RECORD": _EMPTY_RECORD,
}


@dataclass(frozen=True)
class Rule:
    """A checked, compiled rule: `evaluate(activation)` → its value (a bool)."""

    text: str
    python: str
    variables: Mapping[str, RuleType] = field(repr=False, compare=False)
    _fn: Callable[[Mapping[str, Any]], Any] = field(repr=False, compare=False)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        return self._fn(activation)


def compile_rule(text: str, variables: Mapping[str, RuleType]) -> Rule:
    """Type-check `text` against `variables` and compile it; RuleError if it does not."""
    expression = check(text, variables)
    checked = celast.checked_expr(expression.serialize())
    types = {entry.key: entry.value for entry in checked.type_map}
    records: dict[str, RuleType] = {}
    for t in variables.values():
        _collect(t, records)
    compiler = _Compiler(types, variables, records)
    body = compiler.expr(checked.expr)
    for name in variables:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise RuleError(f"the variable name {name!r} cannot be compiled")
    lines = ["def rule(act):"]
    lines += [f"    _{name} = act.get({name!r})" for name in variables]
    lines += [f"    {name} = {code}" for name, code in compiler.hoisted.items()]
    lines.append(f"    return {body}")
    source = "\n".join(lines)
    # The source is built from the checked tree alone: names from the declared variables,
    # literals through repr(), operators from a fixed table; no rule text reaches it.
    namespace = dict(_GLOBALS)
    exec(compile(source, "<claim rule>", "exec"), namespace)  # noqa: S102
    fn: Callable[[Mapping[str, Any]], Any] = namespace["rule"]  # type: ignore[assignment]
    return Rule(text, source, variables, fn)
