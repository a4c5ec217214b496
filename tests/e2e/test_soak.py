"""The one-minute soak in CI (`make soak` runs ten): no errors, gateway RSS growth ≤ 10%."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.soak import soak, table

pytestmark = pytest.mark.slow


def test_one_minute_soak(tmp_path: Path) -> None:
    result = soak(60.0, None, base=tmp_path)
    print("\n" + table(result))
    assert result["errors"] == 0, result["errors_by_code"]
    assert result["requests"] > 0
    assert result["rss_growth_percent"] <= 10.0
