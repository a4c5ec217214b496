"""Layered configuration: environment overrides and merged tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import apply_env, merge_tables, parse_config
from gateway.devtools.pki import DevPki
from gateway.domain.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_merge_tables_merges_sub_tables_and_leaves_both_inputs_alone() -> None:
    base = {"server": {"listen": "a:1", "grace_seconds": 5}, "policy": {"file": "p"}}
    over = {"server": {"listen": "b:2"}, "audit": {"dir": "d"}}
    merged = merge_tables(base, over)
    assert merged == {
        "server": {"listen": "b:2", "grace_seconds": 5},
        "policy": {"file": "p"},
        "audit": {"dir": "d"},
    }
    merged["server"]["grace_seconds"] = 9
    merged["audit"]["dir"] = "e"
    assert base["server"]["grace_seconds"] == 5
    assert over["audit"] == {"dir": "d"}


def test_env_overrides_parse_as_toml_values() -> None:
    data = apply_env(
        {"server": {"listen": "a:1"}},
        {
            "PROOFLESS__SERVER__LISTEN": "0.0.0.0:50051",
            "PROOFLESS__SERVER__MAX_IN_FLIGHT": "64",
            "PROOFLESS__AUDIT__DIR": "/var/lib/proofless",
            "OTHER": "x",
        },
    )
    assert data == {
        "server": {"listen": "0.0.0.0:50051", "max_in_flight": 64},
        "audit": {"dir": "/var/lib/proofless"},
    }


def test_a_dev_pki_directory_fills_every_key_path(tmp_path: Path) -> None:
    raw = tomllib.loads((ROOT / "deploy" / "config" / "gateway.toml").read_text())
    config = parse_config(merge_tables(raw, DevPki(tmp_path).config_overrides()))
    for path in (
        config.tls.ca,
        config.tls.cert,
        config.tls.key,
        config.tls.crl,
        config.proof_signing_key,
        config.audit.note_key,
        config.audit.pepper_file,
    ):
        assert path is not None
        assert path.parent == tmp_path


DEV = tomllib.loads((ROOT / "deploy" / "config" / "gateway.toml").read_text())


def server_with(**server: str) -> dict[str, object]:
    return merge_tables(DEV, {"server": server})


@pytest.mark.parametrize("ops", ["0.0.0.0:9464", "[::]:9464", ":9464", "10.0.0.1:9464"])
def test_internal_ops_endpoints_never_share_a_port_that_faces_the_network(ops: str) -> None:
    with pytest.raises(ConfigError, match="set ops_internal_listen"):
        parse_config(server_with(ops_listen=ops))
    config = parse_config(server_with(ops_listen=ops, ops_internal_listen="127.0.0.1:9465"))
    assert config.server.ops_internal_listen == "127.0.0.1:9465"


@pytest.mark.parametrize("ops", ["127.0.0.1:9464", "localhost:9464", "[::1]:9464"])
def test_on_loopback_the_ops_port_may_serve_everything(ops: str) -> None:
    assert parse_config(server_with(ops_listen=ops)).server.ops_internal_listen == ""


def test_the_internal_ops_listener_is_another_address() -> None:
    with pytest.raises(ConfigError, match="ops_internal_listen is ops_listen"):
        parse_config(server_with(ops_listen="0.0.0.0:9464", ops_internal_listen="0.0.0.0:9464"))
    with pytest.raises(ConfigError, match="host:port"):
        parse_config(server_with(ops_listen="0.0.0.0:9464", ops_internal_listen="nowhere"))
