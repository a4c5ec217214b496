"""Fixtures for audit tests: a note key, in memory and as a PEM file (tests.support.auditlog)."""

from __future__ import annotations

from tests.support.auditlog import note_key, note_key_file

__all__ = ["note_key", "note_key_file"]
