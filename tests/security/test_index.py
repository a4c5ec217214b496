"""Red-team item 6: ListAccesses saw one shard.

With `serve --workers N` or the StatefulSet's replicas each process indexed only its own audit
log, so a citizen saw about 1/N of the accesses, and a page token meant something only on the
shard that issued it. With `[audit] index = "postgresql"` every shard feeds one subject index:
a listing on any gateway sees every shard's accesses (covert ones still hidden from the
portal), its pages hold across gateways, and `proofless audit reindex` rebuilds the index from
the logs, which stay the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from adapters.simulators.datagen import generate
from gateway.config import merge_tables
from gateway.crypto.citizen import issue_citizen_token
from gateway.crypto.keys import load_ed25519_private_key
from gateway.devtools.pki import DevPki
from proofless.v1 import audit_pb2, audit_pb2_grpc
from proofless.v1 import verification_pb2 as pb
from proofless.v1 import verification_pb2_grpc as pb_grpc
from tests.support.auditlog import run_audit_cli
from tests.support.processes import (
    POPULATION,
    ROOT,
    SEED,
    _wait_for,
    dump_toml,
    write_config,
)
from tests.support.stack import RELOAD_WAIT_S, running_stack

Shard = tuple[str, int]  # (audit log origin, index)


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"test_shards_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def shared_index(postgres_dsn: str, schema: str, origin: str) -> dict[str, Any]:
    return {
        "audit": {
            "origin": origin,
            "index": "postgresql",
            "index_dsn": postgres_dsn,
            "index_schema": schema,
        }
    }


def ownership(item: str, idn: str, case: str) -> pb.VerifyClaimsRequest:
    return pb.VerifyClaimsRequest(
        context=pb.RequestContext(service_item=item, case_id=case, purpose="review"),
        applicant=pb.Applicant(id_number=idn),
        claims=[pb.Claim(id="owns", type="property.ownership", params={"owns": "false"})],
    )


async def fed(postgres_dsn: str, schema: str, *shards: Shard) -> None:
    """Wait until each shard's index progress covers its entry (the feeders are asynchronous;
    a listing waits only for its own gateway's shard)."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + RELOAD_WAIT_S
        for origin, index in shards:
            while True:
                got = await conn.fetchval(
                    f'SELECT fed FROM "{schema}".shards WHERE origin = $1', origin
                )
                if got is not None and got > index:
                    break
                if loop.time() > until:
                    pytest.fail(f"{origin} did not feed entry {index}")
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def listing(
    portals: list[audit_pb2_grpc.AuditServiceStub], request: audit_pb2.ListAccessesRequest
) -> tuple[list[Shard], list[str]]:
    """Every page, each from the next gateway in turn; (origin, index) listed and the tokens."""
    listed: list[Shard] = []
    tokens: list[str] = []
    turn = 0
    while True:
        page = await portals[turn % len(portals)].ListAccesses(request)
        turn += 1
        listed += [(a.audit_log, a.audit_index) for a in page.accesses]
        if not page.next_page_token:
            return listed, tokens
        tokens.append(page.next_page_token)
        request.page_token = page.next_page_token


def at(reply: pb.VerifyClaimsResponse) -> Shard:
    return (reply.attestation.audit_log, reply.attestation.audit_index)


async def test_a_citizen_sees_every_shard_and_pages_hold_across_gateways(
    pki: DevPki, tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    async with (
        running_stack(pki, tmp_path / "a", shared_index(postgres_dsn, schema, "test/gw-a")) as a,
        running_stack(pki, tmp_path / "b", shared_index(postgres_dsn, schema, "test/gw-b")) as b,
    ):
        idn = a.scenarios["no_property"]
        window_a, window_b = (
            await a.verification("quangang-window"),
            await b.verification("quangang-window"),
        )
        civil_b = await b.verification("fuzhou-civil-affairs")
        seen_a1 = at(await window_a.VerifyClaims(ownership("housing-transfer", idn, "X-1")))
        seen_b1 = at(await window_b.VerifyClaims(ownership("housing-transfer", idn, "X-2")))
        covert = at(await civil_b.VerifyClaims(ownership("subsistence-review", idn, "X-3")))
        seen_a2 = at(await window_a.VerifyClaims(ownership("housing-transfer", idn, "X-4")))
        assert {seen_a1[0], seen_b1[0]} == {"test/gw-a", "test/gw-b"}
        await fed(postgres_dsn, schema, seen_a2, covert)

        portals = [await a.audit("citizen-portal"), await b.audit("citizen-portal")]
        request = audit_pb2.ListAccessesRequest(
            id_number=idn, page_size=1, citizen_token=a.citizen_token(idn)
        )
        first = await portals[0].ListAccesses(request)
        # an access on B after the listing began: not part of this listing's pages
        later = at(await window_b.VerifyClaims(ownership("housing-transfer", idn, "X-5")))
        await fed(postgres_dsn, schema, later)
        request.page_token = first.next_page_token
        rest, tokens = await listing(portals[::-1], request)  # B, A, B, ...
        listed = [(x.audit_log, x.audit_index) for x in first.accesses] + rest

        assert sorted(listed) == sorted([seen_a1, seen_b1, seen_a2])  # every shard, once
        assert covert not in listed
        assert later not in listed
        assert len(tokens) == 1  # no empty page: the covert entry shapes no page
        assert all(len(t) == 59 for t in [first.next_page_token, *tokens])

        # a fresh listing sees the later access; an auditor sees the covert one too
        fresh, _ = await listing(
            portals,
            audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=a.citizen_token(idn)),
        )
        assert later in fresh
        assert covert not in fresh
        auditor = await b.audit("auditor")
        everything, _ = await listing(
            [auditor], audit_pb2.ListAccessesRequest(id_number=idn, page_size=2)
        )
        assert {seen_a1, seen_b1, covert, seen_a2, later} <= set(everything)

        # a token is bound to its citizen on every gateway
        other = a.scenarios["household_head"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await portals[1].ListAccesses(
                audit_pb2.ListAccessesRequest(
                    id_number=other,
                    page_token=first.next_page_token,
                    citizen_token=a.citizen_token(other),
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_reindex_rebuilds_the_shared_index_from_the_logs(
    pki: DevPki, tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    overrides = shared_index(postgres_dsn, schema, "test/gw-a")
    async with running_stack(pki, tmp_path / "a", overrides) as a:
        idn = a.scenarios["no_property"]
        window = await a.verification("quangang-window")
        made = [
            at(await window.VerifyClaims(ownership("housing-transfer", idn, f"R-{n}")))
            for n in range(3)
        ]
        portal = await a.audit("citizen-portal")
        request = audit_pb2.ListAccessesRequest(id_number=idn, citizen_token=a.citizen_token(idn))
        assert set(made) <= set((await listing([portal], request))[0])

        # the listing's own entry too, so that nothing is fed after the loss below
        await fed(postgres_dsn, schema, ("test/gw-a", a.gateway.audit.tree_size - 1))
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DELETE FROM "{schema}".accesses')  # the index is lost
        finally:
            await conn.close()
        request.page_token = ""
        assert (await listing([portal], request))[0] == []

        config = tmp_path / "gateway.toml"
        config.write_text(dump_toml(dict(a.config.raw)))
        await a.gateway.audit._checkpoint()  # the rebuild covers the signed entries
        assert await asyncio.to_thread(run_audit_cli, "reindex", "--config", config) == 0
        request.page_token = ""
        assert set(made) <= set((await listing([portal], request))[0])


# ---- real workers -----------------------------------------------------------------------------


@contextlib.contextmanager
def workers(base: Path, pki: DevPki, overrides: dict[str, Any]) -> Iterator[Any]:
    """Simulators, and `proofless serve --workers 2` (two processes, two audit shards, one
    SO_REUSEPORT port), all as subprocesses; the workers' ops ports are any free ones, and
    the supervisor's banner says when both serve."""
    stack = write_config(
        base, pki=pki, overrides=merge_tables(overrides, {"server": {"ops_listen": "127.0.0.1:0"}})
    )
    stack.start_simulators()
    log_path = stack.logs / "workers.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(stack.config_path),
             "--workers", "2"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack.gateway = proc
    try:
        try:
            _wait_for(lambda: b"is serving with 2 workers" in log_path.read_bytes(), proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{stack.log_text()}") from None
        yield stack
    finally:
        stack.stop()


@pytest.mark.slow
async def test_real_workers_feed_one_index(
    pki: DevPki, tmp_path: Path, postgres_dsn: str, schema: str
) -> None:
    idn = generate(SEED, POPULATION).scenarios["no_property"]
    overrides = shared_index(postgres_dsn, schema, "test/workers")
    with workers(tmp_path, pki, overrides) as stack:
        made: list[Shard] = []
        # each new channel is a new TCP connection, which the kernel hashes to a worker
        for n in range(64):
            async with stack.channel("quangang-window") as channel:
                reply = await pb_grpc.VerificationServiceStub(channel).VerifyClaims(
                    ownership("housing-transfer", idn, f"W-{n}"), timeout=10
                )
                made.append(at(reply))
            if len({origin for origin, _ in made}) == 2:
                break
        origins = {origin for origin, _ in made}
        assert origins == {"test/workers/worker-0", "test/workers/worker-1"}
        await fed(postgres_dsn, schema, *made)
        key = load_ed25519_private_key(pki.consent_issuer_key)
        async with stack.channel("citizen-portal") as channel:
            portal = audit_pb2_grpc.AuditServiceStub(channel)
            listed, _ = await listing(
                [portal],
                audit_pb2.ListAccessesRequest(
                    id_number=idn,
                    page_size=1,
                    citizen_token=issue_citizen_token(key, id_number=idn, portal="citizen-portal"),
                ),
            )
        assert set(made) <= set(listed)
        assert {origin for origin, _ in listed} == origins
