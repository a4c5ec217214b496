"""Building the connectors from the catalogue (by connector kind, one per department, with the
deployment's overrides), the departments the servicer calls, and fault specifications."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from adapters.connectors import KINDS, build_connector, build_connectors
from adapters.connectors.http_json import HttpJsonConnector
from adapters.connectors.soap import SoapConnector
from adapters.connectors.sql import SqlConnector
from adapters.simulators.faults import Faults
from gateway.catalogue import CatalogueError
from gateway.catalogue.schema import CONNECTOR_KINDS
from gateway.domain.errors import ConfigError
from gateway.ops.metrics import Metrics
from gateway.server.departments import Departments
from gateway.server.resilience import ResilientAdapter
from tests.support.rules import catalogue_with

SECRET = "ab" * 32


def overrides(tmp_path: Path) -> dict[str, Any]:
    """A deployment's [departments]: its own endpoints and credential files."""
    secret = tmp_path / "household-app.secret"
    secret.write_text(SECRET + "\n")
    password = tmp_path / "marriage.password"
    password.write_text("mz-password\n")
    api_key = tmp_path / "medical.key"
    api_key.write_text("yb-key\n")
    client_secret = tmp_path / "market.secret"
    client_secret.write_text("scjg-secret\n")
    return {
        "business_licence": {"auth": {"client_secret_file": str(client_secret)}},
        "medical_insurance": {"auth": {"key_file": str(api_key)}},
        "marriage": {"auth": {"password_file": str(password)}},
        "household": {
            "endpoint": "http://127.0.0.1:8101",
            "auth": {"secret_file": str(secret)},
            "pool_size": 8,
        },
        "social_security": {"endpoint": "http://127.0.0.1:8102", "timeout_ms": 1500},
        "property": {"endpoint": f"sqlite:///{tmp_path}/p.sqlite3", "pool_size": 2},
    }


async def test_build_connectors(tmp_path: Path) -> None:
    catalogue = catalogue_with(overrides(tmp_path))
    connectors = build_connectors(catalogue)
    try:
        assert (
            set(connectors)
            == set(catalogue.departments)
            >= {
                "household",
                "social_security",
                "property",
            }
        )
        assert isinstance(connectors["household"], HttpJsonConnector)
        assert isinstance(connectors["social_security"], HttpJsonConnector)
        assert isinstance(connectors["property"], SqlConnector)
        assert {c.department for c in connectors.values()} == set(connectors)
        # The overrides reached the connectors.
        assert connectors["household"]._http.base_url == "http://127.0.0.1:8101"
        assert connectors["household"]._http.pool_size == 8
        assert connectors["social_security"]._timeout_s == 1.5
        assert connectors["property"].location.target == f"{tmp_path}/p.sqlite3"
        # Each department serves exactly its own evidence types.
        assert set(connectors["household"]._evidence) == {"household"}
        assert set(connectors["property"]._evidence) == {"property"}
    finally:
        for connector in connectors.values():
            await connector.close()


def test_every_declared_connector_kind_builds_or_says_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalogue = catalogue_with(overrides(tmp_path))
    assert set(KINDS) == set(CONNECTOR_KINDS) == {"http_json", "sql", "soap"}
    assert isinstance(build_connector(catalogue.departments["marriage"], catalogue), SoapConnector)
    monkeypatch.delitem(KINDS, "soap")  # a build without it
    soap = dataclasses.replace(catalogue.departments["social_security"], connector="soap")
    with pytest.raises(ConfigError, match="soap connector is not available"):
        build_connector(soap, catalogue)


def test_configuration_errors(tmp_path: Path) -> None:
    cfg = overrides(tmp_path)
    with pytest.raises(CatalogueError) as raised:
        catalogue_with({"tax": {"endpoint": "http://x"}})
    assert "departments.tax: names no catalogue department" in raised.value.diagnostics()

    with pytest.raises(CatalogueError) as raised:
        catalogue_with({"social_security": {"timeout_ms": "soon"}})
    assert "timeout_ms" in raised.value.diagnostics()

    # A scheme whose keys are missing: the catalogue names them.
    with pytest.raises(CatalogueError) as raised:
        catalogue_with({"social_security": {"auth": {"scheme": "api_key"}}})
    assert "key_file" in raised.value.diagnostics()

    absent = tmp_path / "absent"
    cfg["household"]["auth"] = {"secret_file": str(absent)}
    with pytest.raises(ConfigError, match="cannot read the app secret file") as failed:
        build_connectors(catalogue_with(cfg))
    assert str(absent) in str(failed.value)

    empty = tmp_path / "empty.secret"
    empty.write_text("\n")
    cfg["household"]["auth"] = {"secret_file": str(empty)}
    with pytest.raises(ConfigError, match="is empty"):
        build_connectors(catalogue_with(cfg))

    with pytest.raises(ConfigError, match="expected sqlite"):
        build_connectors(catalogue_with({"property": {"endpoint": "oracle://x"}}))
    with pytest.raises(ConfigError, match="schema"):
        build_connectors(
            catalogue_with(
                {"property": {"endpoint": "postgresql://h/db", "settings": {"schema": "x;drop"}}}
            )
        )


async def test_departments_build_one_resilient_connector_per_department(tmp_path: Path) -> None:
    cfg = overrides(tmp_path)
    departments = Departments(Metrics(CollectorRegistry()))
    try:
        catalogue = catalogue_with(cfg)
        departments.update(catalogue)
        first = dict(departments.adapters)
        assert set(first) == set(catalogue.departments)
        for code, adapter in first.items():
            assert isinstance(adapter, ResilientAdapter)
            assert adapter.department == code
            assert adapter.config.timeout_ms == catalogue.departments[code].timeout_ms
        property_ = first["property"]
        assert isinstance(property_, ResilientAdapter)
        assert isinstance(property_._inner, SqlConnector)

        # The same declaration keeps its connector; a changed one is replaced, alone.
        departments.update(catalogue_with(cfg))
        assert departments.adapters == first
        cfg["social_security"]["timeout_ms"] = 900
        departments.update(catalogue_with(cfg))
        assert departments.adapters["social_security"] is not first["social_security"]
        replaced = departments.adapters["social_security"]
        assert isinstance(replaced, ResilientAdapter)
        assert replaced.config.timeout_ms == 900
        assert departments.adapters["household"] is first["household"]

        # A broken credential or resilience setting changes nothing.
        before = dict(departments.adapters)
        broken = {**cfg, "household": {**cfg["household"], "auth": {"secret_file": "/absent"}}}
        broken["social_security"] = {**cfg["social_security"], "timeout_ms": 800}
        with pytest.raises(ConfigError, match="household"):
            departments.update(catalogue_with(broken))
        assert departments.adapters == before
        retries = {**cfg, "social_security": {**cfg["social_security"], "retries": "soon"}}
        with pytest.raises(ConfigError, match=r"social_security\.retries"):
            departments.update(catalogue_with(retries))
        assert departments.adapters == before
    finally:
        await departments.close()


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
