"""Shared test fixtures: where the real servers (PostgreSQL, Redis, Chromium) are and whether
their absence is a skip (a laptop) or a failure (CI sets PROOFLESS_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from gateway.devtools.pki import DevPki, init_dev_pki

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
POSTGRES_DSN = os.environ.get(
    "PROOFLESS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("PROOFLESS_TEST_REDIS", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("PROOFLESS_REQUIRE_SERVICES") == "1"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, with PROOFLESS_REQUIRE_SERVICES=1, fail) when `name` does not answer."""
    if _answers(host, port):
        return
    reason = f"{name} does not answer on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and PROOFLESS_REQUIRE_SERVICES=1 requires it")
    pytest.skip(reason)


@pytest.fixture
def postgres_dsn() -> str:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_DSN


@pytest.fixture
def redis_url() -> str:
    need_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A fresh dev PKI (CA, server and caller certificates, signing keys) for the session."""
    return init_dev_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def vectors() -> Path:
    return VECTORS


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc honours http_proxy; tests talk to loopback only.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        monkeypatch.delenv(var, raising=False)
