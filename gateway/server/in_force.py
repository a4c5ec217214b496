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
