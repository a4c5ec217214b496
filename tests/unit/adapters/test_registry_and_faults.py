"""Building adapters from configuration, and fault specifications."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.household import HouseholdAdapter
from adapters.property import PropertyAdapter
from adapters.registry import build_adapters
from adapters.simulators.faults import Faults
from adapters.social_security import SocialSecurityAdapter
from gateway.domain.errors import ConfigError


def departments(tmp_path: Path) -> dict[str, dict[str, object]]:
    secret = tmp_path / "household-app.secret"
    secret.write_text("ab" * 32 + "\n")
    return {
        "household": {
            "url": "http://127.0.0.1:8101",
            "app_key": "proofless-gateway",
            "app_secret_file": str(secret),
            "timeout_ms": 2000,
            "pool_size": 64,
        },
        "social_security": {"url": "http://127.0.0.1:8102", "timeout_ms": 2000, "pool_size": 64},
        "property": {"dsn": f"sqlite:///{tmp_path}/p.sqlite3", "timeout_ms": 2000, "pool_size": 8},
    }


async def test_build_adapters(tmp_path: Path) -> None:
    adapters = build_adapters(departments(tmp_path))
    try:
        assert isinstance(adapters["household"], HouseholdAdapter)
        assert isinstance(adapters["social_security"], SocialSecurityAdapter)
        assert isinstance(adapters["property"], PropertyAdapter)
        assert {a.department for a in adapters.values()} == set(adapters)
    finally:
        for adapter in adapters.values():
            await adapter.close()


def test_config_errors(tmp_path: Path) -> None:
    cfg = departments(tmp_path)
    with pytest.raises(ConfigError, match="unknown department"):
        build_adapters({"tax": {}})
    with pytest.raises(ConfigError, match="missing key"):
        build_adapters({"social_security": {}})
    cfg["household"]["app_secret_file"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="cannot read"):
        build_adapters({"household": cfg["household"]})
    with pytest.raises(ConfigError):
        build_adapters({"property": {"dsn": "oracle://x"}})
    with pytest.raises(ConfigError, match="bad value"):
        build_adapters({"social_security": {"url": "http://x", "timeout_ms": "soon"}})


def test_fault_parsing() -> None:
    assert Faults.parse({}) == Faults()
    assert Faults.parse({"latency_ms": 10, "error_rate": 0.5}).error_rate == 0.5
    for bad in (
        {"latency_ms": -1},
        {"latency_ms": 1.5},
        {"error_rate": 2},
        {"hang": "yes"},
        {"error_status": 200},
        {"explode": True},
    ):
        with pytest.raises(ValueError):
            Faults.parse(bad)
