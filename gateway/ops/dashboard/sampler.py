"""What the live dashboard shows, computed from the metrics registry.

A `Sampler` reads the registry once a tick (a second by default) into a `Snapshot` and keeps
a ring of recent snapshots and of chart points. Rates and latency quantiles come from the
difference between two snapshots, the way Prometheus' `rate()` and `histogram_quantile()`
work, so the page and Grafana agree. Everything except `Sampler.run` is pure and synchronous:
the ops server owns the task that drives it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry

from gateway.ops.metrics import DEPARTMENT_OK_OUTCOMES

LabelKey = tuple[tuple[str, str], ...]

#: seconds of history in the chart
HISTORY_SECONDS: Final = 300
#: seconds the tiles and tables average over
WINDOW_SECONDS: Final = 10
#: seconds each chart point's latency quantiles cover (one second alone is too noisy)
CHART_LATENCY_SECONDS: Final = 5
BREAKER_NAMES: Final = {0: "closed", 1: "half_open", 2: "open"}
TOP_N: Final = 8

_REQUESTS = "proofless_requests_total"
_REQUEST_BUCKETS = "proofless_request_duration_seconds_bucket"
_DEPARTMENT = "proofless_department_requests_total"
_DEPARTMENT_BUCKETS = "proofless_department_request_duration_seconds_bucket"


@dataclass(frozen=True)
class Snapshot:
    """Every sample of the registry at one moment (`mono` for rates, `wall` for display)."""

    mono: float
    wall: float
    samples: Mapping[str, Mapping[LabelKey, float]]

    def series(self, name: str) -> Mapping[LabelKey, float]:
        return self.samples.get(name, {})


def take(registry: CollectorRegistry, mono: float, wall: float) -> Snapshot:
    """Read every sample of `registry` (`_created` timestamps are skipped)."""
    samples: dict[str, dict[LabelKey, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[key] = sample.value
    return Snapshot(mono=mono, wall=wall, samples=samples)


def sum_by(
    series: Mapping[LabelKey, float], label: str | None, where: Callable[[dict[str, str]], bool]
) -> dict[str, float]:
    """Sum of the samples grouped by `label` ("" for all when `label` is None)."""
    out: dict[str, float] = {}
    for key, value in series.items():
        labels = dict(key)
        if not where(labels):
            continue
        group = "" if label is None else labels.get(label, "")
        out[group] = out.get(group, 0.0) + value
    return out


def _all(_labels: dict[str, str]) -> bool:
    return True


def increase(
    new: Snapshot,
    old: Snapshot,
    name: str,
    label: str | None = None,
    where: Callable[[dict[str, str]], bool] = _all,
) -> dict[str, float]:
    """How much the counter `name` grew between `old` and `new`, grouped by `label`.
    A series that went down was reset: its new value is its increase (as Prometheus does)."""
    before = old.series(name)
    grown: dict[LabelKey, float] = {}
    for key, value in new.series(name).items():
        previous = before.get(key, 0.0)
        grown[key] = value - previous if value >= previous else value
    return sum_by(grown, label, where)


def quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """`histogram_quantile(q, ...)` over cumulative bucket counts keyed by their `le` bound:
    linear interpolation inside the bucket holding rank q·count; the +Inf bucket answers with
    the highest finite bound. None when the histogram holds no observations."""
    bounds = sorted((float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in bounds:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _latency(
    new: Snapshot,
    old: Snapshot,
    name: str,
    where: Callable[[dict[str, str]], bool] = _all,
) -> tuple[float | None, float | None]:
    buckets = increase(new, old, name, "le", where)
    return _ms(quantile(0.5, buckets)), _ms(quantile(0.99, buckets))


def _is_error(labels: dict[str, str]) -> bool:
    return labels.get("outcome") == "error"


def _department_error(labels: dict[str, str]) -> bool:
    return labels.get("outcome") not in DEPARTMENT_OK_OUTCOMES


def _department_is(name: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("department") == name


def _gauge(snapshot: Snapshot, name: str) -> float | None:
    values = list(snapshot.series(name).values())
    return values[0] if values else None


def _top(counts: Mapping[str, float], n: int = TOP_N) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"name": name, "total": int(total)} for name, total in ranked if total > 0]


@dataclass(frozen=True)
class Point:
    """One chart point: rates over the last tick, latency over the last few seconds."""

    wall: float
    rps: float
    errors_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    in_flight: float


class Sampler:
    """Samples `registry` every `interval` seconds and answers the dashboard's data.json."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        interval: float = 1.0,
        history_seconds: float = HISTORY_SECONDS,
        window_seconds: float = WINDOW_SECONDS,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.window_seconds = window_seconds
        self._mono, self._wall = mono, wall
        ticks = max(1, round(window_seconds / interval))
        self._chart_ticks = max(1, min(ticks, round(CHART_LATENCY_SECONDS / interval)))
        self._snapshots: deque[Snapshot] = deque(maxlen=ticks + 1)
        self._points: deque[Point] = deque(maxlen=max(2, round(history_seconds / interval)))
        # data.json is computed once per tick however often it is fetched (the ops port is
        # reachable by hostile clients too)
        self._answer: tuple[Snapshot, dict[str, Any]] | None = None

    def sample(self) -> None:
        """Read the registry once and add a chart point."""
        snap = take(self.registry, self._mono(), self._wall())
        if self._snapshots:
            prev = self._snapshots[-1]
            elapsed = max(snap.mono - prev.mono, 1e-9)
            old = self._snapshots[max(0, len(self._snapshots) - self._chart_ticks)]
            p50, p99 = _latency(snap, old, _REQUEST_BUCKETS)
            self._points.append(
                Point(
                    wall=snap.wall,
                    rps=increase(snap, prev, _REQUESTS).get("", 0.0) / elapsed,
                    errors_per_second=increase(snap, prev, _REQUESTS, where=_is_error).get("", 0.0)
                    / elapsed,
                    p50_ms=p50,
                    p99_ms=p99,
                    in_flight=_gauge(snap, "proofless_requests_in_flight") or 0.0,
                )
            )
        self._snapshots.append(snap)

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def data(self) -> dict[str, Any]:
        """The JSON document the dashboard page polls."""
        if not self._snapshots:
            self.sample()
        new = self._snapshots[-1]
        if self._answer is None or self._answer[0] is not new:
            self._answer = (new, self._compute(new, self._snapshots[0]))
        return self._answer[1]

    def _compute(self, new: Snapshot, old: Snapshot) -> dict[str, Any]:
        elapsed = new.mono - old.mono
        per_second = 1.0 / elapsed if elapsed > 0 else 0.0

        requests = increase(new, old, _REQUESTS).get("", 0.0)
        errors = increase(new, old, _REQUESTS, where=_is_error).get("", 0.0)
        p50, p99 = _latency(new, old, _REQUEST_BUCKETS)
        checkpoint = _gauge(new, "proofless_audit_last_checkpoint_timestamp_seconds")
        total = new.series(_REQUESTS)
        build = next(iter(new.series("proofless_build_info")), ())
        return {
            "generated_at": new.wall,
            "version": dict(build).get("version", ""),
            "window_seconds": round(elapsed, 3),
            "interval_seconds": self.interval,
            "tiles": {
                "requests_per_second": round(requests * per_second, 3),
                "p50_ms": p50,
                "p99_ms": p99,
                "error_rate": round(errors / requests, 5) if requests else 0.0,
                "in_flight": _gauge(new, "proofless_requests_in_flight") or 0.0,
                "audit_tree_size": int(_gauge(new, "proofless_audit_tree_size") or 0),
                "checkpoint_age_seconds": (
                    round(max(0.0, new.wall - checkpoint), 1) if checkpoint else None
                ),
                "requests_total": int(sum(total.values())),
                "proofs_signed_total": int(_gauge(new, "proofless_proofs_signed_total") or 0),
            },
            "series": {
                "t": [round(p.wall, 3) for p in self._points],
                "rps": [round(p.rps, 3) for p in self._points],
                "errors_per_second": [round(p.errors_per_second, 3) for p in self._points],
                "p50_ms": [p.p50_ms for p in self._points],
                "p99_ms": [p.p99_ms for p in self._points],
                "in_flight": [p.in_flight for p in self._points],
            },
            "departments": self._departments(new, old, per_second),
            "denials": self._denials(new, old, per_second),
            "totals": {
                label: _top(sum_by(total, label, _all))
                for label in ("rpc", "caller", "service_item", "outcome", "code")
            },
        }

    def _departments(self, new: Snapshot, old: Snapshot, per_second: float) -> list[dict[str, Any]]:
        calls = increase(new, old, _DEPARTMENT, "department")
        errors = increase(new, old, _DEPARTMENT, "department", _department_error)
        totals = sum_by(new.series(_DEPARTMENT), "department", _all)
        breakers = {
            dict(key).get("department", ""): BREAKER_NAMES.get(int(value), "unknown")
            for key, value in new.series("proofless_circuit_breaker_state").items()
        }
        rows = []
        for name in sorted(set(totals) | set(breakers)):
            made = calls.get(name, 0.0)
            _, p99 = _latency(new, old, _DEPARTMENT_BUCKETS, _department_is(name))
            rows.append(
                {
                    "department": name,
                    "calls_per_second": round(made * per_second, 3),
                    "error_rate": round(errors.get(name, 0.0) / made, 5) if made else 0.0,
                    "p99_ms": p99,
                    "breaker": breakers.get(name, "closed"),
                    "calls_total": int(totals.get(name, 0.0)),
                }
            )
        return rows

    def _denials(self, new: Snapshot, old: Snapshot, per_second: float) -> list[dict[str, Any]]:
        recent = increase(new, old, "proofless_denials_total", "reason")
        totals = sum_by(new.series("proofless_denials_total"), "reason", _all)
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            {
                "reason": reason,
                "total": int(total),
                "per_second": round(recent.get(reason, 0.0) * per_second, 3),
            }
            for reason, total in ranked
            if total > 0
        ]
