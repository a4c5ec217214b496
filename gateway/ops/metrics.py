"""Prometheus metrics of the gateway: what ops teams watch and alerts fire on.

One `Metrics` owns every collector in the `CollectorRegistry` it is given (the server passes
one registry; tests pass a fresh one each). Names follow Prometheus conventions: the
`proofless_` prefix, `_total` on counters, base units (`_seconds`).

Label values are bounded. A label is a time series: an ID number, a name or a case id in a
label would both leak personal data into every scrape and blow up the series count. So
`caller` and `service_item` go through `bounded` against the policy's known sets, and every
other label (rpc, outcome, code, department, reason) is a short token from a fixed vocabulary
the code defines; as a last guard each label admits at most `MAX_LABEL_VALUES` distinct
values, after which new ones collapse to "other".

The per-request metrics (requests, their latency, in-flight, department calls, audit appends,
proofs) are plain integers and bucket lists that `_HotCollector` turns into metric families
at scrape time, the custom-collector pattern of prometheus_client: an observation is a dict
lookup, a `bisect` and two additions, without the lock and the bucket loop a
`Histogram.observe` takes. They are updated from the event loop's thread only (the servicer
and the interceptor). Label tuples are cached by the raw values (the cache itself is capped,
so hostile values cannot grow it without bound). The rarely-changing metrics (breaker state,
checkpoints, denials, build info) stay prometheus_client collectors.
"""

from __future__ import annotations

import math
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gateway import __version__
from gateway.domain.vocabulary import OUTCOMES

OTHER: Final = "other"
#: distinct values one label may take before new values collapse to "other"
MAX_LABEL_VALUES: Final = 200
#: cached `.labels()` children per metric; beyond this a miss costs one more lookup, no growth
_MAX_CACHED_CHILDREN: Final = 4096

#: request latency: 0.5 ms (a cached or refused call) up to 10 s (a department at its deadline)
REQUEST_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: audit appends are group-committed fsyncs: 100 µs up to a slow disk's second
AUDIT_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

#: request outcomes, as in the audit entry; "error" is what the error rate counts
REQUEST_OUTCOMES: Final = OUTCOMES
#: department call outcomes; every outcome except these two counts as a department error
DEPARTMENT_OK_OUTCOMES: Final = frozenset({"ok", "not_found"})
#: the labels whose values `_Vocabulary` bounds
BOUNDED_LABELS: Final = (
    "rpc", "caller", "service_item", "outcome", "code", "transport", "department", "reason",
)  # fmt: skip
#: circuit-breaker states and the gauge value each is exported as
BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")
#: a run of 11+ digits: a phone number, a 15- or 18-digit resident ID
_LONG_NUMBER = re.compile(r"[0-9]{11}")

_K = TypeVar("_K")
_C = TypeVar("_C")


class _Vocabulary:
    """The values one label has taken: admits up to `limit` distinct tokens, then "other".

    Values must be short tokens without a long run of digits, so an ID number or a phone
    number can never become a label value even by mistake (`trusted` skips that check for
    values already checked against the policy's sets).
    """

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def admit(self, value: str, *, trusted: bool = False) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        if not trusted and (not _TOKEN.fullmatch(value) or _LONG_NUMBER.search(value)):
            return OTHER
        self._seen.add(value)
        return value


def bounded(value: str, allowed: frozenset[str]) -> str:
    """`value` when it is one of the `allowed` label values (the policy's callers or service
    items), otherwise "other"."""
    return value if value in allowed else OTHER


def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    """The `le` label values of `bounds` and +Inf, spelled as prometheus_client spells them."""
    return tuple(floatToGoString(b) for b in (*bounds, math.inf))  # type: ignore[no-untyped-call]


class _Buckets:
    """A histogram's upper bounds and their `le` labels, shared by all its series."""

    __slots__ = ("bounds", "le")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.le = _le(bounds)


REQUEST_SCALE: Final = _Buckets(REQUEST_BUCKETS)
AUDIT_SCALE: Final = _Buckets(AUDIT_BUCKETS)


class _Histogram:
    """One histogram series: observations per bucket (not cumulative, the last is +Inf) and
    their sum."""

    __slots__ = ("counts", "scale", "total")

    def __init__(self, scale: _Buckets) -> None:
        self.scale = scale
        self.counts = [0] * len(scale.le)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bucket whose upper bound is >= value (Prometheus' `le`)
        self.counts[bisect_left(self.scale.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, "+Inf" last, as HistogramMetricFamily takes them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.scale.le, list(self.counts), strict=True):
            running += count
            out.append((bound, running))
        return out


def _cache(cache: dict[_K, _C], key: _K, child: _C) -> _C:
    if len(cache) < _MAX_CACHED_CHILDREN:
        cache[key] = child
    return child


class Metrics:
    """Every Prometheus collector of one gateway process, registered in `registry`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        callers: Iterable[str] | None = None,
        service_items: Iterable[str] | None = None,
    ) -> None:
        self.registry = registry
        self._callers: frozenset[str] | None = None
        self._service_items: frozenset[str] | None = None
        self.known_labels(callers=callers, service_items=service_items)
        self._vocab = {name: _Vocabulary() for name in BOUNDED_LABELS}

        self.denials = Counter(
            "proofless_denials_total",
            "Requests the policy refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.breaker = Gauge(
            "proofless_circuit_breaker_state",
            "Circuit breaker per department: 0 closed, 1 half-open, 2 open.",
            ["department"],
            registry=registry,
        )
        self.audit_checkpoints = Counter(
            "proofless_audit_checkpoints_total",
            "Audit checkpoints signed.",
            registry=registry,
        )
        self.audit_checkpoint_tree_size = Gauge(
            "proofless_audit_checkpoint_tree_size",
            "Tree size of the latest signed audit checkpoint.",
            registry=registry,
        )
        self.audit_last_checkpoint = Gauge(
            "proofless_audit_last_checkpoint_timestamp_seconds",
            "Unix time of the latest signed checkpoint; its age is time() minus this.",
            registry=registry,
        )
        self.build_info = Gauge(
            "proofless_build_info",
            "Always 1; the version label says which build runs.",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version=version).set(1)
        # read at scrape time, once `watch_audit` says where (NaN until then)
        self.ready = Gauge(
            "proofless_ready",
            "1 while a readiness check passes, 0 while it fails (check: audit, signing); "
            "config is 0 while the last reload of the policy or catalogue was refused.",
            ["check"],
            registry=registry,
        )
        self.audit_volume_free = Gauge(
            "proofless_audit_volume_free_bytes",
            "Bytes an unprivileged writer can still use on the audit log's filesystem; the "
            "gateway stops answering when it runs out (every reply waits for its entry).",
            registry=registry,
        )
        self.audit_volume_size = Gauge(
            "proofless_audit_volume_size_bytes",
            "Size of the audit log's filesystem.",
            registry=registry,
        )
        self.audit_index_usage = Gauge(
            "proofless_audit_index_usage_ratio",
            "How full the in-memory subject index is, 0 to 1, against its configured bounds "
            "(1: full, ListAccesses refuses); 0 with the PostgreSQL index.",
            registry=registry,
        )
        self.audit_index_behind = Gauge(
            "proofless_audit_index_behind_entries",
            "Audit entries of this process not yet in the shared (PostgreSQL) subject index.",
            registry=registry,
        )
        for gauge in (self.audit_volume_free, self.audit_volume_size):
            gauge.set(math.nan)

        self._denial_children: dict[str, Counter] = {}

        # the hot path's series, keyed by their (bounded) label values; see _HotCollector
        self.in_flight = 0
        self.requests: dict[tuple[str, str, str, str, str, str], int] = {}
        self.request_duration: dict[str, _Histogram] = {}
        self.department_requests: dict[tuple[str, str], int] = {}
        self.department_duration: dict[str, _Histogram] = {}
        self.audit_appends = 0
        self.audit_append_duration = _Histogram(AUDIT_SCALE)
        self.audit_tree_size = 0
        self.proofs = 0
        # raw label values -> the bounded labels (or the series) they map to
        self._request_labels: dict[
            tuple[str, str, str, str, str, str], tuple[str, str, str, str, str, str]
        ] = {}
        self._duration_series: dict[str, _Histogram] = {}
        self._department_labels: dict[tuple[str, str], tuple[str, str]] = {}
        self._department_series: dict[str, _Histogram] = {}
        registry.register(_HotCollector(self))

    # -- label hygiene -------------------------------------------------------------------

    @staticmethod
    def bounded(value: str, allowed: frozenset[str]) -> str:
        """`value` if it is in `allowed`, otherwise "other" (see module `bounded`)."""
        return bounded(value, allowed)

    def known_labels(
        self, *, callers: Iterable[str] | None = None, service_items: Iterable[str] | None = None
    ) -> None:
        """Tell the metrics the policy's callers and service items: any other value reported
        for those labels becomes "other". Called again when the policy reloads."""
        if callers is not None:
            self._callers = frozenset(callers)
        if service_items is not None:
            self._service_items = frozenset(service_items)

    def _label(self, name: str, value: str, *, trusted: bool = False) -> str:
        return self._vocab[name].admit(value, trusted=trusted)

    def _series(
        self, cache: dict[str, _Histogram], store: dict[str, _Histogram], label: str, raw: str
    ) -> _Histogram:
        """The latency series for the raw label value `raw` (first sight: bound the value,
        find or start its series, cache the way there)."""
        found = store.setdefault(self._label(label, raw), _Histogram(REQUEST_SCALE))
        return _cache(cache, raw, found)

    # -- requests ------------------------------------------------------------------------

    def request_started(self, rpc: str) -> None:
        """A request arrived (pairs with exactly one `request_finished`)."""
        del rpc  # one unlabelled gauge: in-flight is a capacity signal, not a per-RPC one
        self.in_flight += 1

    def request_finished(  # noqa: PLR0917 - positional on purpose: the server's hot path
        self,
        rpc: str,
        caller: str,
        service_item: str,
        outcome: str,
        code: str,
        seconds: float,
        *,
        transport: str = "grpc",
    ) -> None:
        """A request left with `outcome` (see REQUEST_OUTCOMES) and gRPC status `code`, having
        come through the door `transport` ("grpc" or "http")."""
        key = (rpc, caller, service_item, outcome, code, transport)
        labels = self._request_labels.get(key)
        if labels is None:
            if self._callers is not None:
                caller = bounded(caller, self._callers)
            if self._service_items is not None:
                service_item = bounded(service_item, self._service_items)
            found = (
                self._label("rpc", rpc),
                self._label("caller", caller, trusted=self._callers is not None),
                self._label("service_item", service_item, trusted=self._service_items is not None),
                self._label("outcome", outcome),
                self._label("code", code),
                self._label("transport", transport),
            )
            labels = _cache(self._request_labels, key, found)
        requests = self.requests
        requests[labels] = requests.get(labels, 0) + 1
        series = self._duration_series.get(rpc) or self._series(
            self._duration_series, self.request_duration, "rpc", rpc
        )
        series.observe(seconds)
        self.in_flight -= 1

    def denial(self, reason: str) -> None:
        """The policy refused a request for `reason` (an ErrorInfo reason, UPPER_SNAKE_CASE)."""
        counter = self._denial_children.get(reason)
        if counter is None:
            child = self.denials.labels(reason=self._label("reason", reason))
            counter = _cache(self._denial_children, reason, child)
        counter.inc()

    # -- departments ---------------------------------------------------------------------

    def department_call(self, department: str, outcome: str, seconds: float) -> None:
        """One call to a department system ended with `outcome` after `seconds`."""
        key = (department, outcome)
        labels = self._department_labels.get(key)
        if labels is None:
            found = (self._label("department", department), self._label("outcome", outcome))
            labels = _cache(self._department_labels, key, found)
        calls = self.department_requests
        calls[labels] = calls.get(labels, 0) + 1
        series = self._department_series.get(department) or self._series(
            self._department_series, self.department_duration, "department", department
        )
        series.observe(seconds)

    def breaker_state(self, department: str, state: str) -> None:
        """The department's circuit breaker is now `state`: closed, half_open or open."""
        try:
            value = BREAKER_STATES[state]
        except KeyError:
            raise ValueError(f"unknown circuit-breaker state {state!r}") from None
        self.breaker.labels(department=self._label("department", department)).set(value)

    # -- audit log and proofs ------------------------------------------------------------

    def audit_appended(self, seconds: float, tree_size: int) -> None:
        """An audit entry became durable after `seconds`; the tree now holds `tree_size`."""
        self.audit_appends += 1
        self.audit_append_duration.observe(seconds)
        self.audit_tree_size = tree_size

    def checkpoint_signed(self, tree_size: int, unix_time: float) -> None:
        """A checkpoint over `tree_size` entries was signed at `unix_time`."""
        self.audit_checkpoints.inc()
        self.audit_checkpoint_tree_size.set(tree_size)
        self.audit_last_checkpoint.set(unix_time)

    def proofs_signed(self, count: int = 1) -> None:
        """`count` proofs were signed."""
        self.proofs += count

    def watch_audit(
        self,
        directory: Path,
        *,
        index_usage: Callable[[], float] = lambda: 0.0,
        index_behind: Callable[[], int] = lambda: 0,
    ) -> None:
        """Export, at each scrape, the free and total bytes of the filesystem holding the
        audit `directory` (one statvfs) and the subject index's fill and lag."""

        def volume() -> os.statvfs_result | None:
            try:
                return os.statvfs(directory)
            except OSError:
                return None

        def free() -> float:
            st = volume()
            return math.nan if st is None else float(st.f_bavail * st.f_frsize)

        def size() -> float:
            st = volume()
            return math.nan if st is None else float(st.f_blocks * st.f_frsize)

        self.audit_volume_free.set_function(free)
        self.audit_volume_size.set_function(size)
        self.audit_index_usage.set_function(lambda: float(index_usage()))
        self.audit_index_behind.set_function(lambda: float(index_behind()))


class _HotCollector(Collector):
    """Exports the per-request series `Metrics` keeps as plain numbers, with the names, types,
    help and labels they would have as prometheus_client collectors (without `_created`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def describe(self) -> Iterator[Metric]:
        return self._families(samples=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(samples=True)

    def _families(self, *, samples: bool) -> Iterator[Metric]:
        m = self._m
        requests = CounterMetricFamily(
            "proofless_requests",
            "Verification requests finished, by RPC, calling system, service item, outcome, "
            "gRPC status code and the door they came through (grpc, http).",
            labels=["rpc", "caller", "service_item", "outcome", "code", "transport"],
        )
        duration = HistogramMetricFamily(
            "proofless_request_duration_seconds",
            "Time from a request's arrival to its reply, by RPC.",
            labels=["rpc"],
        )
        department = CounterMetricFamily(
            "proofless_department_requests",
            "Calls to department systems, by department and outcome.",
            labels=["department", "outcome"],
        )
        department_duration = HistogramMetricFamily(
            "proofless_department_request_duration_seconds",
            "Latency of calls to department systems, by department.",
            labels=["department"],
        )
        append_duration = HistogramMetricFamily(
            "proofless_audit_append_duration_seconds",
            "Time for an audit entry to become durable (write and group-commit fsync).",
        )
        if samples:
            # dict(...) copies in one step: a scrape never sees a dict change size under it
            for labels, count in dict(m.requests).items():
                requests.add_metric(list(labels), count)
            for name, series in dict(m.request_duration).items():
                duration.add_metric([name], series.buckets(), series.total)
            for labels2, count in dict(m.department_requests).items():
                department.add_metric(list(labels2), count)
            for name, series in dict(m.department_duration).items():
                department_duration.add_metric([name], series.buckets(), series.total)
            append_duration.add_metric(
                [], m.audit_append_duration.buckets(), m.audit_append_duration.total
            )
        yield requests
        yield duration
        yield GaugeMetricFamily(
            "proofless_requests_in_flight",
            "Requests started and not yet finished.",
            value=m.in_flight if samples else None,
        )
        yield department
        yield department_duration
        yield CounterMetricFamily(
            "proofless_audit_appends",
            "Entries appended to the audit log.",
            value=m.audit_appends if samples else None,
        )
        yield append_duration
        yield GaugeMetricFamily(
            "proofless_audit_tree_size",
            "Entries in the audit log's Merkle tree.",
            value=m.audit_tree_size if samples else None,
        )
        yield CounterMetricFamily(
            "proofless_proofs_signed",
            "Proofs (compact JWS) signed.",
            value=m.proofs if samples else None,
        )
