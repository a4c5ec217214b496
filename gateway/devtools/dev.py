"""`proofless dev` (what `make run` runs): the department simulators in a child process and the
gateway in this one, with a banner that says where everything is and what to try."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapters.simulators.datagen import generate
from gateway.config import Config, host_port, load_config
from gateway.domain.errors import ConfigError
from gateway.ops.logging import configure_logging
from gateway.server.app import serve
from gateway.server.loop import run

SIMULATOR_START_TIMEOUT_S = 30.0
JWKS = ".well-known/jwks.json"


def example_id_number(config: Config) -> str:
    """A synthetic citizen the simulators know, from the same seeded generator they use."""
    sims = config.simulators
    population = generate(
        seed=int(sims.get("seed", 20261121)), size=int(sims.get("population", 2000))
    )
    return population.scenarios["household_head"]


def http_first_call(config: Config, port: int, id_number: str) -> list[str]:
    """The first call over the HTTP/JSON door, as a `curl` command that works as printed from
    the repository root, and the line that checks its proof (README.md shows the same)."""
    host, _ = host_port(config.server.http_listen)
    tls = config.tls
    clients = tls.ca.parent / "clients"
    body = json.dumps(
        {
            "context": {
                "serviceItem": "housing-transfer",
                "caseId": "QG-2026-000001",
                "purpose": "buyer residence check",
            },
            "applicant": {"idNumber": id_number},
            "readMask": "name,regionCode,status",
        },
        separators=(",", ":"),
    )
    return [
        f"curl -sS --cert {clients}/quangang-window.pem --key {clients}/quangang-window.key "
        f"--cacert {tls.ca} https://{host}:{port}/v1/records/household "
        f"-H 'content-type: application/json' -d {shlex.quote(body)} -o answer.json",
        '.venv/bin/python -c \'import json; print(json.load(open("answer.json"))'
        '["attestation"]["proof"])\' > proof.jws',
    ]


def ready_banner(gw: Any, config: Config, config_path: Path) -> str:
    host, _ = host_port(config.server.ops_listen)
    ops = f"http://{host}:{gw.ops_port}"
    internal_listen = config.server.ops_internal_listen
    internal_host = host_port(internal_listen)[0] if internal_listen else host
    internal = f"http://{internal_host}:{gw.ops_internal_port}"
    idn = example_id_number(config)
    cfg = "" if config_path == Path("deploy/config/gateway.toml") else f" --config {config_path}"
    call = (
        f".venv/bin/proofless call household{cfg} --as quangang-window --item housing-transfer "
        f"--case QG-2026-000001 --purpose {shlex.quote('buyer residence check')} "
        f"--id-number {idn} --fields name,region_code,status --save-proof proof.jws"
    )
    return "\n".join(
        [
            "",
            "Proofless is serving.",
            f"  gRPC (mutual TLS)  {gw.address}",
            *(
                [
                    f"  HTTP/JSON (mTLS)   https://{host_port(config.server.http_listen)[0]}:"
                    f"{gw.http_port}  (OpenAPI: /openapi.json)"
                ]
                if gw.http_port
                else []
            ),
            f"  dashboard          {internal}/dashboard",
            f"  metrics            {internal}/metrics",
            f"  JWKS               {ops}/.well-known/jwks.json",
            f"  audit log          {config.audit.dir}  (checkpoint key: {ops}/audit/vkey)",
            "",
            "Try, in another terminal:",
            f"  {call}",
            f"  .venv/bin/proofless proof verify proof.jws --jwks {ops}/.well-known/jwks.json",
            *(
                ["", "or over HTTP/JSON (the same call, the same proof):"]
                + [f"  {line}" for line in http_first_call(config, gw.http_port, idn)]
                + [f"  .venv/bin/proofless proof verify proof.jws --jwks {ops}/{JWKS}"]
                if gw.http_port
                else []
            ),
            f"  .venv/bin/proofless audit verify {config.audit.dir} --key "
            f'"$(curl -s {ops}/audit/vkey)"',
            "",
            "Ctrl-C stops.",
        ]
    )


def _wait_for(address: str, deadline: float, child: subprocess.Popen[bytes]) -> None:
    host, port = host_port(address)
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise ConfigError(f"the simulators exited early (code {child.returncode})")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ConfigError(f"the simulators did not start listening on {address}")


def run_dev(config_path: Path, log_level: str) -> int:
    config = load_config(config_path)
    configure_logging(log_level)
    sims = config.simulators
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "simulators",
            "--config",
            str(config_path),
            "--log-level",
            log_level,
        ],
    )
    try:
        deadline = time.monotonic() + SIMULATOR_START_TIMEOUT_S
        for key in ("household_listen", "social_security_listen"):
            _wait_for(str(sims[key]), deadline, child)
        run(
            serve(
                config, on_ready=lambda gw: print(ready_banner(gw, config, config_path), flush=True)
            ),
            config.server.event_loop,
        )
    except KeyboardInterrupt:
        pass
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    return 0
