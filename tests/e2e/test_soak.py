"""The one-minute soak in CI (`make soak` runs ten): no errors, gateway RSS growth ≤ 10%."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.soak import soak, table

pytestmark = pytest.mark.slow


def test_one_minute_soak(tmp_path: Path) -> None:
    # Half of the measured capacity, where `make soak` runs at 70 %: the gateway, its
    # simulators and the load share two cores here, and a shared VM's speed moves by up to
    # ~40 % between minutes (BENCHMARKS.md). At 70 % a slow minute overloaded it: p50 410 ms,
    # and 164 of 8,280 calls got UNAVAILABLE from the resilience layer. That is shedding
    # under overload, which the fault suite covers, not what this test is for.
    result = soak(60.0, None, base=tmp_path, share=0.5)
    print("\n" + table(result))
    assert result["errors"] == 0, result["errors_by_code"]
    assert result["requests"] > 0
    assert result["rss_growth_percent"] <= 10.0
