"""`make cluster`: N gateway replicas behind nginx on loopback, to watch scale-out and failover.

    python -m gateway.devtools.cluster --config deploy/config/gateway.toml --replicas 3

starts the department simulators once, N replicas (each its own gRPC port, ops port, audit
directory `<state>/replica-<i>/audit` and origin `<origin prefix>/replica-<i>`) and nginx as a
TCP passthrough load balancer in front (deploy/nginx/proofless-stream.conf.template; why
passthrough and not `grpc_pass` is written there). It writes `<state>/cluster.json` (pids,
ports, audit directories, vkeys) and runs until SIGTERM/Ctrl-C. A replica that dies is not
restarted: the point is to see the others carry on (tests/e2e/test_cluster.py kills one).
Replicas are separate processes with separate ports, as they would be separate hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.audit.note import NoteSigner
from gateway.config import Config, host_port, load_config, merge_tables
from gateway.devtools.pki import DevPki
from gateway.domain.errors import ConfigError, ProoflessError
from gateway.ops.logging import configure_logging
from gateway.server.workers import (
    Ready,
    Supervisor,
    WorkerProcess,
    WorkerSpec,
    env_overrides,
    free_port,
    join_host_port,
)

log = logging.getLogger("proofless.cluster")

ROOT = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "proofless-stream.conf.template"
#: where distributions put nginx's dynamic modules (Debian: libnginx-mod-stream)
MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/lib64/nginx/modules", "/usr/share/nginx/modules")
START_TIMEOUT_S = 60.0

DEFAULT_LISTEN = "127.0.0.1:50050"
DEFAULT_REPLICA_PORT = 50061
DEFAULT_OPS_PORT = 9471


# ---- nginx ----------------------------------------------------------------------------------


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def stream_module_directive(nginx: str) -> str:
    """`load_module …;` when this nginx has the stream module as a dynamic module, else ""."""
    info = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    if "--with-stream=dynamic" not in info:
        return ""
    prefix = re.search(r"--prefix=(\S+)", info)
    dirs = [*MODULE_DIRS, *([f"{prefix.group(1)}/modules"] if prefix else [])]
    for d in dirs:
        module = Path(d) / "ngx_stream_module.so"
        if module.is_file():
            return f"load_module {module};"
    raise ConfigError(
        "nginx has the stream module only as a dynamic module, and it is not installed "
        "(Debian: apt-get install libnginx-mod-stream)"
    )


def render_nginx(listen: str, upstreams: Sequence[str], state_dir: Path, load_module: str) -> str:
    """The stream (TCP passthrough) config for `listen` balancing over `upstreams`."""
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    text = NGINX_TEMPLATE.read_text()
    for name, value in (
        ("load_module", load_module),
        ("state_dir", str(state_dir.resolve())),
        ("servers", servers),
        ("listen", listen),
    ):
        text = text.replace("{{ " + name + " }}", value)
    if "{{" in text:
        raise ConfigError(f"{NGINX_TEMPLATE}: a placeholder was left unfilled")
    return text


def nginx_command(nginx: str, conf: Path, *, test: bool = False) -> list[str]:
    state = str(conf.parent.resolve())
    cmd = [nginx, "-p", state, "-e", f"{state}/nginx-error.log", "-c", str(conf.resolve())]
    return [*cmd, "-t", "-q"] if test else cmd


# ---- the cluster ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    listen: str
    sims: dict[str, str]  # household_listen, social_security_listen
    property_dsn: str
    replicas: list[WorkerSpec]


def plan(
    config: Config,
    replicas: int,
    state: Path,
    *,
    listen: str,
    replica_port: int,
    ops_port: int,
    free_ports: bool,
    origin_prefix: str,
    certs: Path | None,
) -> Plan:
    host, _ = host_port(listen)
    sims = {
        key: (join_host_port(host, free_port(host)) if free_ports else str(config.simulators[key]))
        for key in ("household_listen", "social_security_listen")
    }
    dsn = f"sqlite:///{(state / 'frontdb' / 'property.sqlite3').resolve()}"
    common: dict[str, Any] = merge_tables(
        DevPki(certs.resolve()).config_overrides() if certs else {},
        {
            "departments": {
                "household": {"endpoint": f"http://{sims['household_listen']}"},
                "social_security": {"endpoint": f"http://{sims['social_security_listen']}"},
                "property": {"endpoint": dsn},
            }
        },
    )
    specs = []
    for i in range(replicas):
        port = free_port(host) if free_ports else replica_port + i
        ops = free_port(host) if free_ports else ops_port + i
        specs.append(
            WorkerSpec(
                index=i,
                name=f"replica-{i}",
                overrides=merge_tables(
                    common,
                    {
                        "server": {
                            "listen": join_host_port(host, port),
                            "ops_listen": join_host_port(host, ops),
                            "http_listen": "",  # the door's port would be shared by replicas
                        },
                        "audit": {
                            "dir": str((state / f"replica-{i}" / "audit").resolve()),
                            "origin": f"{origin_prefix}/replica-{i}",
                        },
                    },
                ),
            )
        )
    if free_ports:
        listen = join_host_port(host, free_port(host))
    return Plan(listen=listen, sims=sims, property_dsn=dsn, replicas=specs)


async def _wait_port(address: str, proc: asyncio.subprocess.Process, what: str) -> None:
    host, port = host_port(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise ConfigError(f"{what} exited early (code {proc.returncode})")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise ConfigError(f"{what} did not start listening on {address}")


def _vkey(config: Config, spec: WorkerSpec) -> str:
    note_key = Path(spec.overrides.get("audit", {}).get("note_key", config.audit.note_key))
    return NoteSigner.from_pem(spec.origin, note_key.read_bytes()).vkey


def banner(info: Mapping[str, Any], state: Path) -> str:
    lines = [
        "",
        f"Proofless cluster: {len(info['replicas'])} replicas behind nginx (TCP passthrough).",
        f"  gRPC (mutual TLS), load-balanced  {info['address']}",
    ]
    for r in info["replicas"]:
        lines.append(
            f"  {r['name']}  {r['address']}  pid {r['pid']}  ops http://{r['ops_address']}"
            f"  audit {r['audit_dir']}"
        )
    dirs = " ".join(r["audit_dir"] for r in info["replicas"])
    keys = " ".join(f"--key '{r['vkey']}'" for r in info["replicas"])
    lines += [
        f"  state (pids, ports, vkeys)  {state / 'cluster.json'}",
        "",
        "Try:  .venv/bin/proofless call items --address " + info["address"],
        f"Audit all replicas as one timeline:  .venv/bin/proofless audit merge {dirs} {keys}",
        "",
        "Ctrl-C stops nginx and the simulators and drains the replicas.",
    ]
    return "\n".join(lines)


def prepare(p: Plan, state: Path) -> tuple[str, Path]:
    """Create the state directory and the nginx config, checked with `nginx -t`."""
    nginx = nginx_binary()
    if nginx is None:
        raise ConfigError(
            "nginx is not installed (Debian: apt-get install nginx; `make system-deps`)"
        )
    (state / "frontdb").mkdir(parents=True, exist_ok=True)
    conf = state / "nginx.conf"
    upstreams = [str(s.overrides["server"]["listen"]) for s in p.replicas]
    conf.write_text(render_nginx(p.listen, upstreams, state, stream_module_directive(nginx)))
    check = subprocess.run(
        nginx_command(nginx, conf, test=True), check=False, capture_output=True, text=True
    )
    if check.returncode != 0:
        raise ConfigError(f"nginx -t failed for {conf}: {check.stderr.strip()}")
    return nginx, conf


async def run_cluster(
    config_path: Path, config: Config, p: Plan, state: Path, log_level: str
) -> int:
    nginx, conf = prepare(p, state)
    sims_env = {
        **os.environ,
        **env_overrides(
            merge_tables(
                p.replicas[0].overrides if p.replicas else {},
                {"simulators": p.sims, "departments": {"property": {"endpoint": p.property_dsn}}},
            )
        ),
    }
    sims = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "simulators", "--config", str(config_path),
        "--log-level", log_level, env=sims_env, start_new_session=True,
    )  # fmt: skip
    proxy: asyncio.subprocess.Process | None = None
    try:
        for key in ("household_listen", "social_security_listen"):
            await _wait_port(p.sims[key], sims, "the department simulators")
        sup = Supervisor(
            [WorkerProcess(s, config_path, log_level, state) for s in p.replicas],
            config.server.grace_seconds,
            restart=False,
        )
        sup.install_signals()
        ready: list[Ready] = await sup.start_all()
        proxy = await asyncio.create_subprocess_exec(
            *nginx_command(nginx, conf), start_new_session=True
        )
        await _wait_port(p.listen, proxy, "nginx")
        ops_host, _ = host_port(p.listen)
        info = {
            "address": p.listen,
            "nginx": {"pid": proxy.pid, "config": str(conf.resolve())},
            "simulators": {"pid": sims.pid, **p.sims, "property_dsn": p.property_dsn},
            "replicas": [
                {
                    "name": s.name,
                    "index": s.index,
                    "pid": r.pid,
                    "address": s.overrides["server"]["listen"],
                    "ops_address": join_host_port(ops_host, r.ops_port),
                    "audit_dir": str(s.audit_dir),
                    "origin": s.origin,
                    "vkey": _vkey(config, s),
                }
                for s, r in zip(p.replicas, ready, strict=True)
            ],
        }
        tmp = state / "cluster.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(state / "cluster.json")
        print(banner(info, state), flush=True)
        await sup.run()  # returns once SIGTERM/SIGINT arrived and every live replica drained
        return 0
    finally:
        (state / "cluster.json").unlink(missing_ok=True)
        for proc in (proxy, sims):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.devtools.cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--config", type=Path, default=Path("deploy/config/gateway.toml"))
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--listen", default=DEFAULT_LISTEN, help="nginx's address (%(default)s)")
    ap.add_argument("--replica-port", type=int, default=DEFAULT_REPLICA_PORT,
                    help="replica i listens on this port + i (%(default)s)")  # fmt: skip
    ap.add_argument("--ops-port", type=int, default=DEFAULT_OPS_PORT,
                    help="replica i's ops HTTP port is this + i (%(default)s)")  # fmt: skip
    ap.add_argument("--free-ports", action="store_true",
                    help="free ports for nginx, replicas, ops, simulators (tests)")  # fmt: skip
    ap.add_argument("--state", type=Path, default=Path("var/cluster"),
                    help="audit logs, nginx.conf, cluster.json go here (%(default)s)")  # fmt: skip
    ap.add_argument("--certs", type=Path, help="a dev PKI directory instead of the config's")
    ap.add_argument("--origin-prefix",
                    help="replica i's audit origin is PREFIX/replica-i (default: the config's "
                    "origin without its last path segment)")  # fmt: skip
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.replicas < 1:
            raise ConfigError("--replicas must be at least 1")
        config = load_config(args.config)
        prefix = args.origin_prefix or config.audit.origin.rsplit("/", 1)[0]
        p = plan(
            config,
            args.replicas,
            args.state,
            listen=args.listen,
            replica_port=args.replica_port,
            ops_port=args.ops_port,
            free_ports=args.free_ports,
            origin_prefix=prefix,
            certs=args.certs,
        )
        return asyncio.run(run_cluster(args.config, config, p, args.state, args.log_level))
    except ProoflessError as err:
        print(f"proofless cluster: {err.diagnostics()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
