"""Fixtures for audit tests: a note key, in memory and as a PEM file."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@pytest.fixture(scope="session")
def note_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def note_key_file(tmp_path: Path, note_key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "note-key.pem"
    path.write_bytes(
        note_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
