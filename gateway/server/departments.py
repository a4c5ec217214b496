"""The departments as the servicer sees them: one resilient connector per catalogue
department, rebuilt when the catalogue changes it, and the one place a department is called.

`Departments.update(catalogue)` builds a connector (adapters.connectors) for each department,
wraps it in the resilience layer configured for it (gateway.server.resilience), and replaces
the connectors of departments whose declaration changed; a replaced connector finishes the
calls it has in flight and is closed after `RETIRE_AFTER_S`. `fetch` records the department
in the call's audit record, its outcome in the metrics and, when the call is traced, in a
CLIENT span `department <code>` (gateway.ops.tracing), the current span while the connector
runs, so that an HTTP connector passes its trace context on to the department.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from adapters.base import DepartmentAdapter, Fetched, RecordQuery
from adapters.connectors import build_connector
from gateway.catalogue.schema import Catalogue, Department, EvidenceType
from gateway.domain.access import Access
from gateway.domain.errors import (
    DeadlineExceeded,
    ProoflessError,
    RecordNotFound,
    Unavailable,
)
from gateway.ops.metrics import Metrics
from gateway.ops.tracing import department_span
from gateway.server.resilience import ResilienceConfig, ResilientAdapter

log = logging.getLogger("proofless.departments")

#: a replaced connector is closed this long after the catalogue changed
RETIRE_AFTER_S = 30.0

Factory = Callable[[Department, Catalogue], DepartmentAdapter[Any]]


def resilience_of(department: Department) -> ResilienceConfig:
    """The department's resilience settings; its timeout is the connector's."""
    table = {"timeout_ms": department.timeout_ms, **department.resilience}
    return ResilienceConfig.from_table(table, where=f"department {department.code}")


def _declaration(catalogue: Catalogue, code: str) -> tuple[Any, ...]:
    department = catalogue.departments[code]
    evidence = sorted(
        (e for e in catalogue.evidence.values() if e.department == code), key=lambda e: e.code
    )
    return (department, *evidence)


class Departments:
    def __init__(
        self,
        metrics: Metrics,
        *,
        factory: Factory = build_connector,
        replace: Mapping[str, DepartmentAdapter[Any]] | None = None,
    ) -> None:
        """`replace` substitutes connectors by department code (benchmarks, tests); they are
        wrapped in the department's resilience layer all the same."""
        self._metrics = metrics
        self._factory = factory
        self._replace = dict(replace or {})
        self._adapters: dict[str, DepartmentAdapter[Any]] = {}
        self._declarations: dict[str, tuple[Any, ...]] = {}
        self._connectors: dict[str, str] = {}  # department code → connector kind (spans)
        self._retiring: set[asyncio.Task[None]] = set()

    def update(self, catalogue: Catalogue) -> None:
        """Connectors for `catalogue`: new departments added, changed ones replaced, removed
        ones retired. Raises ConfigError (a credential file, a DSN) before changing anything."""
        built: dict[str, DepartmentAdapter[Any]] = {}
        for code, department in catalogue.departments.items():
            declaration = _declaration(catalogue, code)
            if self._declarations.get(code) == declaration:
                continue
            inner = self._replace.get(code) or self._factory(department, catalogue)
            built[code] = ResilientAdapter(
                inner, resilience_of(department), on_state_change=self._metrics.breaker_state
            )
        for code, adapter in built.items():
            old = self._adapters.get(code)
            self._adapters[code] = adapter
            self._declarations[code] = _declaration(catalogue, code)
            self._connectors[code] = catalogue.departments[code].connector
            self._metrics.breaker_state(code, "closed")
            if old is not None:
                self._retire(old)
        for code in [c for c in self._adapters if c not in catalogue.departments]:
            self._retire(self._adapters.pop(code))
            del self._declarations[code]
            self._connectors.pop(code, None)

    def _retire(self, adapter: DepartmentAdapter[Any]) -> None:
        async def close_later() -> None:
            await asyncio.sleep(RETIRE_AFTER_S)
            await adapter.close()

        try:
            task = asyncio.get_running_loop().create_task(close_later())
        except RuntimeError:  # no loop yet (built before serving): nothing is in flight
            return
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def states(self) -> dict[str, str]:
        """Each connected department's breaker state (closed, half_open, open), for /readyz:
        shown, not counted against readiness."""
        return {code: str(getattr(a, "state", "unknown")) for code, a in self._adapters.items()}

    @property
    def adapters(self) -> Mapping[str, DepartmentAdapter[Any]]:
        return self._adapters

    async def fetch(
        self,
        access: Access,
        evidence: EvidenceType,
        subject: str,
        deadline: float,
    ) -> Fetched[Any]:
        """The department's answer about `subject`, by `deadline` (a monotonic instant)."""
        code = evidence.department
        adapter = self._adapters.get(code)
        if adapter is None:
            raise Unavailable(f"department {code} is not connected", reason="NO_CONNECTOR")
        access.departments.append(code)
        t0 = time.perf_counter()
        outcome = "ok"
        with department_span(code, self._connectors.get(code, ""), evidence.code) as span:
            try:
                return await adapter.fetch(
                    RecordQuery(subject, access.request_id, evidence.code), deadline
                )
            except RecordNotFound:
                outcome = "not_found"
                raise
            except DeadlineExceeded:
                outcome = "timeout"
                raise
            except ProoflessError:
                outcome = "error"
                raise
            except Exception as exc:  # a connector bug must not reach the caller as a trace
                outcome = "error"
                log.exception("connector failure", extra={"department": code})
                raise Unavailable(f"department {code} failed", reason="CONNECTOR_FAILURE") from exc
            finally:
                self._metrics.department_call(code, outcome, time.perf_counter() - t0)
                span.set_attribute("proofless.outcome", outcome)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for adapter in self._adapters.values():
            await adapter.close()
