"""Layered configuration: a TOML file, then environment overrides.

`PROOFLESS__SECTION__KEY=value` (double underscores between levels) overrides any key, e.g.
`PROOFLESS__SERVER__LISTEN=0.0.0.0:50051` or `PROOFLESS__DEPARTMENTS__PROPERTY__DSN=...`.
Values from the environment are parsed as TOML values when they parse (numbers, booleans,
quoted strings, arrays) and taken as plain strings otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.domain.errors import ConfigError

ENV_PREFIX = "PROOFLESS__"


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return `data` with every PROOFLESS__A__B=value applied as data[a][b] = value."""
    merged: dict[str, Any] = _deep_copy(data)
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = merged
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} goes through a non-table value")
            node = child
        node[path[-1]] = _env_value(raw)
    return merged


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new table: `base` with `over` laid on top, sub-tables merged key by key (how tests,
    the demo, the cluster and the bench point the dev configuration elsewhere)."""
    out = _deep_copy(base)
    for key, value in over.items():
        if isinstance(value, Mapping):
            current = out.get(key)
            out[key] = merge_tables(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"
    ops_listen: str = "127.0.0.1:9464"
    #: the HTTP/JSON door (gateway.server.http_door), mutual TLS like gRPC; "" keeps it closed
    http_listen: str = ""
    #: /metrics and /dashboard; "" serves them on `ops_listen`, which must then be loopback
    ops_internal_listen: str = ""
    default_deadline_ms: int = 5000
    grace_seconds: float = 5.0
    max_message_bytes: int = 1 << 20
    max_concurrent_streams: int = 256
    max_in_flight: int = 512
    access_log: bool = True
    #: "uvloop" (the default: more calls per core, BENCHMARKS.md) or "asyncio"
    event_loop: str = "uvloop"


@dataclass(frozen=True)
class TlsConfig:
    ca: Path
    cert: Path
    key: Path
    #: the CRL file (one CRL per CA of `ca`); None only with revocation = "off"
    crl: Path | None = None
    #: "crl" (checked against `crl`) or "off": no revocation, an explicit choice
    revocation: str = "crl"


@dataclass(frozen=True)
class WitnessConfig:
    """[audit] witnesses = [{ url = "...", key = "..." }]: a C2SP tlog-witness the gateway
    pushes its checkpoints to (its submission URL prefix and its cosignature vkey)."""

    url: str
    key: str


@dataclass(frozen=True)
class AuditConfig:
    dir: Path
    origin: str
    note_key: Path
    pepper_file: Path
    checkpoint_every_entries: int = 256
    checkpoint_every_ms: int = 1000
    segment_bytes: int = 64 << 20
    #: witnesses cosigning the checkpoints (gateway.audit.witnessing)
    witnesses: tuple[WitnessConfig, ...] = ()
    #: the tlog-tiles API over mutual TLS, entry bundles to auditors (gateway.ops.tlog); ""
    #: keeps it closed (checkpoint and hash tiles stay public on the ops port)
    tiles_listen: str = ""


@dataclass(frozen=True)
class ConsentConfig:
    """[consent]: the issuers whose consent and citizen tokens the gateway accepts."""

    #: the issuers' JWK Set (kid → key), re-read when it changes; None: no token is accepted
    issuers_jwks: Path | None = None
    #: the `iss` values those keys may sign for (a JWK's own `iss` member narrows its key to one)
    issuers: tuple[str, ...] = ()
    #: where used tokens are recorded: "local" (this process) or "redis" (every replica)
    replay_backend: str = "local"
    redis_url: str = ""
    replay_prefix: str = "proofless:consent:"
    #: longer than this and the shared store counts as down: consent is refused
    replay_timeout_ms: int = 50


@dataclass(frozen=True)
class TracingConfig:
    """[tracing]: OpenTelemetry traces of the calls (gateway.ops.tracing)."""

    #: the OTLP/gRPC collector, "http://host:4317" (plaintext) or "https://…"; "" turns
    #: tracing off: no TracerProvider, no span, no cost beyond a check per call
    otlp_endpoint: str = ""
    service_name: str = "proofless-gateway"
    #: the share of the traces the gateway starts that are kept; a call whose caller sent a
    #: traceparent follows the caller's decision (parent-based sampling)
    sample_ratio: float = 1.0
    #: how long finished spans wait to be sent in one batch
    export_delay_ms: int = 5000


_TRACING_KEYS = frozenset({"otlp_endpoint", "service_name", "sample_ratio", "export_delay_ms"})


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    tls: TlsConfig
    proof_signing_key: Path
    proof_issuer: str
    audit: AuditConfig
    policy_file: Path
    catalogue_dir: Path
    #: per-department settings of this deployment, laid over the catalogue's [department]
    departments: Mapping[str, Mapping[str, Any]]
    simulators: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: retired proof-signing keys published beside the current one: JWK files, or directories
    #: of `*.jwk.json` ([proofs] retired_keys; default: retired-proof-keys/ beside the key)
    proof_retired_keys: tuple[Path, ...] = ()
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: missing table [{name}]")
    return value


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    server_t = data.get("server", {})
    srv = ServerConfig(
        listen=_get(server_t, "listen", str, f"{source} [server]", ServerConfig.listen),
        ops_listen=_get(server_t, "ops_listen", str, f"{source} [server]", ServerConfig.ops_listen),
        http_listen=_get(server_t, "http_listen", str, f"{source} [server]", ""),
        ops_internal_listen=_get(server_t, "ops_internal_listen", str, f"{source} [server]", ""),
        default_deadline_ms=_get(server_t, "default_deadline_ms", int, f"{source} [server]", 5000),
        grace_seconds=_get(server_t, "grace_seconds", float, f"{source} [server]", 5.0),
        max_message_bytes=_get(server_t, "max_message_bytes", int, f"{source} [server]", 1 << 20),
        max_concurrent_streams=_get(
            server_t, "max_concurrent_streams", int, f"{source} [server]", 256
        ),
        max_in_flight=_get(server_t, "max_in_flight", int, f"{source} [server]", 512),
        access_log=_get(server_t, "access_log", bool, f"{source} [server]", True),
        event_loop=_get(server_t, "event_loop", str, f"{source} [server]", "uvloop"),
    )
    if srv.event_loop not in ("uvloop", "asyncio"):
        raise ConfigError(f'{source} [server] event_loop: "uvloop" or "asyncio"')
    _check_ops_listeners(srv, f"{source} [server]")
    tls_t = _table(data, "tls", source)
    crl, revocation = _revocation(tls_t, f"{source} [tls]")
    tls = TlsConfig(
        ca=Path(_get(tls_t, "ca", str, f"{source} [tls]")),
        cert=Path(_get(tls_t, "cert", str, f"{source} [tls]")),
        key=Path(_get(tls_t, "key", str, f"{source} [tls]")),
        crl=Path(crl) if crl else None,
        revocation=revocation,
    )
    proofs_t = _table(data, "proofs", source)
    audit_t = _table(data, "audit", source)
    where = f"{source} [audit]"
    audit = AuditConfig(
        dir=Path(_get(audit_t, "dir", str, where)),
        origin=_get(audit_t, "origin", str, where),
        note_key=Path(_get(audit_t, "note_key", str, where)),
        pepper_file=Path(_get(audit_t, "pepper_file", str, where)),
        checkpoint_every_entries=_get(audit_t, "checkpoint_every_entries", int, where, 256),
        checkpoint_every_ms=_get(audit_t, "checkpoint_every_ms", int, where, 1000),
        segment_bytes=_get(audit_t, "segment_bytes", int, where, 64 << 20),
        witnesses=_witnesses(audit_t.get("witnesses", []), f"{where}.witnesses"),
        tiles_listen=_get(audit_t, "tiles_listen", str, where, ""),
    )
    departments = data.get("departments", {})
    if not isinstance(departments, Mapping):
        raise ConfigError(f"{source}: [departments] must be a table")
    signing_key = Path(_get(proofs_t, "signing_key", str, f"{source} [proofs]"))
    return Config(
        server=srv,
        tls=tls,
        proof_signing_key=signing_key,
        proof_retired_keys=_retired_keys(proofs_t, signing_key, f"{source} [proofs]"),
        consent=_consent(data.get("consent", {}), f"{source} [consent]"),
        tracing=_tracing(data.get("tracing", {}), f"{source} [tracing]"),
        proof_issuer=_get(proofs_t, "issuer", str, f"{source} [proofs]", "proofless"),
        audit=audit,
        policy_file=Path(_get(_table(data, "policy", source), "file", str, f"{source} [policy]")),
        catalogue_dir=Path(
            _get(data.get("catalogue", {}), "dir", str, f"{source} [catalogue]", "deploy/catalogue")
        ),
        departments=departments,
        simulators=data.get("simulators", {}),
        raw=data,
    )


def _check_ops_listeners(server: ServerConfig, where: str) -> None:
    """The internal ops endpoints (per-caller and per-item counts) never share a port that
    faces the network: without `ops_internal_listen`, `ops_listen` must be loopback."""
    host, _ = host_port(server.ops_listen)
    if not server.ops_internal_listen:
        if not is_loopback(host):
            raise ConfigError(
                f"{where}: ops_listen {server.ops_listen!r} is not a loopback address, and "
                "/metrics and /dashboard must not be served there: set ops_internal_listen "
                "(e.g. 127.0.0.1:9465, or an address your network policy keeps internal)"
            )
        return
    _, port = host_port(server.ops_internal_listen)
    if port and server.ops_internal_listen == server.ops_listen:
        raise ConfigError(
            f"{where}: ops_internal_listen is ops_listen; leave it empty to serve both on one "
            "loopback port"
        )


def is_loopback(host: str) -> bool:
    """`host` (a name or an address) is this machine only: localhost, 127.0.0.0/8, ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _consent(table: Any, where: str) -> ConsentConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    jwks = _get(table, "issuers_jwks", str, where, "")
    issuers = table.get("issuers", [])
    if isinstance(issuers, str):
        issuers = [issuers]
    if not isinstance(issuers, list) or not all(isinstance(i, str) and i for i in issuers):
        raise ConfigError(f"{where}.issuers: expected a list of issuer names (the tokens' iss)")
    backend = _get(table, "replay_backend", str, where, ConsentConfig.replay_backend)
    if backend not in ("local", "redis"):
        raise ConfigError(f"{where}.replay_backend: must be local or redis, not {backend!r}")
    redis_url = _get(table, "redis_url", str, where, "")
    if backend == "redis" and not redis_url:
        raise ConfigError(f'{where}.redis_url: is required when replay_backend = "redis"')
    timeout_ms = _get(table, "replay_timeout_ms", int, where, ConsentConfig.replay_timeout_ms)
    if timeout_ms <= 0:
        raise ConfigError(f"{where}.replay_timeout_ms: must be greater than 0")
    return ConsentConfig(
        issuers_jwks=Path(jwks) if jwks else None,
        issuers=tuple(issuers),
        replay_backend=backend,
        redis_url=redis_url,
        replay_prefix=_get(table, "replay_prefix", str, where, ConsentConfig.replay_prefix),
        replay_timeout_ms=timeout_ms,
    )


def _tracing(table: Any, where: str) -> TracingConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: must be a table")
    unknown = set(table) - _TRACING_KEYS
    if unknown:  # a misspelt key would leave tracing silently off
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    endpoint = _get(table, "otlp_endpoint", str, where, "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f'{where}.otlp_endpoint: "http://host:port" or "https://host:port"')
    service_name = _get(table, "service_name", str, where, TracingConfig.service_name)
    if not service_name:
        raise ConfigError(f"{where}.service_name: must not be empty")
    ratio = _get(table, "sample_ratio", float, where, TracingConfig.sample_ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{where}.sample_ratio: must be between 0 and 1")
    delay = _get(table, "export_delay_ms", int, where, TracingConfig.export_delay_ms)
    if delay <= 0:
        raise ConfigError(f"{where}.export_delay_ms: must be greater than 0")
    return TracingConfig(
        otlp_endpoint=endpoint, service_name=service_name, sample_ratio=ratio, export_delay_ms=delay
    )


def _witnesses(value: Any, where: str) -> tuple[WitnessConfig, ...]:
    if not isinstance(value, list) or not all(isinstance(w, Mapping) for w in value):
        raise ConfigError(f'{where}: expected a list of {{ url = "...", key = "..." }}')
    out = []
    for i, table in enumerate(value):
        unknown = set(table) - {"url", "key"}
        if unknown:
            raise ConfigError(f"{where}[{i}]: unknown keys {sorted(unknown)}")
        here = f"{where}[{i}]"
        out.append(
            WitnessConfig(url=_get(table, "url", str, here), key=_get(table, "key", str, here))
        )
    return tuple(out)


def _retired_keys(proofs: Mapping[str, Any], signing_key: Path, where: str) -> tuple[Path, ...]:
    if "retired_keys" not in proofs:
        return (signing_key.parent / "retired-proof-keys",)
    value = proofs["retired_keys"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.retired_keys: expected a list of paths")
    return tuple(Path(v) for v in value)


def _revocation(tls: Mapping[str, Any], where: str) -> tuple[str, str]:
    """`crl` and `revocation`: a CRL, or no revocation as a choice written down, never as
    a key left out."""
    crl = _get(tls, "crl", str, where, "")
    revocation = _get(tls, "revocation", str, where, "crl")
    if revocation not in ("crl", "off"):
        raise ConfigError(f'{where}.revocation: expected "crl" or "off", not {revocation!r}')
    if revocation == "crl" and not crl:
        raise ConfigError(
            f'{where}: no crl: name the CA\'s CRL file, or set revocation = "off" to accept '
            "every certificate the CA signed, revoked or not"
        )
    if revocation == "off" and crl:
        raise ConfigError(f'{where}: crl is set but revocation = "off"; remove one of them')
    return crl, revocation


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(apply_env(data, os.environ if environ is None else environ), str(path))


def host_port(address: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{address!r}: expected host:port")
    return host.strip("[]"), int(port)
