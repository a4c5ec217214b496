"""Connectors by kind, not by department: the catalogue says which kind a department speaks
(`http_json`, `sql`, `soap`) and configures it; no department has code of its own.

`build_connectors(catalogue)` makes one connector per department, each serving every evidence
type of that department. Nothing connects yet: sessions and pools open on first use inside
the running event loop; `close()` each connector on shutdown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adapters.base import DepartmentAdapter
from adapters.connectors.http_json import HttpJsonConnector
from adapters.connectors.soap import SoapConnector
from adapters.connectors.sql import SqlConnector
from gateway.catalogue.schema import Catalogue, Department, EvidenceType
from gateway.domain.errors import ConfigError

Factory = Callable[[Department, Mapping[str, EvidenceType]], DepartmentAdapter[Any]]

KINDS: dict[str, Factory] = {
    "http_json": HttpJsonConnector,
    "sql": SqlConnector,
    "soap": SoapConnector,
}


def build_connector(department: Department, catalogue: Catalogue) -> DepartmentAdapter[Any]:
    factory = KINDS.get(department.connector)
    if factory is None:
        raise ConfigError(
            f"department {department.code}: the {department.connector} connector is not "
            f"available in this build (have: {', '.join(sorted(KINDS))})"
        )
    evidence = {e.code: e for e in catalogue.evidence.values() if e.department == department.code}
    return factory(department, evidence)


def build_connectors(catalogue: Catalogue) -> dict[str, DepartmentAdapter[Any]]:
    return {code: build_connector(d, catalogue) for code, d in catalogue.departments.items()}
