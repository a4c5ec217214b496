"""The subject index behind ListAccesses ("who accessed my records"): which entries name a
citizen's pseudonym, in memory for one log or in PostgreSQL for every shard of a cluster.

The logs stay the source of truth; an index is derived data, rebuilt from them.

`[audit] index = "memory"` (the default) keeps `MemoryIndex` inside the `AuditLog`: subject →
entry indexes of this one log, filled from the segments at opening and as entries land. It is
bounded (`index_max_subjects`, `index_max_entries`): past either bound it drops what it holds
and `accesses` answers UNAVAILABLE (AUDIT_INDEX_FULL), telling the operator to move to the
PostgreSQL index. It does not evict and fall back to scanning the log: a listing must be
complete or refused (a partial one tells a citizen nobody looked when someone did), and a
scan per query would turn the memory bound into a disk-read amplifier for anyone able to
make the index overflow. Appends never depend on the index, so verification keeps serving.

`[audit] index = "postgresql"` with `index_dsn` (and `index_schema`) shares one index among
every process writing a shard (`serve --workers N`, the StatefulSet's replicas): each shard's
`Feeder` copies its access entries, as they become durable, into one table, and records in
the same transaction how far it has fed (and the leaf hash there, so a log replaced under the
same origin is noticed). At start it catches up from there; `proofless audit reindex`
rebuilds a shard's rows from its files. A listing then sees every shard, ordered by the
table's own sequence, and its page token holds a position in that sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from gateway.audit import merkle
from gateway.audit.entry import KIND_ACCESS
from gateway.audit.note import NoteSigner, SignedCheckpoint
from gateway.audit.storage import LATEST
from gateway.audit.tools import iter_lines
from gateway.domain.errors import ConfigError, IntegrityError, ProoflessError, Unavailable

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.audit.log import AuditLog

log = logging.getLogger(__name__)

AUDIT_INDEX_FULL = "AUDIT_INDEX_FULL"
AUDIT_INDEX_UNAVAILABLE = "AUDIT_INDEX_UNAVAILABLE"
AUDIT_INDEX_MISMATCH = "AUDIT_INDEX_MISMATCH"

#: ~260 bytes a subject (its key and array) and 8 an entry: about 130 MB and 40 MB
DEFAULT_MAX_SUBJECTS = 500_000
DEFAULT_MAX_ENTRIES = 5_000_000
DEFAULT_SCHEMA = "proofless"
#: entries read from the log and stored per transaction
FEED_BATCH = 1000
#: how long a listing waits for its own shard's latest entries to reach the shared index
CATCH_UP_WAIT_S = 2.0
#: how long shutdown gives the feeder to store the last entries
DRAIN_WAIT_S = 5.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
POOL_SIZE = 8
COMMAND_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0

_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


# ---- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSettings:
    """`[audit] index`, `index_dsn`, `index_schema`, `index_max_subjects`, `index_max_entries`."""

    kind: str = "memory"
    dsn: str = ""
    schema: str = DEFAULT_SCHEMA
    max_subjects: int = DEFAULT_MAX_SUBJECTS
    max_entries: int = DEFAULT_MAX_ENTRIES


def index_settings(audit: Mapping[str, Any], source: str = "config") -> IndexSettings:
    """Read the index keys of the `[audit]` table (the rest is gateway.config's)."""
    where = f"{source} [audit]"

    def get(key: str, kind: type, default: Any) -> Any:
        value = audit.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}")
        return value

    kind = get("index", str, "memory")
    if kind not in ("memory", "postgresql"):
        raise ConfigError(f'{where}.index: expected "memory" or "postgresql", got {kind!r}')
    dsn = get("index_dsn", str, "")
    if kind == "postgresql" and not dsn.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f'{where}.index_dsn: index = "postgresql" needs a postgresql:// DSN')
    schema = get("index_schema", str, DEFAULT_SCHEMA)
    if not _SCHEMA.fullmatch(schema):
        raise ConfigError(f"{where}.index_schema: lower-case letters, digits and _ only")
    max_subjects = get("index_max_subjects", int, DEFAULT_MAX_SUBJECTS)
    max_entries = get("index_max_entries", int, DEFAULT_MAX_ENTRIES)
    if max_subjects < 1 or max_entries < 1:
        raise ConfigError(f"{where}.index_max_subjects and index_max_entries must be positive")
    return IndexSettings(kind, dsn, schema, max_subjects, max_entries)


# ---- what a listing shows -------------------------------------------------------------------


@dataclass(frozen=True)
class IndexedAccess:
    """One access about a subject, as a listing shows it."""

    position: int  # the index's own order: the log index (memory) or the row id (PostgreSQL)
    log: str  # the origin of the log (shard) holding the entry
    index: int  # the entry's index in that log
    time: datetime | None
    caller: str
    service_item: str
    purpose: str
    record_type: str
    outcome: str
    covert_until: date | None


def embargo_of(value: Any) -> date | None:
    """An entry's `covert_until` as a date; an unreadable one errs on the side of the
    investigation (hidden for good)."""
    if not value:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return date.max


def hidden_from_citizen(covert_until: date | None, today: date) -> bool:
    """Covert accesses (by policy) stay hidden from the portal until their embargo date."""
    return covert_until is not None and covert_until > today


def _time_of(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def subjects_of(entry: Mapping[str, Any]) -> list[str]:
    """Every subject an entry names (`subjects`, or the older lone `subject`)."""
    listed = entry.get("subjects")
    if not isinstance(listed, list):
        listed = [entry.get("subject")]
    return [s for s in dict.fromkeys(listed) if isinstance(s, str) and _HEX64.fullmatch(s)]


def access_of(origin: str, index: int, entry: Mapping[str, Any], position: int) -> IndexedAccess:
    return IndexedAccess(
        position=position,
        log=origin,
        index=index,
        time=_time_of(entry.get("time")),
        caller=str(entry.get("caller", "")),
        service_item=str(entry.get("service_item", "")),
        purpose=str(entry.get("purpose", "")),
        record_type=str(entry.get("record_type", "")),
        outcome=str(entry.get("outcome", "")),
        covert_until=embargo_of(entry.get("covert_until")),
    )


class AccessIndex(Protocol):
    """What ListAccesses needs of an index."""

    #: names the index, for page tokens: a token works only on the index that issued it
    scope: str

    async def snapshot(self) -> int:
        """The bound of a new listing: positions below it are what the listing sees."""
        ...

    async def page(
        self, subject: str, *, start: int, bound: int, limit: int, today: date | None
    ) -> list[IndexedAccess]:
        """Up to `limit` access entries about `subject` at positions [start, bound), in
        order; `today` given, the ones hidden from the citizen on that day are left out
        before counting (an auditor passes None and sees them all)."""
        ...

    def usage(self) -> float:
        """How full a bounded index is, 0 to 1 (0 for an unbounded one)."""
        ...

    def behind(self) -> int:
        """This process's entries not yet in the index (0 when it reads the log itself)."""
        ...

    async def close(self) -> None: ...


# ---- in memory, one log ---------------------------------------------------------------------


class IndexFull(Exception):
    """The in-memory subject index went past a configured bound."""


class MemoryIndex:
    """Subject → entry indexes of one `AuditLog`, bounded; see the module docstring.

    The log owns it: the writer's batches arrive through `landed` (on the event loop), the
    entries there at opening through `join` from the background scan. `grown` is set on
    every batch that lands, which is what a `Feeder` waits on.
    """

    def __init__(
        self, max_subjects: int = DEFAULT_MAX_SUBJECTS, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.max_subjects = max_subjects
        self.max_entries = max_entries
        self.postings: dict[str, array[int]] = {}
        self.entries = 0
        self.enabled = True
        self.full = False
        self.grown = asyncio.Event()

    def limit(self, max_subjects: int, max_entries: int) -> None:
        """Set the bounds (the gateway's configuration, applied right after opening)."""
        self.max_subjects, self.max_entries = max_subjects, max_entries
        self._check()

    def disable(self) -> None:
        """Keep nothing in memory: listings come from another index (PostgreSQL)."""
        self.enabled = False
        self.postings = {}
        self.entries = 0

    def usage(self) -> float:
        """How full the index is, 0 to 1 (1 once it overflowed); 0 when disabled."""
        if not self.enabled:
            return 0.0
        if self.full:
            return 1.0
        return max(len(self.postings) / self.max_subjects, self.entries / self.max_entries)

    def over(self, subjects: int, entries: int) -> bool:
        return subjects > self.max_subjects or entries > self.max_entries

    def overflow(self) -> None:
        if not self.full:
            log.error(
                "audit subject index: more than %d subjects or %d entries; ListAccesses "
                'answers UNAVAILABLE until the gateway uses [audit] index = "postgresql"',
                self.max_subjects,
                self.max_entries,
            )
        self.full = True
        self.postings = {}
        self.entries = 0

    def _check(self) -> None:
        if self.enabled and not self.full and self.over(len(self.postings), self.entries):
            self.overflow()

    def landed(self, pairs: Sequence[tuple[str, int]]) -> None:
        """A batch is durable: its (subject, index) pairs, in index order."""
        if self.enabled and not self.full and pairs:
            postings = self.postings
            for subject, i in pairs:
                found = postings.get(subject)
                if found is None:
                    found = postings[subject] = array("Q")
                found.append(i)
            self.entries += len(pairs)
            self._check()
        self.grown.set()

    def join(self, before: dict[str, array[int]], entries: int) -> None:
        """Put the entries found at opening (all below every landed one) in front."""
        if not self.enabled or self.full:
            return
        for subject, later in self.postings.items():
            before.setdefault(subject, array("Q")).extend(later)
        self.postings = before
        self.entries += entries
        self._check()

    def get(self, subject: str) -> list[int]:
        if self.full:
            raise Unavailable(
                "the in-memory audit subject index is full; the gateway needs "
                '[audit] index = "postgresql"',
                reason=AUDIT_INDEX_FULL,
            )
        if not self.enabled:
            raise Unavailable("the in-memory subject index is off", reason=AUDIT_INDEX_UNAVAILABLE)
        return list(self.postings.get(subject, ()))


class LogIndex:
    """`AccessIndex` over one log's `MemoryIndex`: positions are that log's entry indexes."""

    def __init__(self, audit_log: AuditLog) -> None:
        self._log = audit_log
        self.scope = f"memory {audit_log.origin}"

    async def snapshot(self) -> int:
        return self._log.tree_size

    async def page(
        self, subject: str, *, start: int, bound: int, limit: int, today: date | None
    ) -> list[IndexedAccess]:
        out: list[IndexedAccess] = []
        for index in await self._log.accesses(subject):
            if index < start:
                continue
            if index >= bound or len(out) == limit:
                break
            (line,) = await self._log.entries(index, index + 1)
            entry = json.loads(line)
            # filtered before the page is cut: a hidden entry never shapes a page or a token
            if entry.get("kind") != KIND_ACCESS:
                continue
            found = access_of(self._log.origin, index, entry, index)
            if today is not None and hidden_from_citizen(found.covert_until, today):
                continue
            out.append(found)
        return out

    def usage(self) -> float:
        return self._log.subject_index.usage()

    def behind(self) -> int:
        return 0

    async def close(self) -> None:
        return None


# ---- PostgreSQL, every shard ----------------------------------------------------------------

#: The statements, with the schema's tables filled in once (`_statements`): the schema name
#: is checked against _SCHEMA when the configuration is read, and quoted.
_SQL = {
    "lock": "SELECT pg_advisory_xact_lock(hashtext($1))",
    "schema": 'CREATE SCHEMA IF NOT EXISTS "{schema}"',
    "table": """
        CREATE TABLE IF NOT EXISTS {accesses} (
            id bigserial PRIMARY KEY,
            subject bytea NOT NULL,
            origin text NOT NULL,
            idx bigint NOT NULL,
            time timestamptz,
            caller text NOT NULL,
            service_item text NOT NULL,
            purpose text NOT NULL,
            record_type text NOT NULL,
            outcome text NOT NULL,
            covert_until date,
            UNIQUE (origin, idx, subject)
        )""",
    "by_subject": "CREATE INDEX IF NOT EXISTS accesses_by_subject ON {accesses} (subject, id)",
    "shards": """
        CREATE TABLE IF NOT EXISTS {shards} (
            origin text PRIMARY KEY,
            fed bigint NOT NULL,
            last_leaf bytea,
            updated timestamptz NOT NULL DEFAULT now()
        )""",
    "snapshot": "SELECT coalesce(max(id), 0) + 1 FROM {accesses}",
    "page": """
        SELECT id, origin, idx, time, caller, service_item, purpose, record_type, outcome,
               covert_until
        FROM {accesses}
        WHERE subject = $1 AND id >= $2 AND id < $3
          AND ($4::date IS NULL OR covert_until IS NULL OR covert_until <= $4)
        ORDER BY id
        LIMIT $5""",
    "shard": "INSERT INTO {shards} (origin, fed) VALUES ($1, 0) ON CONFLICT (origin) DO NOTHING",
    "progress": "SELECT fed, last_leaf FROM {shards} WHERE origin = $1",
    "lock_shard": "SELECT fed FROM {shards} WHERE origin = $1 FOR UPDATE",
    "fed": "UPDATE {shards} SET fed = $2, last_leaf = $3, updated = now() WHERE origin = $1",
    "forget": "DELETE FROM {accesses} WHERE origin = $1",
    # unnest keeps the order: ids follow the log's order within a batch
    "insert": """
        INSERT INTO {accesses} (subject, origin, idx, time, caller, service_item, purpose,
                                record_type, outcome, covert_until)
        SELECT * FROM unnest($1::bytea[], $2::text[], $3::bigint[], $4::timestamptz[],
                             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::date[])
        ON CONFLICT (origin, idx, subject) DO NOTHING""",
}
_COLUMN_COUNT = 10

Row = tuple[bytes, str, int, datetime | None, str, str, str, str, str, date | None]


def _statements(schema: str) -> dict[str, str]:
    if not _SCHEMA.fullmatch(schema):
        raise ConfigError(f"{schema!r}: not a schema name for the subject index")
    names = {"schema": schema, "accesses": f'"{schema}".accesses', "shards": f'"{schema}".shards'}
    return {key: template.format(**names) for key, template in _SQL.items()}


def rows_of(origin: str, first: int, lines: Sequence[bytes]) -> list[Row]:
    """The index rows of log entries [first, first + len(lines)): one per subject of each
    access entry. A line that is not this index's JSON entry is an IntegrityError."""
    rows: list[Row] = []
    for i, line in enumerate(lines, first):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or entry.get("index") != i:
            raise IntegrityError(
                f"audit entry {i} of {origin} is not readable; run `proofless audit verify`",
                reason="AUDIT_CORRUPT",
            )
        if entry.get("kind") != KIND_ACCESS:
            continue
        a = access_of(origin, i, entry, 0)
        for subject in subjects_of(entry):
            rows.append((
                bytes.fromhex(subject), origin, i, a.time, a.caller, a.service_item,
                a.purpose, a.record_type, a.outcome, a.covert_until,
            ))  # fmt: skip
    return rows


def _columns(rows: Sequence[Row]) -> list[list[Any]]:
    return [[row[c] for row in rows] for c in range(_COLUMN_COUNT)]


class IndexMismatch(Unavailable):
    """The shared index holds a different log under this shard's origin."""

    reason = AUDIT_INDEX_MISMATCH


_DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class PostgresIndex:
    """The cluster's subject index: one table every shard feeds, one sequence they share."""

    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self.schema = schema
        self.scope = f"postgresql {schema}"
        self._sql = _statements(schema)
        self._ready = False
        self.feeder: Feeder | None = None

    @classmethod
    async def connect(cls, dsn: str, schema: str = DEFAULT_SCHEMA) -> PostgresIndex:
        """A pool that connects on first use: the gateway starts (and verifies) while the
        database is down; listings answer UNAVAILABLE until it is back."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=POOL_SIZE,
            command_timeout=COMMAND_TIMEOUT_S,
            timeout=CONNECT_TIMEOUT_S,
        )
        return cls(pool, schema)

    async def ensure_schema(self) -> None:
        """Create the schema and tables if they are missing (serialized across processes)."""
        if self._ready:
            return
        sql = self._sql
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql["lock"], self.scope)
            for step in ("schema", "table", "by_subject", "shards"):
                await conn.execute(sql[step])
        self._ready = True

    async def _run(self, what: str, query: Any) -> Any:
        """Run `query(conn)`; a database failure becomes UNAVAILABLE."""
        try:
            await self.ensure_schema()
            async with self._pool.acquire() as conn:
                return await query(conn)
        except _DATABASE_ERRORS as exc:
            log.warning("audit subject index: %s failed: %s", what, type(exc).__name__)
            raise Unavailable(
                "the audit subject index is unavailable", reason=AUDIT_INDEX_UNAVAILABLE
            ) from exc

    async def snapshot(self) -> int:
        if self.feeder is not None:
            await self.feeder.caught_up(CATCH_UP_WAIT_S)

        async def q(conn: Any) -> int:
            return int(await conn.fetchval(self._sql["snapshot"]))

        return int(await self._run("snapshot", q))

    async def page(
        self, subject: str, *, start: int, bound: int, limit: int, today: date | None
    ) -> list[IndexedAccess]:
        async def q(conn: Any) -> list[Any]:
            key = bytes.fromhex(subject)
            return list(await conn.fetch(self._sql["page"], key, start, bound, today, limit))

        return [
            IndexedAccess(
                position=r["id"],
                log=r["origin"],
                index=r["idx"],
                time=r["time"],
                caller=r["caller"],
                service_item=r["service_item"],
                purpose=r["purpose"],
                record_type=r["record_type"],
                outcome=r["outcome"],
                covert_until=r["covert_until"],
            )
            for r in await self._run("listing", q)
        ]

    # -- feeding ----------------------------------------------------------------------------

    async def progress(self, origin: str) -> tuple[int, bytes | None]:
        """How far `origin` has fed: (entries, leaf hash of the last one)."""

        async def q(conn: Any) -> tuple[int, bytes | None]:
            await conn.execute(self._sql["shard"], origin)
            row = await conn.fetchrow(self._sql["progress"], origin)
            return int(row["fed"]), row["last_leaf"]

        result: tuple[int, bytes | None] = await self._run("progress", q)
        return result

    async def store(
        self, origin: str, *, expected: int, fed: int, last_leaf: bytes, rows: Sequence[Row]
    ) -> bool:
        """Add `rows` and move `origin`'s progress from `expected` to `fed`, in one
        transaction; False (nothing stored) when the progress is not `expected` any more
        (a reindex ran meanwhile)."""

        async def q(conn: Any) -> bool:
            async with conn.transaction():
                if await conn.fetchval(self._sql["lock_shard"], origin) != expected:
                    return False
                if rows:
                    await conn.execute(self._sql["insert"], *_columns(rows))
                await conn.execute(self._sql["fed"], origin, fed, last_leaf)
                return True

        return bool(await self._run("feeding", q))

    async def reindex(self, origin: str, lines: Iterable[tuple[int, bytes]], size: int) -> int:
        """Replace `origin`'s rows with those of its log's entries [0, size) (`lines` gives
        them in order), in one transaction; a running feeder carries on from `size`. Returns
        the rows stored."""
        sql = self._sql
        stored = 0
        try:
            await self.ensure_schema()
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(sql["shard"], origin)
                await conn.execute(sql["lock_shard"], origin)
                await conn.execute(sql["forget"], origin)
                batch: list[bytes] = []
                first = 0
                last_leaf: bytes | None = None
                for index, line in lines:
                    if index >= size:
                        break
                    if index != first + len(batch):
                        raise IntegrityError(
                            f"{origin}: entry {first + len(batch)} is missing",
                            reason="AUDIT_GAP",
                        )
                    batch.append(line)
                    if len(batch) == FEED_BATCH or index == size - 1:
                        rows = rows_of(origin, first, batch)
                        if rows:
                            await conn.execute(sql["insert"], *_columns(rows))
                        stored += len(rows)
                        last_leaf = merkle.leaf_hash(batch[-1])
                        first += len(batch)
                        batch = []
                if first != size:
                    raise IntegrityError(
                        f"{origin}: the log holds {first} of the {size} entries its checkpoint "
                        "covers",
                        reason="AUDIT_ROLLED_BACK",
                    )
                await conn.execute(sql["fed"], origin, size, last_leaf)
        except _DATABASE_ERRORS as exc:
            raise Unavailable(
                f"the audit subject index could not be rebuilt ({type(exc).__name__})",
                reason=AUDIT_INDEX_UNAVAILABLE,
            ) from exc
        return stored

    def usage(self) -> float:
        return 0.0

    def behind(self) -> int:
        return self.feeder.behind() if self.feeder is not None else 0

    async def close(self) -> None:
        if self.feeder is not None:
            await self.feeder.stop(DRAIN_WAIT_S)
        await self._pool.close()


class Feeder:
    """Copies one shard's access entries into the shared index as they become durable.

    One task per process: it waits for the log to grow (`MemoryIndex.grown`), reads the new
    entries from the segments, stores their rows and its progress in one transaction, and
    retries with backoff while the database is away. At start it resumes where the shard's
    progress row says, after checking the leaf hash recorded there against the log.
    """

    def __init__(self, index: PostgresIndex, audit_log: AuditLog) -> None:
        self._index = index
        self._log = audit_log
        self.origin = audit_log.origin
        self.fed: int | None = None
        self.failure: Unavailable | None = None
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-index-feeder")

    def behind(self) -> int:
        """Entries of the log not yet in the shared index."""
        return self._log.tree_size - (self.fed or 0)

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        grown = self._log.subject_index.grown
        while True:
            grown.clear()  # before reading the size: a batch landing after is not missed
            try:
                await self._feed(self._log.tree_size)
            except Exception as exc:  # whatever stops it, listings must not go stale silently
                if not isinstance(exc, ProoflessError | OSError):
                    log.exception("audit subject index: the feeder failed")
                failure = (
                    exc
                    if isinstance(exc, Unavailable)
                    else Unavailable(
                        "the audit subject index cannot be fed from this shard's log",
                        reason=AUDIT_INDEX_UNAVAILABLE,
                    )
                )
                self.fed = None  # re-read the progress when the database is back
                await self._failed(failure)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            if self.failure is not None:
                log.info("audit subject index: feeding again (%s)", self.origin)
                self.failure = None
                async with self._advanced:
                    self._advanced.notify_all()
            await grown.wait()

    async def _failed(self, failure: Unavailable) -> None:
        if self.failure is None or self.failure.reason != failure.reason:
            log.error("audit subject index: %s (%s)", failure.message, self.origin)
        self.failure = failure
        async with self._advanced:
            self._advanced.notify_all()

    async def _resume(self) -> int:
        fed, last_leaf = await self._index.progress(self.origin)
        size = self._log.tree_size
        if fed > size:
            raise IndexMismatch(
                f"the shared index holds {fed} entries of this shard, its log {size}; "
                "run `proofless audit reindex`"
            )
        if fed:
            (line,) = await self._log.entries(fed - 1, fed)
            if merkle.leaf_hash(line) != last_leaf:
                raise IndexMismatch(
                    "the shared index holds another log under this shard's origin; "
                    "run `proofless audit reindex`"
                )
        return fed

    async def _feed(self, size: int) -> None:
        fed = self.fed if self.fed is not None else await self._resume()
        self.fed = fed
        while fed < size:
            end = min(size, fed + FEED_BATCH)
            lines = await self._log.entries(fed, end)
            stored = await self._index.store(
                self.origin,
                expected=fed,
                fed=end,
                last_leaf=merkle.leaf_hash(lines[-1]),
                rows=rows_of(self.origin, fed, lines),
            )
            # not stored: reindexed meanwhile, so resume from its progress
            fed = end if stored else await self._resume()
            self.fed = fed
            async with self._advanced:
                self._advanced.notify_all()

    async def caught_up(self, within: float) -> None:
        """Wait (up to `within` s) until this shard's entries so far are in the index; raise
        UNAVAILABLE when feeding fails. A slow database only delays the listing's view of
        this shard's latest entries."""
        size = self._log.tree_size

        def done() -> bool:
            return self.failure is not None or (self.fed is not None and self.fed >= size)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within), self._advanced:
                await self._advanced.wait_for(done)
        if self.failure is not None:
            raise self.failure

    async def stop(self, within: float) -> None:
        """Give the feeder `within` s to store what has landed, then stop it."""
        if self._task is None:
            return
        if self.failure is None:
            with contextlib.suppress(Unavailable):
                await self.caught_up(within)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def open_index(settings: IndexSettings, audit_log: AuditLog) -> AccessIndex:
    """The index the gateway's ListAccesses uses, for `audit_log` (just opened)."""
    if settings.kind == "memory":
        audit_log.subject_index.limit(settings.max_subjects, settings.max_entries)
        return LogIndex(audit_log)
    audit_log.subject_index.disable()
    index = await PostgresIndex.connect(settings.dsn, settings.schema)
    index.feeder = Feeder(index, audit_log)
    index.feeder.start()
    return index


def shard_dirs(audit_dir: Path) -> list[Path]:
    """The log directories under an `[audit] dir`: itself, and each `serve --workers`
    shard `worker-<i>`, where a checkpoint says a log was opened there."""
    candidates = [audit_dir, *sorted(audit_dir.glob("worker-*"))]
    return [d for d in candidates if (d / LATEST).is_file()]


def signed_checkpoint(directory: Path, note_key: Ed25519PrivateKey) -> SignedCheckpoint:
    """The latest checkpoint of the log in `directory`, which `note_key` must have signed
    under the origin it names (a shard's origin is its own: `<origin>/worker-<i>`)."""
    try:
        data = (directory / LATEST).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{directory}: no audit checkpoint ({exc.strerror})") from exc
    origin = SignedCheckpoint.parse(data).origin
    return SignedCheckpoint.open(data, NoteSigner(origin, note_key).verifier)


async def reindex_log(
    index: PostgresIndex, directory: Path, note_key: Ed25519PrivateKey
) -> tuple[str, int, int]:
    """Rebuild the rows of the log in `directory` from its entries under its latest signed
    checkpoint (a running gateway's feeder adds the ones after). Returns (origin, entries,
    rows)."""
    checkpoint = signed_checkpoint(directory, note_key)
    rows = await index.reindex(checkpoint.origin, iter_lines(directory), checkpoint.size)
    return checkpoint.origin, checkpoint.size, rows
