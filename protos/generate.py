"""Generate the Python code for protos/proofless/v1/*.proto into the `proofless` package.

The one way generated code is produced (`make proto`). The output is committed so that a
plain `pip install` needs no compiler; tests/unit/test_protos_fresh.py regenerates into a
temporary directory and fails if the committed files are stale.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import google.rpc  # from googleapis-common-protos, a dependency of grpcio-status
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


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
    args += [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    header = '"""Generated from protos/proofless/ by `make proto`; never edit by hand."""\n'
    (out_dir / "proofless" / "__init__.py").write_text(header)
    (pkg / "__init__.py").write_text(header)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="directory that receives proofless/")
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
