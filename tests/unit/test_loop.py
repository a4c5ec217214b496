"""`[server] event_loop`: serve runs on the loop the configuration names (server/loop.py)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from gateway.config import merge_tables, parse_config
from gateway.domain.errors import ConfigError
from gateway.server.loop import run
from tests.unit.test_config import DEV


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default_and_asyncio_the_alternative() -> None:
    assert run(_loop_type()) is uvloop.Loop
    assert run(_loop_type(), "asyncio") is not uvloop.Loop
    assert issubclass(run(_loop_type(), "asyncio"), asyncio.BaseEventLoop)


def test_an_unknown_loop_is_refused_without_leaving_the_coroutine_unawaited() -> None:
    main = _loop_type()
    with pytest.raises(ConfigError, match="event_loop"):
        run(main, "trio")
    assert main.cr_frame is None  # closed, not left for a "never awaited" warning


def test_the_configuration_checks_event_loop() -> None:
    unset = {k: v for k, v in DEV["server"].items() if k != "event_loop"}
    assert parse_config({**DEV, "server": unset}).server.event_loop == "uvloop"
    asyncio_loop = merge_tables(DEV, {"server": {"event_loop": "asyncio"}})
    assert parse_config(asyncio_loop).server.event_loop == "asyncio"
    with pytest.raises(ConfigError, match="event_loop"):
        parse_config(merge_tables(DEV, {"server": {"event_loop": "tokio"}}))
