"""Starting the bench's processes pinned to a core, and reading what they print."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.domain.errors import ConfigError

SERVER_CORE = "0"
CLIENT_CORE = "1"
START_TIMEOUT_S = 60.0


def pinned(core: str, argv: list[str]) -> list[str]:
    """`argv` under `taskset -c core`, or unpinned (with a note in the output) without taskset
    or on a machine with one core."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 and core:
        return ["taskset", "-c", core, *argv]
    return argv


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        env.pop(var, None)
    return env


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    name: str,
    kind: str,
    workdir: Path,
    *,
    core: str,
    extra: list[str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """`cwd`: run the server from another checkout (A/B of two versions, `bench.ab`)."""
    argv = [sys.executable, "-m", "bench.servers", kind, "--workdir", str(workdir)]
    argv += ["--tag", name, *(extra or [])]
    log = (workdir / f"{name}.log").open("w")
    proc = subprocess.Popen(
        pinned(core, argv), stdout=subprocess.PIPE, stderr=log, text=True, env=_env(), cwd=cwd
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("READY "):
            return Server(name, proc, json.loads(line[6:]))
    proc.kill()
    raise ConfigError(
        f"bench server {name} did not start; see {workdir / (name + '.log')}:\n"
        + (workdir / f"{name}.log").read_text()[-2000:]
    )


def run_client(workdir: Path, port: int, pids: dict[str, int], **options: Any) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(port), "--workdir", str(workdir)]
    argv += ["--pids", ",".join(f"{k}={v}" for k, v in pids.items())]
    core = "" if options.pop("unpinned", False) else CLIENT_CORE
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not False and value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(
        pinned(core, argv), capture_output=True, text=True, env=_env(), check=False
    )
    if done.returncode != 0:
        raise ConfigError(f"load generator failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
