"""The committed generated code in proofless/v1 is exactly what `make proto` produces."""

from __future__ import annotations

import filecmp
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "protos"))

import generate  # noqa: E402  (protos/generate.py is a script, not a package module)


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    fresh = tmp_path / "proofless" / "v1"
    committed = ROOT / "proofless" / "v1"
    names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    assert names, "protoc produced nothing"
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    if mismatch or errors:
        pytest.fail(f"proofless/v1 is stale ({', '.join(mismatch + errors)}): run `make proto`")
    extra = {p.name for p in committed.iterdir() if p.suffix in {".py", ".pyi"}} - set(names)
    assert not extra, f"proofless/v1 holds files protoc no longer makes: {sorted(extra)}"
