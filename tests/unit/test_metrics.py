"""Metrics (names, types, labels, bounded label values), the dashboard sampler's maths, and the
structured log formatter. A fresh CollectorRegistry per test."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.ops.dashboard.sampler import Sampler, quantile
from gateway.ops.logging import (
    BufferedStreamHandler,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_fields,
    redact,
)
from gateway.ops.metrics import MAX_LABEL_VALUES, OTHER, Metrics, bounded
from gateway.server.interceptors import request_id_from

ID_NUMBER = "35010019900307123X"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, version="9.9.9")


def types(registry: CollectorRegistry) -> dict[str, str]:
    return {family.name: family.type for family in registry.collect()}


def label_names(registry: CollectorRegistry, sample: str) -> set[frozenset[str]]:
    return {
        frozenset(s.labels)
        for family in registry.collect()
        for s in family.samples
        if s.name == sample
    }


# -- metric families -----------------------------------------------------------------------


def test_every_family_is_registered_with_its_type(registry: CollectorRegistry) -> None:
    Metrics(registry)
    assert types(registry) == {
        "proofless_requests": "counter",
        "proofless_request_duration_seconds": "histogram",
        "proofless_requests_in_flight": "gauge",
        "proofless_department_requests": "counter",
        "proofless_department_request_duration_seconds": "histogram",
        "proofless_denials": "counter",
        "proofless_circuit_breaker_state": "gauge",
        "proofless_audit_appends": "counter",
        "proofless_audit_append_duration_seconds": "histogram",
        "proofless_audit_tree_size": "gauge",
        "proofless_audit_checkpoints": "counter",
        "proofless_audit_checkpoint_tree_size": "gauge",
        "proofless_audit_last_checkpoint_timestamp_seconds": "gauge",
        "proofless_proofs_signed": "counter",
        "proofless_build_info": "gauge",
        "proofless_ready": "gauge",
        "proofless_audit_volume_free_bytes": "gauge",
        "proofless_audit_volume_size_bytes": "gauge",
        "proofless_audit_index_usage_ratio": "gauge",
        "proofless_audit_index_behind_entries": "gauge",
    }


def test_the_audit_volume_and_index_are_read_at_scrape(
    registry: CollectorRegistry, metrics: Metrics, tmp_path: Path
) -> None:
    assert math.isnan(registry.get_sample_value("proofless_audit_volume_free_bytes") or 0.0)
    behind = [7]
    metrics.watch_audit(tmp_path, index_usage=lambda: 0.25, index_behind=lambda: behind[0])
    st = os.statvfs(tmp_path)
    assert registry.get_sample_value("proofless_audit_volume_size_bytes") == (
        st.f_blocks * st.f_frsize
    )
    assert (registry.get_sample_value("proofless_audit_volume_free_bytes") or 0) > 0
    assert registry.get_sample_value("proofless_audit_index_usage_ratio") == 0.25
    behind[0] = 3
    assert registry.get_sample_value("proofless_audit_index_behind_entries") == 3
    tmp_path.rmdir()  # a volume that cannot be read is NaN, not a failed scrape
    assert math.isnan(registry.get_sample_value("proofless_audit_volume_free_bytes") or 0.0)


def test_request_lifecycle(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.request_started("GetHouseholdRecord")
    metrics.request_started("GetHouseholdRecord")
    assert registry.get_sample_value("proofless_requests_in_flight") == 2
    metrics.request_finished("GetHouseholdRecord", "housing", "ershoufang", "granted", "OK", 0.003)
    metrics.request_finished("GetHouseholdRecord", "housing", "ershoufang", "granted", "OK", 0.2)
    assert registry.get_sample_value("proofless_requests_in_flight") == 0
    labels = {
        "rpc": "GetHouseholdRecord",
        "caller": "housing",
        "service_item": "ershoufang",
        "outcome": "granted",
        "code": "OK",
        "transport": "grpc",
    }
    assert registry.get_sample_value("proofless_requests_total", labels) == 2
    rpc = {"rpc": "GetHouseholdRecord"}
    assert registry.get_sample_value("proofless_request_duration_seconds_count", rpc) == 2
    assert registry.get_sample_value("proofless_request_duration_seconds_sum", rpc) == (
        pytest.approx(0.203)
    )
    assert (
        registry.get_sample_value(
            "proofless_request_duration_seconds_bucket", {**rpc, "le": "0.005"}
        )
        == 1
    )
    assert label_names(registry, "proofless_requests_total") == {frozenset(labels)}


def test_request_buckets_span_half_a_millisecond_to_ten_seconds(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.request_started("VerifyClaims")
    metrics.request_finished("VerifyClaims", "c", "i", "granted", "OK", 0.0001)
    bounds = {
        float(s.labels["le"])
        for f in registry.collect()
        for s in f.samples
        if s.name == "proofless_request_duration_seconds_bucket"
    }
    finite = sorted(b for b in bounds if not math.isinf(b))
    assert finite[0] == 0.0005
    assert finite[-1] == 10.0


def test_department_calls(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.department_call("household", "ok", 0.004)
    metrics.department_call("household", "error", 0.5)
    metrics.department_call("household", "ok", 0.006)
    assert (
        registry.get_sample_value(
            "proofless_department_requests_total", {"department": "household", "outcome": "ok"}
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "proofless_department_request_duration_seconds_count", {"department": "household"}
        )
        == 3
    )


def test_denials_breaker_proofs_and_build_info(
    registry: CollectorRegistry, metrics: Metrics
) -> None:
    metrics.denial("ITEM_NOT_ALLOWED")
    metrics.denial("ITEM_NOT_ALLOWED")
    assert registry.get_sample_value("proofless_denials_total", {"reason": "ITEM_NOT_ALLOWED"}) == 2
    for state, value in (("open", 2), ("half_open", 1), ("half-open", 1), ("closed", 0)):
        metrics.breaker_state("property", state)
        assert (
            registry.get_sample_value("proofless_circuit_breaker_state", {"department": "property"})
            == value
        )
    with pytest.raises(ValueError, match="circuit-breaker state"):
        metrics.breaker_state("property", "melted")
    metrics.proofs_signed()
    metrics.proofs_signed(2)
    assert registry.get_sample_value("proofless_proofs_signed_total") == 3
    assert registry.get_sample_value("proofless_build_info", {"version": "9.9.9"}) == 1


def test_audit_metrics(registry: CollectorRegistry, metrics: Metrics) -> None:
    metrics.audit_appended(0.0012, tree_size=41)
    metrics.audit_appended(0.0008, tree_size=42)
    metrics.checkpoint_signed(42, 1_700_000_000.5)
    assert registry.get_sample_value("proofless_audit_appends_total") == 2
    assert registry.get_sample_value("proofless_audit_append_duration_seconds_count") == 2
    assert registry.get_sample_value("proofless_audit_tree_size") == 42
    assert registry.get_sample_value("proofless_audit_checkpoints_total") == 1
    assert registry.get_sample_value("proofless_audit_checkpoint_tree_size") == 42
    assert (
        registry.get_sample_value("proofless_audit_last_checkpoint_timestamp_seconds")
        == 1_700_000_000.5
    )


# -- bounded labels ------------------------------------------------------------------------


def test_bounded_collapses_unknown_values() -> None:
    allowed = frozenset({"housing", "pension"})
    assert bounded("housing", allowed) == "housing"
    assert bounded("attacker", allowed) == OTHER
    assert Metrics.bounded(ID_NUMBER, allowed) == OTHER


def test_known_sets_bound_caller_and_item(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry, callers={"housing"}, service_items={"ershoufang"})
    metrics.request_started("GetPropertyRecords")
    metrics.request_finished("GetPropertyRecords", "mallory", "case-2024-0001", "denied", "X", 0.1)
    assert (
        registry.get_sample_value(
            "proofless_requests_total",
            {
                "rpc": "GetPropertyRecords",
                "caller": OTHER,
                "service_item": OTHER,
                "outcome": "denied",
                "code": "X",
                "transport": "grpc",
            },
        )
        == 1
    )


def test_personal_data_never_becomes_a_label(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)  # no known sets: the vocabulary guard alone
    metrics.request_started(ID_NUMBER)
    metrics.request_finished(ID_NUMBER, ID_NUMBER, "13912345678", "张三", "OK", 0.1)
    metrics.denial("name with spaces")
    metrics.department_call("350100199003071234", "ok", 0.01)
    exposed = {value for f in registry.collect() for s in f.samples for value in s.labels.values()}
    assert not exposed & {ID_NUMBER, "13912345678", "张三", "350100199003071234"}
    assert OTHER in exposed


def test_label_cardinality_is_capped(registry: CollectorRegistry, metrics: Metrics) -> None:
    for n in range(MAX_LABEL_VALUES + 50):
        metrics.denial(f"REASON_{n}")
    reasons = {
        s.labels["reason"]
        for f in registry.collect()
        for s in f.samples
        if s.name == "proofless_denials_total"
    }
    assert len(reasons) == MAX_LABEL_VALUES + 1  # the admitted ones and "other"
    assert registry.get_sample_value("proofless_denials_total", {"reason": OTHER}) == 50


# -- dashboard sampler maths ---------------------------------------------------------------


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = {"0.1": 50.0, "0.2": 100.0, "+Inf": 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, {"0.1": 0.0, "+Inf": 10.0}) == pytest.approx(0.1)
    assert quantile(0.5, {"0.1": 0.0, "+Inf": 0.0}) is None
    assert quantile(0.5, {}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sampler_rates_latency_and_departments(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    clock = FakeClock()
    sampler = Sampler(registry, interval=1.0, window_seconds=10, mono=clock, wall=clock)
    sampler.sample()
    for n in range(100):
        metrics.request_started("VerifyClaims")
        outcome = "error" if n < 10 else "granted"
        metrics.request_finished("VerifyClaims", "housing", "ershoufang", outcome, "OK", 0.004)
    for _ in range(20):
        metrics.department_call("household", "ok", 0.02)
    for _ in range(5):
        metrics.department_call("household", "timeout", 2.0)
    metrics.breaker_state("property", "open")
    metrics.denial("ITEM_NOT_ALLOWED")
    metrics.checkpoint_signed(7, unix_time=clock.now - 3)
    clock.now += 2.0
    sampler.sample()
    data = sampler.data()

    tiles = data["tiles"]
    assert tiles["requests_per_second"] == pytest.approx(50.0)
    assert tiles["error_rate"] == pytest.approx(0.1)
    assert 2.5 < tiles["p50_ms"] <= 5.0
    assert tiles["checkpoint_age_seconds"] == pytest.approx(5.0)
    assert tiles["requests_total"] == 100
    assert data["series"]["rps"] == [pytest.approx(50.0)]
    departments = {row["department"]: row for row in data["departments"]}
    assert departments["household"]["calls_per_second"] == pytest.approx(12.5)
    assert departments["household"]["error_rate"] == pytest.approx(0.2)
    assert departments["household"]["p99_ms"] > 1000
    assert departments["property"]["breaker"] == "open"
    assert data["denials"] == [{"reason": "ITEM_NOT_ALLOWED", "total": 1, "per_second": 0.5}]
    assert data["totals"]["caller"] == [{"name": "housing", "total": 100}]
    json.dumps(data, allow_nan=False)


def test_sampler_history_is_a_bounded_ring(registry: CollectorRegistry) -> None:
    clock = FakeClock()
    sampler = Sampler(registry, interval=1.0, history_seconds=30, mono=clock, wall=clock)
    for _ in range(100):
        sampler.sample()
        clock.now += 1
    assert len(sampler.data()["series"]["t"]) == 30


# -- structured logs -----------------------------------------------------------------------


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("proofless.test")
    return logger.makeRecord(
        "proofless.test", logging.INFO, __file__, 1, "answered %s", ("GetHouseholdRecord",),
        None, extra=extra,
    )  # fmt: skip


def test_json_log_line_has_the_core_and_allowed_fields() -> None:
    line = JsonFormatter().format(
        _record(request_id="r-1", caller="housing", rpc="GetHouseholdRecord", latency_ms=3.2)
    )
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "proofless.test"
    assert entry["message"] == "answered GetHouseholdRecord"
    assert entry["time"].endswith("+00:00")
    assert entry["request_id"] == "r-1"
    assert entry["latency_ms"] == 3.2


def test_non_whitelisted_extras_are_dropped() -> None:
    entry = json.loads(
        JsonFormatter().format(_record(id_number=ID_NUMBER, full_name="张三", outcome="granted"))
    )
    assert "id_number" not in entry
    assert "full_name" not in entry
    assert "张三" not in json.dumps(entry, ensure_ascii=False)
    assert entry["outcome"] == "granted"
    assert ID_NUMBER not in TextFormatter().format(_record(id_number=ID_NUMBER))


def test_id_shaped_values_are_masked_everywhere() -> None:
    assert ID_NUMBER not in redact(f"lookup of {ID_NUMBER} failed")
    assert "13912345678" not in redact("phone 13912345678")
    assert redact("audit index 12345") == "audit index 12345"
    entry = json.loads(JsonFormatter().format(_record(request_id=f"r-{ID_NUMBER}")))
    assert ID_NUMBER not in json.dumps(entry)


def test_exceptions_log_type_and_stack_not_message() -> None:
    try:
        raise KeyError(ID_NUMBER)
    except KeyError:
        logger = logging.getLogger("proofless.test")
        record = logger.makeRecord(
            "proofless.test", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exc_type"] == "KeyError"
    assert "test_exceptions_log_type_and_stack_not_message" in entry["stack"]
    assert ID_NUMBER not in json.dumps(entry)


def test_configure_logging_writes_json_lines_to_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging("DEBUG")
        configure_logging("INFO")  # idempotent: replaces, does not stack
        ours = [h for h in root.handlers if h not in before[0]]
        assert len(ours) == 1
        logging.getLogger("proofless.x").info("ready", extra={"port": 8080, "secret": "s"})
        ours[0].flush()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        entry = json.loads(lines[0])
        assert entry["port"] == 8080
        assert "secret" not in entry
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])


@contextlib.contextmanager
def buffered_logger(
    name: str, *, flush_bytes: int, interval_s: float
) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own with a BufferedStreamHandler on a StringIO, closed on exit (what
    logging.shutdown does at exit), so the stream then holds every line."""
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, flush_bytes=flush_bytes, interval_s=interval_s)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_buffered_lines_are_written_in_batches_and_warnings_at_once() -> None:
    with buffered_logger("proofless.test.buffered", flush_bytes=1 << 20, interval_s=0.05) as (
        logger,
        stream,
    ):
        logger.info("first", extra={"rpc": "A"})
        logger.info("second", extra={"rpc": "B"})
        assert stream.getvalue() == ""  # held for the batch
        logger.warning("trouble")  # written at once, after the lines before it
        assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == [
            "first",
            "second",
            "trouble",
        ]
        logger.info("later")
        deadline = time.monotonic() + 5
        while "later" not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "later" in stream.getvalue()  # the flusher wrote it within its interval
        logger.info("last")
    # closed: nothing is lost
    assert stream.getvalue().splitlines()[-1].find('"last"') > 0


def test_a_full_batch_is_written_without_waiting() -> None:
    with buffered_logger("proofless.test.full", flush_bytes=400, interval_s=60) as (
        logger,
        stream,
    ):
        for i in range(10):
            logger.info("line %d", i)
        assert len(stream.getvalue().splitlines()) >= 3
    assert len(stream.getvalue().splitlines()) == 10


def test_an_id_shaped_request_id_is_replaced_not_logged_or_audited() -> None:
    """The request id is written in clear into audit entries, trailers and the access log."""
    assert request_id_from((("x-request-id", "case-42.a_b"),)) == "case-42.a_b"
    hex_id = "ed76c14786a446868948319333afecec"  # a uuid4 hex with a 15-digit run inside
    assert request_id_from((("x-request-id", hex_id),)) == hex_id
    for careless in (ID_NUMBER, f"req-{ID_NUMBER}", "13912345678"):
        fresh = request_id_from((("x-request-id", careless),))
        assert careless not in fresh
        assert len(fresh) == 32


def test_access_lines_skip_the_log_record_but_not_the_guards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`log_fields` writes what JsonFormatter writes for the same record; with any other
    handler on the way (here: pytest's capture), it goes through `logging` as usual."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    logger = logging.getLogger("proofless.test.access")
    extra = {
        "request_id": f"r-{ID_NUMBER}",
        "id_number": ID_NUMBER,
        "caller": "quangang-window",
        "latency_ms": 1.5,
        "outcome": "granted",
    }
    try:
        configure_logging("INFO")
        ours = next(h for h in root.handlers if h not in before[0])
        assert isinstance(ours, BufferedStreamHandler)
        monkeypatch.setattr(root, "handlers", [ours])  # ours alone: the fast path
        log_fields(logger, logging.INFO, "rpc", extra)
        log_fields(logger, logging.DEBUG, "rpc", extra)  # below the level: nothing
        ours.flush()
        (fast,) = stream.getvalue().splitlines()
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 1, "rpc", (), None, extra=extra
        )
        want = json.loads(JsonFormatter().format(record))
        got = json.loads(fast)
        assert got.pop("time")[:10] == want.pop("time")[:10]
        assert got == want
        assert list(got) == list(want)  # the same key order, byte-compatible lines
        assert ID_NUMBER not in fast
        monkeypatch.setattr(root, "handlers", [ours, logging.NullHandler()])
        with pytest.MonkeyPatch.context() as m:
            seen: list[logging.LogRecord] = []
            m.setattr(logger, "handle", seen.append)
            log_fields(logger, logging.INFO, "rpc", extra)
        assert len(seen) == 1  # another handler listens: a real record
    finally:
        monkeypatch.undo()
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(before[1])
