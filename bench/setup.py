"""The bench's world: a fresh dev PKI, a policy whose rate limits sit far above the load, and
a gateway configuration pointing at both, all in one temporary directory.

The rate limiter, admission control, policy, audit and proofs all stay on; only the numbers
that would refuse the load (100 req/s per caller, 512 in flight) are raised.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.simulators.datagen import generate
from gateway.config import merge_tables
from gateway.devtools.pki import DevPki, init_dev_pki

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


def bench_policy() -> str:
    """The dev policy with every caller's rate limit raised above any load this machine makes."""
    text = re.sub(r"^rate = \{[^}]*\}", BENCH_RATE, DEV_POLICY.read_text(), flags=re.M)
    # the load asks about the same few hundred applicants thousands of times
    return re.sub(r"subject_budget = \{[^}]*\}", "subject_budget = { per_day = 1000000000 }", text)


def prepare(dir: Path) -> Workdir:
    pki = init_dev_pki(dir / "pki")
    policy = dir / "policy.toml"
    policy.write_text(bench_policy())
    raw = merge_tables(tomllib.loads(DEV_CONFIG.read_text()), pki.config_overrides())
    raw = merge_tables(
        raw,
        {
            "server": {
                "listen": "127.0.0.1:0",
                "ops_listen": "127.0.0.1:0",
                "http_listen": "",
                "grace_seconds": 1,
                "max_in_flight": 8192,
                "max_concurrent_streams": 1024,
            },
            "policy": {"file": str(policy)},
            "departments": {
                "household": {"pool_size": 64},
                "social_security": {"pool_size": 64},
                "property": {"endpoint": f"sqlite:///{dir / 'frontdb' / 'property.sqlite3'}"},
            },
            "simulators": {
                "seed": SEED,
                "population": POPULATION,
                "household_listen": "127.0.0.1:0",
                "social_security_listen": "127.0.0.1:0",
            },
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
