"""Generate the Python code for protos/proofless/v1/*.proto into the `proofless` package,
and the OpenAPI 3.1 document of the HTTP/JSON door beside it (proofless/v1/openapi.json).

The one way generated code is produced (`make proto`). The output is committed so that a
plain `pip install` needs no compiler; tests/unit/test_protos_fresh.py regenerates into a
temporary directory and fails if the committed files are stale.

The OpenAPI document is written from the descriptors protoc produces (with the protos'
comments as descriptions): the paths from the `google.api.http` annotations, read by the same
`http_rule` the door (gateway/server/http_door.py) routes by, the schemas from the messages as
the proto3 JSON mapping writes them, the errors as google.rpc.Status.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import google.rpc  # from googleapis-common-protos, a dependency of grpcio-status
import grpc_tools
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
sys.path.insert(0, str(ROOT))

from gateway.server.http_door import http_rule  # noqa: E402  (after ROOT is importable)

OPENAPI = "openapi.json"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "proofless" / "v1").glob("*.proto"))


def include_dirs() -> list[str]:
    """The well-known types (grpc_tools) and google/rpc (googleapis-common-protos)."""
    wkt = resources.files(grpc_tools) / "_proto"
    googleapis = Path(next(iter(google.rpc.__path__))).parent.parent
    return [str(PROTO_ROOT), str(wkt), str(googleapis)]


def generate(out_dir: Path) -> None:
    pkg = out_dir / "proofless" / "v1"
    pkg.mkdir(parents=True, exist_ok=True)
    args = ["protoc", *(f"-I{d}" for d in include_dirs())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp) / "descriptors.pb"
        args += [
            f"--descriptor_set_out={descriptors}",
            "--include_imports",
            "--include_source_info",
        ]
        args += [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
    document = openapi(files)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    (pkg / OPENAPI).write_text(text, encoding="utf-8")
    header = '"""Generated from protos/proofless/ by `make proto`; never edit by hand."""\n'
    (out_dir / "proofless" / "__init__.py").write_text(header)
    (pkg / "__init__.py").write_text(header)


# ---- the OpenAPI document --------------------------------------------------------------------

F = descriptor_pb2.FieldDescriptorProto
_INTEGERS = {
    F.TYPE_INT32: "int32", F.TYPE_SINT32: "int32", F.TYPE_SFIXED32: "int32",
    F.TYPE_UINT32: "uint32", F.TYPE_FIXED32: "uint32",
}  # fmt: skip
_LONGS = {
    F.TYPE_INT64: "int64", F.TYPE_SINT64: "int64", F.TYPE_SFIXED64: "int64",
    F.TYPE_UINT64: "uint64", F.TYPE_FIXED64: "uint64",
}  # fmt: skip
#: well-known types as the proto3 JSON mapping writes them
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Field paths, comma-separated, in lowerCamelCase (e.g. name,regionCode).",
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "description": "A message of the type its @type names, with that message's fields.",
    },
}
_TIMEOUT_HEADER = {
    "name": "grpc-timeout",
    "in": "header",
    "required": False,
    "description": "The caller's deadline, as gRPC writes it: up to 8 digits and a unit "
    "(H, M, S, m, u, n), e.g. 5S or 800m. Without it the gateway's default applies.",
    "schema": {"type": "string", "pattern": "^[0-9]{1,8}[HMSmun]$"},
}
_REQUEST_ID_HEADER = {
    "name": "x-request-id",
    "in": "header",
    "required": False,
    "description": "The caller's request id ([A-Za-z0-9._-]{1,64}); echoed in the answer and "
    "written in the call's audit entry. The gateway makes one when absent or unusable.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
}


class _Comments:
    """The comments protoc kept (--include_source_info), by file and descriptor path."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self._by: dict[tuple[str, tuple[int, ...]], str] = {}
        for f in files.file:
            for loc in f.source_code_info.location:
                text = loc.leading_comments or loc.trailing_comments
                if text.strip():
                    lines = [line.strip() for line in text.strip().splitlines()]
                    self._by[(f.name, tuple(loc.path))] = " ".join(lines)

    def get(self, file: str, *path: int) -> str:
        return self._by.get((file, path), "")


def openapi(files: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP/JSON door for the services of proofless.v1."""
    comments = _Comments(files)
    messages: dict[str, tuple[str, tuple[int, ...], descriptor_pb2.DescriptorProto]] = {}
    enums: dict[str, tuple[str, tuple[int, ...], descriptor_pb2.EnumDescriptorProto]] = {}

    def index(
        file: str, prefix: str, path: tuple[int, ...], m: descriptor_pb2.DescriptorProto
    ) -> None:
        name = f"{prefix}.{m.name}"
        messages[name] = (file, path, m)
        for i, nested in enumerate(m.nested_type):
            index(file, name, (*path, 3, i), nested)
        for i, e in enumerate(m.enum_type):
            enums[f"{name}.{e.name}"] = (file, (*path, 4, i), e)

    for f in files.file:
        for i, m in enumerate(f.message_type):
            index(f.name, f".{f.package}", (4, i), m)
        for i, e in enumerate(f.enum_type):
            enums[f".{f.package}.{e.name}"] = (f.name, (5, i), e)

    schemas: dict[str, Any] = {}

    def ref(type_name: str) -> dict[str, Any]:
        name = type_name.lstrip(".")
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in schemas:
            schemas[name] = {}  # placed first: a message may refer to itself
            schemas[name] = message_schema(type_name)
        return {"$ref": f"#/components/schemas/{name}"}

    def scalar(field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        t = field.type
        if t == F.TYPE_STRING:
            return {"type": "string"}
        if t == F.TYPE_BOOL:
            return {"type": "boolean"}
        if t == F.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return {"type": "number", "format": "double" if t == F.TYPE_DOUBLE else "float"}
        if t in _INTEGERS:
            return {"type": "integer", "format": _INTEGERS[t]}
        if t in _LONGS:  # written as a JSON string; a number is read too
            return {"type": ["string", "integer"], "format": _LONGS[t]}
        if t == F.TYPE_ENUM:
            file, path, e = enums[field.type_name]
            schema: dict[str, Any] = {"type": "string", "enum": [v.name for v in e.value]}
            if text := comments.get(file, *path):
                schema["description"] = text
            return schema
        if t == F.TYPE_MESSAGE:
            return ref(field.type_name)
        raise ValueError(f"{field.name}: type {t} has no JSON mapping here")

    def field_schema(
        owner: descriptor_pb2.DescriptorProto, field: descriptor_pb2.FieldDescriptorProto
    ) -> dict[str, Any]:
        if field.type == F.TYPE_MESSAGE and field.type_name in messages:
            entry = messages[field.type_name][2]
            if entry.options.map_entry:
                value = next(f for f in entry.field if f.name == "value")
                return {"type": "object", "additionalProperties": scalar(value)}
        one = scalar(field)
        if field.label == F.LABEL_REPEATED:
            return {"type": "array", "items": one}
        return one

    def message_schema(type_name: str) -> dict[str, Any]:
        file, path, m = messages[type_name]
        properties: dict[str, Any] = {}
        for i, field in enumerate(m.field):
            schema = field_schema(m, field)
            text = comments.get(file, *path, 2, i)
            if text:
                schema = {**schema, "description": text}
            properties[field.json_name] = schema
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if text := comments.get(file, *path):
            out["description"] = text
        return out

    paths: dict[str, Any] = {}
    tags = []
    for f in files.file:
        if not f.package.startswith("proofless."):
            continue
        for si, service in enumerate(f.service):
            full = f"{f.package}.{service.name}"
            # the file's opening comment (attached to `syntax`) describes its service
            about = comments.get(f.name, 6, si) or comments.get(f.name, 12)
            tags.append({"name": service.name, "description": about})
            for mi, method in enumerate(service.method):
                rule = http_rule(full, method.name, method.options)
                operation: dict[str, Any] = {
                    "operationId": f"{service.name}_{method.name}",
                    "tags": [service.name],
                    "summary": method.name,
                    "description": comments.get(f.name, 6, si, 2, mi) or method.name,
                    "parameters": [dict(_TIMEOUT_HEADER), dict(_REQUEST_ID_HEADER)],
                    "responses": {
                        "200": {
                            "description": "The answer (proto3 JSON mapping).",
                            "content": {"application/json": {"schema": ref(method.output_type)}},
                        },
                        "default": {
                            "description": "An error: google.rpc.Status with the same code, "
                            "reason (google.rpc.ErrorInfo) and details as over gRPC.",
                            "content": {"application/json": {"schema": ref(".google.rpc.Status")}},
                        },
                    },
                }
                if rule.body == "*":
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": ref(method.input_type)}},
                    }
                else:
                    request = messages[method.input_type][2]
                    file, path, _ = messages[method.input_type]
                    for i, field in enumerate(request.field):
                        operation["parameters"].append(
                            {
                                "name": field.json_name,
                                "in": "query",
                                "required": False,
                                "description": comments.get(file, *path, 2, i) or field.name,
                                "schema": scalar(field),
                            }
                        )
                paths.setdefault(rule.path, {})[rule.verb.lower()] = operation
    for detail in ("ErrorInfo", "BadRequest", "RetryInfo"):
        if f".google.rpc.{detail}" in messages:
            ref(f".google.rpc.{detail}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Proofless",
            "version": "v1",
            "description": "The HTTP/JSON door of the Proofless gateway: the gRPC services "
            "of proofless.v1 as HTTP/JSON (REST transcoding from the google.api.http "
            "annotations; JSON is the proto3 JSON mapping, unknown fields are an error). Every "
            "call needs a client certificate from the gateway's CA (mutual TLS); the caller is "
            "the system the certificate names. Generated by protos/generate.py; never edit.",
        },
        "servers": [{"url": "https://127.0.0.1:8443", "description": "make run"}],
        "security": [{"mutualTLS": []}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "mutualTLS": {
                    "type": "mutualTLS",
                    "description": "A client certificate issued by the gateway's CA, naming "
                    "the calling system in a URI SAN urn:proofless:caller:<id>.",
                }
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="directory that receives proofless/")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
