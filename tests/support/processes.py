"""Running Proofless as real processes: a fresh dev PKI and state directory, the department
simulators and the gateway as subprocesses, their configuration written as TOML. Shared by
the soak, crash, lifecycle and hostile-input tests: one way to run Proofless as processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gateway.config import merge_tables
from gateway.devtools.pki import DevPki, init_dev_pki

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"
POLICY = ROOT / "deploy" / "config" / "policy.toml"
SEED = 20261121
POPULATION = 300
START_TIMEOUT_S = 30.0


# ---- running Proofless as processes -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for a gateway configuration: tables of scalars, lists and inline tables."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    out = ([f"[{prefix}]"] if prefix and scalars else []) + scalars
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.append(dump_toml(value, f"{prefix}.{key}" if prefix else key))
    return "\n".join(out) + "\n"


def fast_policy(dest: Path) -> Path:
    """The dev policy with every rate limit lifted: these tests load the gateway on purpose."""
    text = re.sub(
        r"rate = \{[^}]*\}", "rate = { per_second = 1000000, burst = 1000000 }", POLICY.read_text()
    )
    text = re.sub(r"subject_budget = \{[^}]*\}", "subject_budget = { per_day = 100000000 }", text)
    dest.write_text(text)
    return dest


@dataclass
class ProcessStack:
    """Where a process-run Proofless lives: its configuration, ports and directories."""

    pki: DevPki
    state: Path
    config_path: Path
    raw: dict[str, Any]
    grpc_port: int
    ops_port: int
    logs: Path
    simulators: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    _starts: int = field(default=0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def audit_dir(self) -> Path:
        return Path(self.raw["audit"]["dir"])

    def credentials(self, caller: str) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_pem.read_bytes(),
            private_key=self.pki.client_key(caller).read_bytes(),
            certificate_chain=self.pki.client_pem(caller).read_bytes(),
        )

    def channel(self, caller: str, *, quick_reconnect: bool = False) -> grpc.aio.Channel:
        """A channel as `caller`; `quick_reconnect` for tests that restart the gateway (grpc
        otherwise waits a second or more before it tries a dead address again)."""
        options = (
            [
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 200),
            ]
            if quick_reconnect
            else []
        )
        return grpc.aio.secure_channel(self.address, self.credentials(caller), options=options)

    def _spawn(self, command: str, name: str) -> subprocess.Popen[bytes]:
        self._starts += 1
        log = (self.logs / f"{name}-{self._starts}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
            env.pop(var, None)
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", command, "--config", str(self.config_path)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def start_simulators(self) -> None:
        self.simulators = self._spawn("simulators", "simulators")
        for url in (
            self.raw["departments"]["household"]["endpoint"],
            self.raw["departments"]["social_security"]["endpoint"],
        ):
            _wait_for(lambda u=url: _http_status(u + "/health") is not None, self.simulators)
        dsn = self.raw["departments"]["property"]["endpoint"]
        _wait_for(lambda: Path(dsn.removeprefix("sqlite:///")).exists(), self.simulators)

    def start_gateway(self) -> subprocess.Popen[bytes]:
        self.gateway = self._spawn("serve", "gateway")
        _wait_for(lambda: self.ops_status("/readyz") == 200, self.gateway)
        return self.gateway

    def ops_status(self, path: str) -> int | None:
        return _http_status(f"http://127.0.0.1:{self.ops_port}{path}")

    def kill_gateway(self, sig: int = signal.SIGKILL) -> int:
        assert self.gateway is not None
        self.gateway.send_signal(sig)
        return self.gateway.wait(timeout=30)

    def stop(self) -> None:
        for proc in (self.gateway, self.simulators):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def _wait_for(ready: Any, proc: subprocess.Popen[bytes]) -> None:
    until = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while starting")
        if time.monotonic() > until:
            raise RuntimeError("process did not become ready in time")
        time.sleep(0.05)


def write_config(
    base: Path, *, pki: DevPki | None = None, overrides: Mapping[str, Any] | None = None
) -> ProcessStack:
    """A dev PKI (unless given), a state directory and a gateway TOML under `base`, all on
    free loopback ports, with rate limits lifted."""
    pki = pki or init_dev_pki(base / "pki")
    state = base / "state"
    logs = base / "logs"
    state.mkdir(parents=True, exist_ok=True)
    logs.mkdir(exist_ok=True)
    grpc_port, ops_port, hh_port, ss_port = (free_port() for _ in range(4))
    raw = merge_tables(
        merge_tables(tomllib.loads(DEV_CONFIG.read_text()), pki.config_overrides()),
        {
            "server": {
                "listen": f"127.0.0.1:{grpc_port}",
                "ops_listen": f"127.0.0.1:{ops_port}",
                "http_listen": "",  # the HTTP/JSON door stays closed: no shared port
                "grace_seconds": 5,
            },
            "audit": {"dir": str(state / "audit"), "checkpoint_every_ms": 200},
            "policy": {"file": str(fast_policy(base / "policy.toml"))},
            "departments": {
                "household": {"endpoint": f"http://127.0.0.1:{hh_port}"},
                "social_security": {"endpoint": f"http://127.0.0.1:{ss_port}"},
                "property": {"endpoint": f"sqlite:///{state / 'frontdb' / 'property.sqlite3'}"},
            },
            "simulators": {
                "population": POPULATION,
                "seed": SEED,
                "household_listen": f"127.0.0.1:{hh_port}",
                "social_security_listen": f"127.0.0.1:{ss_port}",
            },
            "ratelimit": {"backend": "local"},
        },
    )
    raw = merge_tables(raw, overrides or {})
    config_path = base / "gateway.toml"
    config_path.write_text(dump_toml(raw))
    return ProcessStack(
        pki=pki,
        state=state,
        config_path=config_path,
        raw=raw,
        grpc_port=grpc_port,
        ops_port=ops_port,
        logs=logs,
    )


@contextlib.contextmanager
def process_stack(
    base: Path, *, pki: DevPki | None = None, overrides: Mapping[str, Any] | None = None
) -> Iterator[ProcessStack]:
    """Simulators and gateway running as subprocesses; both stopped (SIGTERM) on exit."""
    stack = write_config(base, pki=pki, overrides=overrides)
    try:
        stack.start_simulators()
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
