"""Fixtures for integration tests: a real stack (tests.support.stack) per module or per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from gateway.devtools.pki import DevPki
from tests.support.stack import Stack, rich_details, running_stack


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(pki, tmp_path_factory.mktemp("state")) as s:
        yield s


@pytest.fixture
def make_stack(pki: DevPki, tmp_path: Path) -> Callable[..., Any]:
    """For tests that need their own gateway (fault injection, restarts, other config)."""

    def make(overrides: dict[str, Any] | None = None, state: Path | None = None) -> Any:
        return running_stack(pki, state or tmp_path, overrides)

    return make


@pytest.fixture
def details() -> Iterator[Callable[[grpc.aio.AioRpcError], list[Any]]]:
    return rich_details
