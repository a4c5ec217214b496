"""The one-minute soak in CI (`make soak` runs ten): no errors, gateway RSS growth ≤ 10%."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.soak import soak, table

pytestmark = pytest.mark.slow


def test_one_minute_soak(tmp_path: Path) -> None:
    # A closed loop of 4 callers, where `make soak` paces an open loop at 70 % of the
    # measured capacity. Here the gateway, its simulators and the load share two cores of a
    # VM whose speed drops by half or more for a minute at a time (steal; BENCHMARKS.md). An
    # open loop at a fixed rate then queues calls past their deadlines: fresh-clone CI runs
    # failed at 70 % (164 of 8,280 calls UNAVAILABLE) and at 50 % (1,655 of 4,560, p50
    # 1.3 s). That is overload shedding, which the fault suite covers; a closed loop keeps
    # this test to its question: errors and memory growth under steady load.
    result = soak(60.0, None, base=tmp_path, callers=4)
    print("\n" + table(result))
    assert result["errors"] == 0, result["errors_by_code"]
    assert result["requests"] > 0
    assert result["rss_growth_percent"] <= 10.0
