"""The deployed evidence catalogue and policy, loaded once, for tests that decide with them."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from gateway.catalogue import Catalogue, load_catalogue
from gateway.domain.policy import Policy
from gateway.domain.policy_file import parse_policy

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_DIR = ROOT / "deploy" / "catalogue"
POLICY_FILE = ROOT / "deploy" / "config" / "policy.toml"


@cache
def catalogue() -> Catalogue:
    return load_catalogue(CATALOGUE_DIR)


def policy_from(data: bytes, source: str = "test-policy.toml") -> Policy:
    """A policy file's bytes, parsed against the deployed catalogue."""
    return parse_policy(data, source, catalogue())


def deployed_policy() -> Policy:
    return policy_from(POLICY_FILE.read_bytes(), str(POLICY_FILE))


def catalogue_with(overrides: dict[str, object] | None) -> Catalogue:
    """The deployed catalogue with a configuration's [departments] laid over it."""
    return load_catalogue(CATALOGUE_DIR, overrides)
