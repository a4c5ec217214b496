"""`proofless serve --workers N`: N gateway processes on one host sharing one gRPC port.

One asyncio gateway process uses about one core (BENCHMARKS.md, "Method"); a bigger
host runs several. Each worker is a whole gateway in its own process:

- the gRPC port is shared through SO_REUSEPORT (the server sets `grpc.so_reuseport`); the
  kernel spreads new TCP connections over the workers by a hash of the 4-tuple, so one
  long-lived channel stays on one worker and many channels spread;
- its own audit log shard `<audit.dir>/worker-<i>` with origin `<audit.origin>/worker-<i>`:
  an append-only Merkle log has one writer, so each worker signs its own log and an auditor
  verifies each shard and reads them together with `proofless audit merge`;
- its own ops port, `ops_listen` port + i (or any free port when that port is 0): each
  worker has its own Prometheus registry, so one ops port on worker 0 would show a fraction
  of the traffic as if it were all of it. Prometheus scrapes every worker and sums.

The parent only supervises: it restarts a worker that dies (the log recovers its torn tail
on open), forwards SIGHUP (policy and CRL reload), turns SIGTERM/SIGINT into SIGTERM for
every worker, and exits 0 once all have drained. Workers run in their own sessions, so a
terminal's Ctrl-C reaches the parent only; a worker whose parent disappears stops itself.

The same worker entry point (`python -m gateway.server.workers`) runs the replicas of
`gateway.devtools.cluster`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config, host_port, load_config
from gateway.domain.errors import ConfigError, ProoflessError
from gateway.ops.logging import configure_logging
from gateway.server.app import running_gateway
from gateway.server.loop import run

log = logging.getLogger("proofless.workers")

READY_TIMEOUT_S = 60.0
#: a worker that dies this many times within RESTART_WINDOW_S is not restarted again
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
RESTART_DELAY_S = 0.5
#: after SIGTERM, time a worker gets beyond its own grace period before SIGKILL
STOP_MARGIN_S = 10.0
PARENT_WATCH_S = 1.0


def env_overrides(table: Mapping[str, Any], prefix: str = "PROOFLESS") -> dict[str, str]:
    """Flatten {"audit": {"dir": "x"}} into {"PROOFLESS__AUDIT__DIR": '"x"'}: the
    environment overrides `gateway.config` applies on top of the TOML file. Strings are
    quoted (a JSON string is a TOML basic string) so "1" stays a string."""
    out: dict[str, str] = {}
    for key, value in table.items():
        name = f"{prefix}__{key.upper()}"
        if isinstance(value, Mapping):
            out.update(env_overrides(value, name))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[name] = str(value)
        else:
            out[name] = json.dumps(str(value))
    return out


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def reserve_shared_port(address: str) -> tuple[socket.socket, str]:
    """Bind (without listening) a SO_REUSEPORT socket on `address`; port 0 picks one.

    Held open while the workers run, it keeps the port ours across worker restarts; it is
    never in the kernel's accept group because it does not listen."""
    host, port = host_port(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{address}: cannot listen there ({exc.strerror})") from exc
    return sock, join_host_port(host, int(sock.getsockname()[1]))


@dataclass(frozen=True)
class WorkerSpec:
    """One gateway process: its index and the configuration keys it overrides."""

    index: int
    name: str
    overrides: Mapping[str, Any]

    @property
    def audit_dir(self) -> Path:
        return Path(self.overrides["audit"]["dir"])

    @property
    def origin(self) -> str:
        return str(self.overrides["audit"]["origin"])


def worker_specs(config: Config, count: int, listen: str) -> list[WorkerSpec]:
    """The shard, origin and ops port of each of `count` workers sharing `listen`."""
    ops_host, ops_base = host_port(config.server.ops_listen)
    internal = config.server.ops_internal_listen
    in_host, in_base = host_port(internal) if internal else (ops_host, 0)
    if internal and in_base and ops_base and abs(in_base - ops_base) < count:
        raise ConfigError(
            f"ops_listen and ops_internal_listen ports are fewer than {count} apart: "
            "worker i serves ops on each port + i"
        )

    def server(i: int) -> dict[str, str]:
        out = {
            "listen": listen,
            "ops_listen": join_host_port(ops_host, ops_base + i if ops_base else 0),
        }
        if internal:
            out["ops_internal_listen"] = join_host_port(in_host, in_base + i if in_base else 0)
        return out

    return [
        WorkerSpec(
            index=i,
            name=f"worker-{i}",
            overrides={
                "server": server(i),
                "audit": {
                    "dir": str(config.audit.dir / f"worker-{i}"),
                    "origin": f"{config.audit.origin}/worker-{i}",
                },
            },
        )
        for i in range(count)
    ]


@dataclass
class Ready:
    """What a worker reports once it serves (its ready file)."""

    index: int
    pid: int
    port: int
    ops_port: int

    @classmethod
    def read(cls, path: Path) -> Ready | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


class WorkerProcess:
    """Starts one worker (`python -m gateway.server.workers`) and waits until it serves."""

    def __init__(self, spec: WorkerSpec, config_path: Path, log_level: str, run_dir: Path) -> None:
        self.spec = spec
        self._config_path = config_path
        self._log_level = log_level
        self.ready_file = run_dir / f"{spec.name}.ready.json"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: Ready | None = None

    async def start(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        self.ready = None
        env = {**os.environ, **env_overrides(self.spec.overrides)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.server.workers",
            "--config",
            str(self._config_path),
            "--log-level",
            self._log_level,
            "--name",
            self.spec.name,
            "--index",
            str(self.spec.index),
            "--ready-file",
            str(self.ready_file),
            env=env,
            start_new_session=True,
        )

    async def wait_ready(self, within: float = READY_TIMEOUT_S) -> Ready:
        assert self.proc is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready = Ready.read(self.ready_file)
            if ready is not None:
                self.ready = ready
                return ready
            if self.proc.returncode is not None:
                raise ConfigError(
                    f"{self.spec.name} exited with code {self.proc.returncode} before serving"
                )
            await asyncio.sleep(0.05)
        raise ConfigError(f"{self.spec.name} did not start serving within {within:.0f} s")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM, then SIGKILL if it has not drained after its grace period."""
        if self.proc is None:
            return 0
        self.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), grace_s + STOP_MARGIN_S)
        except TimeoutError:
            log.warning("worker did not stop; killing it", extra={"worker": self.spec.name})
            self.signal(signal.SIGKILL)
            return await self.proc.wait()


class Supervisor:
    """Runs the workers, restarts the ones that die, stops them all on SIGTERM/SIGINT."""

    def __init__(
        self, workers: Sequence[WorkerProcess], grace_s: float, *, restart: bool = True
    ) -> None:
        self.workers = list(workers)
        self._grace_s = grace_s
        self._restart = restart
        self.stopping = asyncio.Event()
        self.failed = False

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.forward, signal.SIGHUP)

    def forward(self, sig: int) -> None:
        for w in self.workers:
            w.signal(sig)

    async def start_all(self) -> list[Ready]:
        for w in self.workers:
            await w.start()
        try:
            return [await w.wait_ready() for w in self.workers]
        except BaseException:
            await asyncio.gather(*(w.stop(self._grace_s) for w in self.workers))
            raise

    async def _watch(self, w: WorkerProcess) -> int:
        """Until stopping: wait for the worker; if it dies, restart it (rate-limited)."""
        deaths: deque[float] = deque(maxlen=MAX_RESTARTS)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                assert w.proc is not None
                exited = asyncio.ensure_future(w.proc.wait())
                await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping.is_set():
                    exited.cancel()
                    return await w.stop(self._grace_s)
                code = exited.result()
                now = time.monotonic()
                deaths.append(now)
                log.warning("worker exited", extra={"worker": w.spec.name, "exit_code": code})
                if not self._restart or (
                    len(deaths) == MAX_RESTARTS and now - deaths[0] < RESTART_WINDOW_S
                ):
                    self.failed = True
                    if self._restart:
                        log.error("worker keeps dying; stopping", extra={"worker": w.spec.name})
                        self.stopping.set()
                    return code
                await asyncio.sleep(RESTART_DELAY_S)
                await w.start()
                with contextlib.suppress(ConfigError):
                    ready = await w.wait_ready()
                    log.info("worker restarted", extra={"worker": w.spec.name, "pid": ready.pid})
        finally:
            stop.cancel()

    async def run(self) -> int:
        """Supervise until stopped; 0 when every worker drained and exited cleanly."""
        codes = await asyncio.gather(*(self._watch(w) for w in self.workers))
        return 0 if not self.failed and all(c == 0 for c in codes) else 1


def banner(listen: str, specs: Sequence[WorkerSpec], ready: Sequence[Ready], ops_host: str) -> str:
    lines = [
        "",
        f"Proofless is serving with {len(specs)} workers.",
        f"  gRPC (mutual TLS)  {listen}",
    ]
    for spec, r in zip(specs, ready, strict=True):
        lines.append(
            f"  {spec.name}  pid {r.pid}  ops http://{join_host_port(ops_host, r.ops_port)}"
            f"  audit {spec.audit_dir} ({spec.origin})"
        )
    lines += ["", "SIGTERM or Ctrl-C drains and stops every worker; SIGHUP reloads the policy."]
    return "\n".join(lines)


async def _run_workers(config_path: Path, config: Config, count: int, log_level: str) -> int:
    sock, listen = reserve_shared_port(config.server.listen)
    try:
        specs = worker_specs(config, count, listen)
        with tempfile.TemporaryDirectory(prefix="proofless-workers-") as run_dir:
            sup = Supervisor(
                [WorkerProcess(s, config_path, log_level, Path(run_dir)) for s in specs],
                config.server.grace_seconds,
            )
            sup.install_signals()
            ready = await sup.start_all()
            ops_host, _ = host_port(config.server.ops_listen)
            print(banner(listen, specs, ready, ops_host), flush=True)
            return await sup.run()
    finally:
        sock.close()


def run_workers(config_path: Path, count: int, log_level: str) -> int:
    """`proofless serve --workers N` (N >= 2)."""
    configure_logging(log_level)
    config = load_config(config_path)
    # the supervisor serves no calls: the standard loop; each worker runs on [server] event_loop
    return asyncio.run(_run_workers(config_path, config, count, log_level))


# ---- the worker process ---------------------------------------------------------------------


async def _serve_worker(config: Config, name: str, index: int, ready_file: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    async with running_gateway(config) as gw:
        loop.add_signal_handler(signal.SIGHUP, gw.reload_rules)
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"index": index, "pid": os.getpid(), "port": gw.port, "ops_port": gw.ops_port}
            )
        )
        tmp.replace(ready_file)  # atomic: the parent never reads half a file
        log.info("worker serving", extra={"worker": name, "port": gw.port})
        while not stop.is_set():
            # Orphaned (the supervisor was killed): stop rather than serve unsupervised.
            if os.getppid() != parent:
                log.warning("supervisor gone; stopping", extra={"worker": name})
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PARENT_WATCH_S):
                    await stop.wait()
        log.info("stopping: draining in-flight calls", extra={"worker": name})


def worker_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.server.workers", description=__doc__)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--name", required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--ready-file", type=Path, required=True)
    args = p.parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = load_config(args.config)
        run(
            _serve_worker(config, args.name, args.index, args.ready_file),
            config.server.event_loop,
        )
    except ProoflessError as err:
        print(f"proofless {args.name}: {err.diagnostics()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
