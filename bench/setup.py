"""The bench's world: a fresh dev PKI, a policy whose rate limits sit far above the load, and
a gateway configuration pointing at both, all in one temporary directory.

The rate limiter, admission control, policy, audit and proofs all stay on; only the numbers
that would refuse the load (100 req/s per caller, 512 in flight) are raised.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.simulators.datagen import generate
from gateway.pki import DevPki, init_dev_pki

ROOT = Path(__file__).resolve().parent.parent
DEV_CONFIG = ROOT / "deploy" / "config" / "gateway.toml"
DEV_POLICY = ROOT / "deploy" / "config" / "policy.toml"
SEED = 20261121
POPULATION = 2000
BENCH_RATE = "rate = { per_second = 10000000, burst = 10000000 }"

# The calls measured: who calls, for which service item.
RECORD_CALLER = "quangang-window"
RECORD_ITEM = "housing-transfer"
RECORD_FIELDS = ("name", "region_code", "status")
CLAIMS_CALLER = "fuzhou-civil-affairs"
CLAIMS_ITEM = "subsistence-review"  # household, social security and property, no consent


@dataclass(frozen=True)
class Workdir:
    dir: Path
    pki: DevPki

    @property
    def config_file(self) -> Path:
        return self.dir / "gateway.json"

    def raw_config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.config_file.read_text())
        return loaded


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def bench_policy() -> str:
    """The dev policy with every caller's rate limit raised above any load this machine makes."""
    return re.sub(r"^rate = \{[^}]*\}", BENCH_RATE, DEV_POLICY.read_text(), flags=re.M)


def prepare(dir: Path) -> Workdir:
    pki = init_dev_pki(dir / "pki")
    policy = dir / "policy.toml"
    policy.write_text(bench_policy())
    raw = tomllib.loads(DEV_CONFIG.read_text())
    raw = _merge(
        raw,
        {
            "server": {
                "listen": "127.0.0.1:0",
                "ops_listen": "127.0.0.1:0",
                "grace_seconds": 1,
                "max_in_flight": 8192,
                "max_concurrent_streams": 1024,
            },
            "tls": {
                "ca": str(pki.ca_pem),
                "cert": str(pki.server_pem),
                "key": str(pki.server_key),
                "crl": str(pki.ca_crl),
            },
            "proofs": {"signing_key": str(pki.proof_signing_key)},
            "audit": {
                "note_key": str(pki.audit_note_key),
                "pepper_file": str(pki.audit_pepper),
            },
            "policy": {"file": str(policy)},
            "departments": {
                "household": {"app_secret_file": str(pki.household_secret), "pool_size": 64},
                "social_security": {"pool_size": 64},
                "property": {"dsn": f"sqlite:///{dir / 'frontdb' / 'property.sqlite3'}"},
            },
            "simulators": {
                "seed": SEED,
                "population": POPULATION,
                "household_listen": "127.0.0.1:0",
                "social_security_listen": "127.0.0.1:0",
            },
            "consent": {"issuers_jwks": str(pki.consent_issuer_jwks)},
        },
    )
    work = Workdir(dir, pki)
    work.config_file.write_text(json.dumps(raw, indent=1))
    return work


def scenarios() -> dict[str, str]:
    return dict(generate(seed=SEED, size=POPULATION).scenarios)


def applicant_ids(count: int) -> list[str]:
    """The ID numbers the load cycles through: `count` people of the bench population (the
    same list for B1 and the gateway), so single-flight coalescing in the gateway does not
    make it look cheaper than B1, which calls the department for every request."""
    people = sorted(generate(seed=SEED, size=POPULATION).people)
    return people[: max(1, count)]
