"""`make bench` works: one quick round writes a results file with every figure. No timed
assertions (speed is what `make bench` reports, as ratios, not what tests check)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cel import PROBES
from bench.inproc import STAGES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    if not shutil.which("taskset"):
        pytest.skip("taskset (util-linux) is needed to pin the bench's processes")
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for key in ("cpu_model", "cores", "python", "grpcio", "protobuf"):
        assert results["machine"][key]
    for name in (
        "b0",
        "b0_uvloop",
        "gw_mem",
        "gw_mem_uvloop",
        "b1_raw",
        "b1",
        "gw_http",
        "gw_claims",
    ):
        figure = results["throughput"][name]
        assert set(figure["rps"]) == {"min", "median", "max"}
        assert figure["rps"]["median"] > 0
        assert figure["runs"][0]["errors"] == {}
        assert "server" in figure["runs"][0]["cpu"]
        assert "client" in figure["runs"][0]["cpu"]
    for ratio in (
        "gw_mem/b0",
        "gw_mem/b0 on uvloop (by server CPU)",
        "gw_http/b1",
        "added_p50_ms",
        "department_call/raw_transport",
        "gateway_own_us",
    ):
        assert set(results["ratios"][ratio]) == {"min", "median", "max"}
    assert "workers_2/1 ÷ machine bound" in results["ratios"] or any(
        "workers" in n for n in results["notes"]
    )
    other = results["other"]
    for key in (
        "jws_sign_per_s",
        "jws_verify_per_s",
        "audit_appends_per_s",
        "audit_appends_per_s_batched",
        "audit_appends_per_s on uvloop",
        "audit_verify_s_per_million",
        "memory_mib_per_1000_in_flight (median)",
    ):
        assert other[key] > 0
    assert "gw_mem/b0" in done.stdout
    # bench/cel.py: every CEL library that ran gave the compiled rules' answers
    cel = results["cel"]["candidates"]
    assert {"compiled", "cel-expr-python"} <= set(cel)
    for figures in cel.values():
        agreed, total = figures["agree"].split("/")
        assert agreed == total, figures["disagreements"]
        assert figures["call_us"]["social_security.contribution"]["median"] > 0
    assert cel["compiled"]["errors_refused_at_load"] == len(PROBES)


@pytest.mark.parametrize("stage", ["", *sorted(STAGES)])
def test_inproc_driver_runs_with_and_without_each_stage(stage: str) -> None:
    """`python -m bench.inproc [--without STAGE]` still drives the real servicer: its stand-ins
    patch gateway internals by name, and this catches one that no longer exists."""
    cmd = [sys.executable, "-m", "bench.inproc", "--calls", "40", "--rounds", "1"]
    cmd += ["--concurrency", "8"] + (["--without", stage] if stage else [])
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figure = done.stdout.strip().splitlines()[-1]
    assert figure.startswith("gateway own CPU µs/call: "), figure
    syncs = float(figure.rsplit(" ", 1)[-1])
    # the audit stand-in writes nothing; the real log syncs at least once for 40 calls
    assert (syncs == 0) if stage == "audit" else (syncs > 0)
