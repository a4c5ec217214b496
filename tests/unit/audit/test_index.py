"""The subject index behind ListAccesses (gateway.audit.index): the in-memory one bounded, the
PostgreSQL one fed by every shard as entries land, caught up at start, refusing a log that is
not the one it fed, and rebuilt from the logs."""

from __future__ import annotations

import asyncio
import tomllib
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.entry import subject_of
from gateway.audit.index import (
    AUDIT_INDEX_FULL,
    AUDIT_INDEX_MISMATCH,
    IndexSettings,
    PostgresIndex,
    index_settings,
    open_index,
    reindex_log,
)
from gateway.audit.log import AuditLog
from gateway.domain.errors import ConfigError, Unavailable
from tests.support.auditlog import ID_A, ID_B, PEPPER, access, open_log

A = subject_of(PEPPER, ID_A)
B = subject_of(PEPPER, ID_B)
TODAY = date(2026, 11, 21)


def other(n: int) -> str:
    return subject_of(PEPPER, f"person-{n}")


# ---- in memory: bounded -------------------------------------------------------------------


async def test_past_its_subject_bound_the_memory_index_refuses_and_lets_go(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    log.subject_index.limit(3, 1000)
    for n in range(3):
        await log.append(access(n, subject=other(n)))
    assert await log.accesses(other(2)) == [2]
    assert log.subject_index.usage() == 1.0  # 3 of 3 subjects
    await log.append(access(3, subject=other(3)))  # a fourth subject: past the bound
    with pytest.raises(Unavailable) as info:
        await log.accesses(other(2))
    assert info.value.reason == AUDIT_INDEX_FULL
    assert "postgresql" in info.value.message
    assert log.subject_index.postings == {}  # what it held is let go
    receipt = await log.append(access(4, subject=other(4)))  # appends never depend on it
    assert receipt.index == 4
    await log.close()


async def test_the_entry_bound_holds_for_one_subject_too(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    log.subject_index.limit(10, 5)
    for n in range(5):
        await log.append(access(n, subject=A))
    assert len(await log.accesses(A)) == 5
    await log.append(access(5, subject=A))
    with pytest.raises(Unavailable):
        await log.accesses(A)
    await log.close()


async def test_the_bound_holds_for_the_entries_found_at_opening(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    log = await open_log(tmp_path, note_key)
    for n in range(10):
        await log.append(access(n, subject=other(n)))
    await log.close()
    log = await open_log(tmp_path, note_key)
    log.subject_index.limit(5, 1000)  # as the gateway does, right after opening
    with pytest.raises(Unavailable) as info:
        await log.accesses(other(0))
    assert info.value.reason == AUDIT_INDEX_FULL
    await log.close()
    log = await open_log(tmp_path, note_key)  # within its bounds it answers as before
    log.subject_index.limit(10, 1000)
    assert await log.accesses(other(7)) == [7]
    await log.close()


def test_index_settings() -> None:
    assert index_settings({}) == IndexSettings()
    pg = index_settings({"index": "postgresql", "index_dsn": "postgresql://h/db"})
    assert (pg.kind, pg.schema) == ("postgresql", "proofless")
    for bad in (
        {"index": "redis"},
        {"index": "postgresql"},
        {"index": "postgresql", "index_dsn": "mysql://h/db"},
        {"index_schema": 'x"; DROP TABLE y; --'},
        {"index_max_subjects": 0},
        {"index_max_entries": True},
    ):
        with pytest.raises(ConfigError):
            index_settings(bad)


@pytest.mark.parametrize(
    ("config", "kind"),
    [("config/gateway.toml", "memory"), ("docker/gateway.toml", "memory"),
     ("k8s/gateway.toml", "postgresql")],
)  # fmt: skip
def test_the_deployment_configs_name_their_index(config: str, kind: str) -> None:
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    audit = tomllib.loads((deploy / config).read_text())["audit"]
    assert index_settings(audit, config).kind == kind  # the replicas share one


# ---- PostgreSQL: every shard --------------------------------------------------------------


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"test_index_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def shard(directory: Path, key: Ed25519PrivateKey, origin: str) -> AuditLog:
    return await AuditLog.open(directory, origin=origin, note_key=key)


async def listed(
    index: PostgresIndex, subject: str, today: date | None = None
) -> list[tuple[str, int]]:
    bound = await index.snapshot()
    page = await index.page(subject, start=0, bound=bound, limit=10**6, today=today)
    return [(a.log, a.index) for a in page]


async def test_shards_feed_one_index_as_entries_land(
    tmp_path: Path, note_key: Ed25519PrivateKey, postgres_dsn: str, schema: str
) -> None:
    settings = IndexSettings("postgresql", postgres_dsn, schema)
    one = await shard(tmp_path / "one", note_key, "proofless.test/one")
    two = await shard(tmp_path / "two", note_key, "proofless.test/two")
    index_one = await open_index(settings, one)
    index_two = await open_index(settings, two)
    assert isinstance(index_one, PostgresIndex)
    assert isinstance(index_two, PostgresIndex)

    async def land(log: AuditLog, index: PostgresIndex, entry: dict[str, object]) -> None:
        await log.append(entry)
        await index.snapshot()  # returns once its own shard's entries are in

    await land(one, index_one, access(1))  # A
    await land(two, index_two, access(0))  # B
    await land(two, index_two, access(1, covert_until="2999-01-01"))  # A, covert
    await land(one, index_one, access(3, subjects=[A, B]))  # both
    assert await listed(index_one, A) == [
        ("proofless.test/one", 0),
        ("proofless.test/two", 1),
        ("proofless.test/one", 1),
    ]
    assert await listed(index_one, A, TODAY) == [
        ("proofless.test/one", 0),
        ("proofless.test/one", 1),
    ]
    assert await listed(index_two, B) == [("proofless.test/two", 0), ("proofless.test/one", 1)]
    (row,) = await index_one.page(B, start=0, bound=10**9, limit=1, today=None)
    assert (row.caller, row.record_type, row.outcome) == ("approval-a", "household", "denied")
    assert row.time is not None
    assert row.time.isoformat() == "2026-11-21T10:00:00+00:00"
    assert index_one.behind() == 0
    for index in (index_one, index_two):
        await index.close()
    await one.close()
    await two.close()


async def test_a_shard_catches_up_at_start_from_where_it_stopped(
    tmp_path: Path, note_key: Ed25519PrivateKey, postgres_dsn: str, schema: str
) -> None:
    settings = IndexSettings("postgresql", postgres_dsn, schema)
    log = await shard(tmp_path, note_key, "proofless.test/one")
    index = await open_index(settings, log)
    for n in range(3):
        await log.append(access(n))
    await index.close()
    for n in range(3, 2500):  # while no feeder runs (more than one feeding batch)
        await log.append(access(n))
    await log.close()

    log = await shard(tmp_path, note_key, "proofless.test/one")
    index = await open_index(settings, log)
    assert not log.subject_index.enabled  # listings come from PostgreSQL, not memory
    assert isinstance(index, PostgresIndex)
    rows = await listed(index, A)
    assert [i for _, i in rows] == list(range(1, 2500, 2))
    conn = await asyncpg.connect(postgres_dsn)
    try:
        fed = await conn.fetchval(
            f'SELECT fed FROM "{schema}".shards WHERE origin = $1', log.origin
        )
    finally:
        await conn.close()
    assert fed == log.tree_size
    await index.close()
    await log.close()


async def test_a_log_replaced_under_the_same_origin_is_refused_until_reindexed(
    tmp_path: Path, note_key: Ed25519PrivateKey, postgres_dsn: str, schema: str
) -> None:
    settings = IndexSettings("postgresql", postgres_dsn, schema)
    first = await shard(tmp_path / "first", note_key, "proofless.test/one")
    index = await open_index(settings, first)
    for n in range(6):
        await first.append(access(n))
    await index.snapshot()
    await index.close()
    await first.close()
    # another log under the same origin (a wiped volume, a copy from elsewhere), as long
    replaced = await shard(tmp_path / "second", note_key, "proofless.test/one")
    for n in range(6):
        await replaced.append(access(n, case_id=f"other-{n}"))
    index = await open_index(settings, replaced)
    assert isinstance(index, PostgresIndex)
    with pytest.raises(Unavailable) as info:
        await index.snapshot()
    assert info.value.reason == AUDIT_INDEX_MISMATCH
    assert "reindex" in info.value.message

    await replaced.append(access(6))
    await replaced._checkpoint()
    origin, size, rows = await reindex_log(index, tmp_path / "second", note_key)
    assert (origin, size, rows) == ("proofless.test/one", 7, 7)
    for _ in range(100):  # the feeder retries with backoff; then it carries on from there
        try:
            await index.snapshot()
            break
        except Unavailable:
            await asyncio.sleep(0.1)
    await replaced.append(access(7))
    assert [i for _, i in await listed(index, A)] == [1, 3, 5, 7]
    await index.close()
    await replaced.close()


async def test_reindex_under_a_running_feeder_loses_and_doubles_nothing(
    tmp_path: Path, note_key: Ed25519PrivateKey, postgres_dsn: str, schema: str
) -> None:
    settings = IndexSettings("postgresql", postgres_dsn, schema)
    log = await shard(tmp_path, note_key, "proofless.test/one")
    index = await open_index(settings, log)
    assert isinstance(index, PostgresIndex)
    appends = [asyncio.create_task(log.append(access(n))) for n in range(200)]
    await asyncio.gather(*appends)
    await log._checkpoint()
    _, size, _ = await reindex_log(index, tmp_path, note_key)
    assert size == 200
    for n in range(200, 260):
        await log.append(access(n))
    assert [i for _, i in await listed(index, B)] == list(range(0, 260, 2))
    await index.close()
    await log.close()


async def test_without_its_database_the_log_serves_and_listings_are_unavailable(
    tmp_path: Path, note_key: Ed25519PrivateKey
) -> None:
    nowhere = IndexSettings("postgresql", "postgresql://postgres@127.0.0.1:1/test", "absent")
    log = await shard(tmp_path, note_key, "proofless.test/one")
    index = await open_index(nowhere, log)
    assert (await log.append(access(1))).index == 0  # appends never wait for the index
    for attempt in (index.snapshot(), index.page(A, start=0, bound=9, limit=1, today=None)):
        with pytest.raises(Unavailable) as info:
            await attempt
        assert info.value.reason == "AUDIT_INDEX_UNAVAILABLE"
    assert index.behind() == 1
    await index.close()
    await log.close()
