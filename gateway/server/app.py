"""Wiring: the gRPC server over mutual TLS, the ops HTTP server, and their lifecycle.

`running_gateway(config)` starts everything and yields the bound ports (port 0 works, for
tests); `serve(config)` runs until SIGTERM/SIGINT. Shutdown order matters: health goes
NOT_SERVING first so load balancers stop sending, in-flight calls drain within the grace
period, then the audit log flushes and signs its final checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from adapters.base import DepartmentAdapter
from gateway.audit.entry import utc_timestamp
from gateway.audit.index import index_settings, open_index
from gateway.audit.log import AuditLog
from gateway.audit.storage import read_pepper
from gateway.audit.witnessing import witnessed_paths
from gateway.config import Config, host_port
from gateway.config.reload import Reloadable
from gateway.crypto.consent import build_replay_store
from gateway.crypto.keys import (
    IssuerKey,
    IssuerKeys,
    Revocation,
    check_revocation,
    load_ed25519_private_key,
    load_issuer_keys,
    load_proof_keys,
    load_revocation,
    watched_proof_key_paths,
)
from gateway.crypto.proofs import ProofSigner
from gateway.domain.access import Access
from gateway.domain.errors import ConfigError, ProoflessError, Unauthenticated
from gateway.ops.http import OpsServer
from gateway.ops.logging import redact
from gateway.ops.metrics import Metrics
from gateway.ops.tlog import AuditPublishing
from gateway.ops.tracing import OFF, Tracing, start_tracing
from gateway.server.admission import Admission
from gateway.server.audit_service import AuditDeps, AuditServicer
from gateway.server.call import Audited, current_call
from gateway.server.departments import Departments
from gateway.server.http_door import HttpDoor
from gateway.server.identity import Caller, caller_from_pem
from gateway.server.in_force import InForce, config_entry, load_in_force, watched_paths
from gateway.server.interceptors import GatewayInterceptor
from gateway.server.ratelimit import build_rate_limiter
from gateway.server.readiness import Readiness
from gateway.server.rejections import RejectedPeers
from gateway.server.verification import ServiceDeps, VerificationServicer
from proofless.v1 import audit_pb2, audit_pb2_grpc, verification_pb2, verification_pb2_grpc

log = logging.getLogger("proofless.server")

SERVICE_NAMES = (
    verification_pb2.DESCRIPTOR.services_by_name["VerificationService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)
WATCH_INTERVAL_S = 1.0
# after the grace period: how long cancelled calls get to write their audit entries
DRAIN_AUDIT_TIMEOUT_S = 5.0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} ({exc.strerror})") from exc


def load_revoked(
    crl_path: Path | None, ca_path: Path, accepted: dict[IssuerKey, int] | None = None
) -> Revocation | None:
    """The CRLs in force, each checked against its CA in the CA file; `accepted` keeps the
    highest CRL number per CA across reloads (an older CRL is refused). None: revocation is
    off (`[tls] revocation = "off"`)."""
    if crl_path is None:
        return None
    return load_revocation(crl_path, ca_path, accepted=accepted)


class TlsMaterial:
    """Server certificate, key and client CA, re-read when the files change: grpc asks the
    fetcher at each new handshake, so rotation needs no restart and live connections stay."""

    def __init__(self, config: Config) -> None:
        self._tls = config.tls
        self._files = Reloadable(
            "TLS material", [config.tls.cert, config.tls.key, config.tls.ca], self._configuration
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(_read(self._tls.key, "server key"), _read(self._tls.cert, "server certificate"))],
            root_certificates=_read(self._tls.ca, "CA certificate"),
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        return self._files.value if self._files.reload() else None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._files.value, self._fetch, require_client_authentication=True
        )


@dataclass
class RunningGateway:
    address: str
    port: int
    ops_port: int
    #: /metrics and /dashboard: `ops_port` unless `ops_internal_listen` is set
    ops_internal_port: int
    audit: AuditLog
    rules: Reloadable[InForce]
    departments: Departments
    metrics: Metrics
    signer: ProofSigner
    health: health.aio.HealthServicer
    server: grpc.aio.Server
    servicer: VerificationServicer
    interceptor: GatewayInterceptor
    #: the HTTP/JSON door's port; 0 when `http_listen` is empty (closed)
    http_port: int = 0
    #: the audit log's tlog-tiles listener (mutual TLS); 0 when `[audit] tiles_listen` is empty
    tiles_port: int = 0
    #: OpenTelemetry tracing ([tracing]); OFF, without a TracerProvider, unless configured
    tracing: Tracing = OFF

    def reload_rules(self) -> None:
        """SIGHUP: reload the policy and the catalogue now."""
        _reload_rules(self.rules, self.departments, audit=self.audit)


def _grpc_options(config: Config) -> list[tuple[str, Any]]:
    s = config.server
    return [
        ("grpc.max_concurrent_streams", s.max_concurrent_streams),
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", 16 * s.max_message_bytes),
        ("grpc.so_reuseport", 1),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]


@contextlib.asynccontextmanager
async def running_gateway(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    adapters: Mapping[str, DepartmentAdapter[Any]] | None = None,
) -> AsyncIterator[RunningGateway]:
    """`adapters` replaces the ones built from `config.departments` (benchmarks, tests); they
    are still wrapped in the resilience layer configured for their department."""
    metrics = Metrics(registry or CollectorRegistry())
    signer = ProofSigner(*load_proof_keys(config.proof_signing_key, config.proof_retired_keys))
    # a rotation (`proofless certs rotate-proof-key`) takes effect when the key files change
    proof_keys = Reloadable(
        "proof-signing keys",
        lambda: watched_proof_key_paths(config.proof_signing_key, config.proof_retired_keys),
        lambda: signer.use(*load_proof_keys(config.proof_signing_key, config.proof_retired_keys)),
    )

    def rules_in_force() -> InForce:
        loaded = load_in_force(config.policy_file, config.catalogue_dir, config.departments)
        metrics.known_labels(callers=loaded.policy.callers, service_items=loaded.policy.items)
        return loaded

    rules = Reloadable(
        "policy and catalogue",
        lambda: watched_paths(config.policy_file, config.catalogue_dir),
        rules_in_force,
    )
    crl_numbers: dict[IssuerKey, int] = {}
    revoked = Reloadable(
        "CRL",
        [config.tls.crl, config.tls.ca] if config.tls.crl else [],
        lambda: load_revoked(config.tls.crl, config.tls.ca, crl_numbers),
    )
    pepper = read_pepper(config.audit.pepper_file)  # the one reader: `audit replay` uses it too
    # the citizen app's keys sign consent and citizen tokens; re-read when the JWKS changes
    jwks_path = config.consent.issuers_jwks
    consent_keys = Reloadable(
        "consent issuer JWKS", [jwks_path] if jwks_path else [], lambda: _consent_keys(config)
    )
    tls = TlsMaterial(config)
    index_config = index_settings(config.raw.get("audit", {}))

    audit = await AuditLog.open(
        config.audit.dir,
        origin=config.audit.origin,
        note_key=load_ed25519_private_key(config.audit.note_key),
        checkpoint_every_entries=config.audit.checkpoint_every_entries,
        checkpoint_every_ms=config.audit.checkpoint_every_ms,
        segment_bytes=config.audit.segment_bytes,
        witnessed=witnessed_paths(config.audit.dir),  # cosigned by witnesses: no rollback
    )
    # the rules this process starts with, in the log before any access they decide
    await audit.append(
        config_entry(time=utc_timestamp(), trigger="start", old=None, new=rules.value)
    )
    # ListAccesses' subject index: this log's in memory, or every shard's in PostgreSQL
    index = await open_index(index_config, audit)
    metrics.watch_audit(config.audit.dir, index_usage=index.usage, index_behind=index.behind)
    departments = Departments(metrics, replace=adapters)
    departments.update(rules.value.catalogue)
    limiter = build_rate_limiter(config.raw.get("ratelimit", {}))
    consent_replays = build_replay_store(
        config.consent.replay_backend,
        redis_url=config.consent.redis_url,
        prefix=config.consent.replay_prefix,
        timeout_ms=config.consent.replay_timeout_ms,
    )

    def check_caller(caller: Caller) -> None:
        now = datetime.now(UTC)
        check_revocation(revoked.value, caller.issuer, caller.serial, now)
        if caller.not_after < now:
            raise Unauthenticated(
                "the client certificate has expired", reason="CERTIFICATE_EXPIRED"
            )

    # a refused peer that keeps calling writes a few entries a second, not one per call
    rejections = RejectedPeers(audit.append)

    async def audit_rejected(rpc: str, request_id: str, err: ProoflessError) -> None:
        access = Access(
            rpc=rpc,
            request_id=request_id,
            caller="unauthenticated",
            time=datetime.now(UTC),
            started=0.0,
            policy=rules.value.policy.version,
            catalogue=rules.value.catalogue.version,
            transport=current_call.get().transport,  # the door has published the call
        )
        entry = access.entry(outcome="denied", code=err.code, reason=err.reason, latency_us=0)
        await rejections.audit(entry, err.reason)
        metrics.denial(err.reason)

    audited = Audited(audit, metrics)
    deps = ServiceDeps(
        rules=rules,
        departments=departments,
        audited=audited,
        audit_origin=audit.origin,
        signer=signer,
        pepper=pepper,
        metrics=metrics,
        issuer=config.proof_issuer,
        consent_keys=consent_keys,
        consent_replays=consent_replays,
        limiter=limiter,
        admission=Admission(config.server.max_in_flight),
        default_deadline_s=config.server.default_deadline_ms / 1000,
    )
    tracing = start_tracing(config.tracing)
    interceptor = GatewayInterceptor(
        metrics,
        check_caller=rejections.checking(check_caller),
        on_rejected=audit_rejected,
        access_log=config.server.access_log,
        tracing=tracing,
    )
    server = grpc.aio.server(interceptors=[interceptor], options=_grpc_options(config))
    servicer = VerificationServicer(deps)
    verification_pb2_grpc.add_VerificationServiceServicer_to_server(servicer, server)
    audit_servicer = AuditServicer(
        AuditDeps(
            log=audit,
            pepper=pepper,
            policy=lambda: rules.value.policy,
            citizen_keys=consent_keys,
            limiter=limiter,
            audited=audited,
            catalogue_version=lambda: rules.value.catalogue.version,
            index=index,
        )
    )
    audit_pb2_grpc.add_AuditServiceServicer_to_server(audit_servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host, port = host_port(config.server.listen)
    bound = server.add_secure_port(
        f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", tls.credentials()
    )
    if bound == 0:
        raise ConfigError(f"{config.server.listen}: cannot listen there")

    def auditor_of(der: bytes) -> str | None:
        """Entry bundles of the tiles listener: a caller the policy in force makes an auditor."""
        caller = caller_from_pem(ssl.DER_cert_to_PEM_cert(der).encode())
        check_caller(caller)
        return caller.id if rules.value.policy.has_role(caller.id, "auditor") else None

    publishing = AuditPublishing(audit, config, metrics.registry, authorize=auditor_of)
    readiness = Readiness(departments=departments.states)
    ops = OpsServer(
        metrics=metrics,
        jwks=signer.jwks,
        audit_vkey=lambda: audit.vkey,
        ready=readiness.report,
        public_routes=publishing.resources.add_routes,
    )
    # The HTTP/JSON door: the interceptor's Door (identity, CRL, metrics, rejected-call audit)
    # in front of the same servicers, on a listener of its own.
    http: HttpDoor | None = None
    if config.server.http_listen:
        http = HttpDoor(
            interceptor.door,
            {
                verification_pb2.DESCRIPTOR.services_by_name["VerificationService"]: servicer,
                audit_pb2.DESCRIPTOR.services_by_name["AuditService"]: audit_servicer,
            },
            config.tls,
            max_body_bytes=config.server.max_message_bytes,
            max_concurrent_streams=config.server.max_concurrent_streams,
        )
    watcher: asyncio.Task[None] | None = None
    http_bound = 0
    try:
        await server.start()
        if http is not None:
            http_host, http_port = host_port(config.server.http_listen)
            http_bound = await http.start(http_host, http_port)
        ops_host, ops_port = host_port(config.server.ops_listen)
        internal = config.server.ops_internal_listen
        ops_bound = await ops.start(
            ops_host, ops_port, internal=host_port(internal) if internal else None
        )
        tiles_bound = await publishing.start()

        published: list[bool] = []  # the health status last set, once set

        async def check_ready() -> None:
            """Once a second (and at start): the readiness checks, their metrics, and gRPC
            health following them (gateway/server/readiness.py says what counts)."""
            readiness.set("audit", audit.failure_reason)
            readiness.set("signing", signer.probe())
            refused = redact(rules.last_error)[:200]
            readiness.note(
                "config",
                f"the last reload was refused; the previous rules stay in force ({refused})"
                if refused
                else "",
            )
            for check in ("audit", "signing"):
                metrics.ready.labels(check=check).set(readiness.checks[check] == "ok")
            metrics.ready.labels(check="config").set(not refused)
            if published != [readiness.ready]:
                published[:] = [readiness.ready]
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if readiness.ready
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in ("", *SERVICE_NAMES):
                    await health_servicer.set(name, status)
                if not readiness.ready:
                    log.error("not ready: %s", readiness.report()["checks"])

        readiness.serving = True
        await check_ready()
        watcher = asyncio.create_task(
            _watch(
                [
                    rules,
                    revoked,
                    consent_keys,
                    proof_keys,
                    *([http.tls_files] if http else []),
                    *publishing.tls_files,
                ],
                audit,
                metrics,
                departments,
                check_ready,
            ),
            name="proofless-watch",
        )
        log.info("serving", extra={"port": bound, "ops_port": ops_bound})
        if http_bound:
            log.info("HTTP/JSON door serving", extra={"port": http_bound})
        yield RunningGateway(
            address=f"{host}:{bound}",
            port=bound,
            ops_port=ops_bound,
            ops_internal_port=ops.internal_port,
            audit=audit,
            rules=rules,
            departments=departments,
            metrics=metrics,
            signer=signer,
            health=health_servicer,
            server=server,
            servicer=servicer,
            interceptor=interceptor,
            http_port=http_bound,
            tiles_port=tiles_bound,
            tracing=tracing,
        )
    finally:
        readiness.serving = False
        await health_servicer.enter_graceful_shutdown()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        grace = config.server.grace_seconds
        await asyncio.gather(server.stop(grace), http.stop(grace) if http else asyncio.sleep(0))
        try:
            async with asyncio.timeout(DRAIN_AUDIT_TIMEOUT_S):
                await audited.drained()
        except TimeoutError:
            log.error("calls still unaudited at shutdown; closing the audit log anyway")
        with contextlib.suppress(ProoflessError):
            await rejections.flush()
        await index.close()
        await publishing.stop()
        await audit.close()
        await departments.close()
        await limiter.close()
        await consent_replays.close()
        await ops.stop()
        await tracing.shutdown()  # the last calls' spans are sent


def _reload_rules(
    rules: Reloadable[InForce],
    departments: Departments,
    *,
    force: bool = True,
    audit: AuditLog | None = None,
) -> None:
    """Reload the policy and catalogue; connect the departments a new catalogue changed.

    Every load that takes effect, and every refused one, is itself an audit entry (kind
    "config": the trigger, the old and new versions, what changed or why it was refused), so
    the log says which rules decided each access and when they changed."""
    before, error_before = rules.value, rules.last_error
    applied = rules.reload(force=force)
    if applied:
        try:
            departments.update(rules.value.catalogue)
        except ProoflessError as err:
            log.error("departments not reconnected: %s", err.diagnostics())
    refused = rules.last_error if not applied and rules.last_error != error_before else ""
    if audit is None or not (applied or refused):
        return
    entry = config_entry(
        time=utc_timestamp(),
        trigger="sighup" if force else "change",
        old=before,
        new=rules.value,
        refused=redact(refused),
    )
    task = asyncio.get_running_loop().create_task(_append_config(audit, entry))
    _CONFIG_APPENDS.add(task)
    task.add_done_callback(_CONFIG_APPENDS.discard)


_CONFIG_APPENDS: set[asyncio.Task[None]] = set()


async def _append_config(audit: AuditLog, entry: dict[str, Any]) -> None:
    try:
        await audit.append(entry)
    except ProoflessError as err:  # the log is failing: readiness says so, calls fail closed
        log.error("configuration change not audited: %s", err.diagnostics())


async def _watch(
    files: list[Reloadable[Any]],
    audit: AuditLog,
    metrics: Metrics,
    departments: Departments,
    check_ready: Callable[[], Awaitable[None]],
) -> None:
    """Once a second: reload changed files, publish the latest checkpoint's size and age,
    check readiness."""
    signed_size = -1
    rules, *others = files
    while True:
        _reload_rules(rules, departments, force=False, audit=audit)
        for f in others:
            f.reload()
        checkpoint = audit.latest_checkpoint()
        if checkpoint.size != signed_size:
            signed_size = checkpoint.size
            metrics.checkpoint_signed(signed_size, time.time())
        await check_ready()
        await asyncio.sleep(WATCH_INTERVAL_S)


def _consent_keys(config: Config) -> IssuerKeys:
    """The token issuers' keys, each bound to the issuers it may sign for; none configured:
    every consent and citizen token is refused."""
    path = config.consent.issuers_jwks
    if path is None:
        return IssuerKeys({}, {})
    return load_issuer_keys(path, config.consent.issuers)


async def serve(
    config: Config, *, on_ready: Callable[[RunningGateway], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the policy and the CRL."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running_gateway(config) as gw:
        loop.add_signal_handler(signal.SIGHUP, gw.reload_rules)
        if on_ready is not None:
            on_ready(gw)
        await stop.wait()
        log.info("stopping: draining in-flight calls")
