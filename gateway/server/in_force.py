"""The rules in force: the evidence catalogue and the policy checked against it, as one
snapshot that is replaced whole, never half.

A request takes one snapshot when it arrives and decides everything with it; its audit
entry records both versions (SHA-256 of the policy file, of the catalogue files), so the
rules in force for any access can be read back. The snapshot reloads when the policy file,
a catalogue file or the catalogue directory changes, and on SIGHUP; a policy or catalogue
that does not load, or a catalogue the policy no longer fits, is refused and the old
snapshot stays (gateway.config.reload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.catalogue import Catalogue, load_catalogue
from gateway.catalogue.mapping import TypedBuilder
from gateway.domain.policy import Policy
from gateway.domain.policy_file import load_policy


@dataclass(frozen=True)
class InForce:
    policy: Policy
    catalogue: Catalogue
    #: evidence type → the builder of its typed proofless.v1 message (typed RPCs)
    builders: Mapping[str, TypedBuilder] = field(default_factory=dict)

    @property
    def versions(self) -> tuple[str, str]:
        return self.policy.version, self.catalogue.version


def load_in_force(
    policy_file: Path, catalogue_dir: Path, overrides: Mapping[str, Any] | None = None
) -> InForce:
    """Read the catalogue, then the policy against it. Raises ConfigError."""
    catalogue = load_catalogue(catalogue_dir, overrides)
    policy = load_policy(policy_file, catalogue)
    builders = {
        code: TypedBuilder(evidence)
        for code, evidence in catalogue.evidence.items()
        if evidence.message
    }
    return InForce(policy, catalogue, builders)


def watched_paths(policy_file: Path, catalogue_dir: Path) -> list[Path]:
    """The policy file, the catalogue directory (a file added or removed changes it) and
    each catalogue file."""
    return [policy_file, catalogue_dir, *sorted(catalogue_dir.glob("*.toml"))]


# ---- configuration changes, as the audit log records them ---------------------------------

KIND_CONFIG = "config"


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[str]]:
    out = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
    return {k: v for k, v in out.items() if v}


def changes(old: InForce | None, new: InForce) -> dict[str, Any]:
    """What changed between two snapshots, by name: service items and callers of the policy,
    departments, evidence types and claims of the catalogue. Names only: no rule text, no
    value (a policy names no person)."""
    if old is None:
        return {}
    out: dict[str, Any] = {}
    for name, before, after in (
        ("items", old.policy.items, new.policy.items),
        ("callers", old.policy.callers, new.policy.callers),
        ("departments", old.catalogue.departments, new.catalogue.departments),
        ("evidence_types", old.catalogue.evidence, new.catalogue.evidence),
        ("claims", old.catalogue.claims, new.catalogue.claims),
    ):
        found = _diff(before, after)
        if found:
            out[name] = found
    return out


def config_entry(
    *,
    time: str,
    trigger: str,
    old: InForce | None,
    new: InForce,
    refused: str = "",
) -> dict[str, Any]:
    """The audit entry of a load or reload of the rules (`trigger`: start, change, sighup):
    applied, with the old and new versions and what changed; or refused (`refused` says
    why, in at most 300 characters), with the version that stays in force."""
    entry: dict[str, Any] = {
        "kind": KIND_CONFIG,
        "time": time,
        "trigger": trigger,
        "what": "policy and catalogue",
        "outcome": "refused" if refused else "applied",
        "policy": {"old": old.policy.version if old else "", "new": new.policy.version},
        "catalogue": {
            "old": old.catalogue.version if old else "",
            "new": new.catalogue.version,
        },
    }
    if refused:
        entry["error"] = refused[:300]
    else:
        entry["changes"] = changes(old, new)
    return entry
