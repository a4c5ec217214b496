"""Readiness that means ready: can this process answer a call as it promises?

A call is answered only once its audit entry is on disk and its proof signed, so the gateway
is ready only while the audit log can be written and the signing key signs (checked once a
second by signing a probe, 40 µs). Each is a named check with its reason on `/readyz`, and
gRPC health follows them (NOT_SERVING while any fails).

Two things are shown but do not make the gateway unready, on purpose:
- a department whose breaker is open: its own calls fail fast (UNAVAILABLE), every other
  department and service item still works; taking the whole gateway out of the load
  balancer would turn one department's outage into everyone's;
- a refused reload of the policy or catalogue: the previous rules stay in force and serve
  (Envoy's rule for a rejected configuration). A bad file pushed to every replica must not
  empty the load balancer; the refusal is an audit entry, an error log line, a metric and an
  alert, and `/readyz` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Readiness:
    serving: bool = False  # started and not yet stopping
    checks: dict[str, str] = field(default_factory=dict)  # name → "ok" or why not
    notes: dict[str, str] = field(default_factory=dict)  # shown, not failing
    departments: Callable[[], Mapping[str, str]] = lambda: {}

    def set(self, name: str, problem: str) -> None:
        self.checks[name] = problem or "ok"

    def note(self, name: str, problem: str) -> None:
        if problem:
            self.notes[name] = problem
        else:
            self.notes.pop(name, None)

    @property
    def ready(self) -> bool:
        return self.serving and all(v == "ok" for v in self.checks.values())

    def report(self) -> dict[str, Any]:
        """What /readyz answers: the verdict, each check, each department's breaker state."""
        out: dict[str, Any] = {
            "ready": self.ready,
            "checks": {"serving": "ok" if self.serving else "not serving", **self.checks},
            "departments": dict(self.departments()),
        }
        if self.notes:
            out["degraded"] = dict(self.notes)
        return out
