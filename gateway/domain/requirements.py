"""What a service item needs, decided in one call ("one thing, one call", 一件事一次办).

An item's requirements (in the policy, `[items.X.requires.NAME]`) are claims with their
parameters — fixed by the policy, bound to an item attribute such as its region, or taken from
the request's parties by role (the spouse, a household member) — or evidence fields that
prefill the application form. Named groups combine requirements and other groups as all-of /
any-of (`[items.X.groups.NAME] all = [...]` or `any = [...]`, like the EU Once-Only evidence
broker's requirement sets); `decide` names the group or requirement that gives the item's
verdict (by default: every claim requirement).

Verdicts are three-valued: HOLDS, DOES_NOT_HOLD, UNDETERMINED (a department could not
answer). `all` fails on any failure and is undetermined while any part is; `any` holds on any
success and is undetermined while nothing holds and some part is. A requirement about a role
the request names several times (every household member) holds when it holds for each.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: `{ party = "applicant" }` binds a parameter to the applicant (e.g. the legal
#: representative of the business a requirement is about)
APPLICANT = "applicant"

HOLDS = "HOLDS"
DOES_NOT_HOLD = "DOES_NOT_HOLD"
UNDETERMINED = "UNDETERMINED"


@dataclass(frozen=True)
class ParamSource:
    """Where a requirement's claim parameter comes from: a value in the policy, an item
    attribute (`{ item = "region" }`) or a party of the request (`{ party = "spouse" }`)."""

    value: Any = None
    item_attribute: str = ""
    party: str = ""

    def describe(self) -> str:
        if self.item_attribute:
            return f"the item's {self.item_attribute}"
        if self.party:
            return f"the request's {self.party}"
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return repr(self.value) if isinstance(self.value, str) else str(self.value)


@dataclass(frozen=True)
class Requirement:
    name: str
    claim: str = ""  # a catalogue claim; or
    prefill: str = ""  # a catalogue evidence type whose `fields` prefill the form
    fields: tuple[str, ...] = ()
    params: Mapping[str, ParamSource] = field(default_factory=dict)
    #: whose record a prefill reads: "" for the applicant, else a party role
    subject_party: str = ""
    description: str = ""

    @property
    def kind(self) -> str:
        return "claim" if self.claim else "prefill"

    def roles(self) -> frozenset[str]:
        """The request's parties it needs ("applicant" names the applicant: not a party)."""
        found = {p.party for p in self.params.values() if p.party}
        if self.subject_party:
            found.add(self.subject_party)
        return frozenset(found - {APPLICANT})


@dataclass(frozen=True)
class Group:
    name: str
    mode: str  # "all" | "any"
    members: tuple[str, ...]  # requirement or group names


@dataclass(frozen=True)
class ItemRequirements:
    requirements: Mapping[str, Requirement] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    decide: str = ""  # a group or requirement name; "" = all claim requirements

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def roles(self) -> frozenset[str]:
        return frozenset(r for req in self.requirements.values() for r in req.roles())

    def claims(self) -> list[Requirement]:
        return [r for r in self.requirements.values() if r.claim]

    def prefills(self) -> list[Requirement]:
        return [r for r in self.requirements.values() if r.prefill]


def combine(mode: str, verdicts: Iterable[str]) -> str:
    """The three-valued all-of / any-of."""
    seen = set(verdicts)
    if mode == "all":
        if DOES_NOT_HOLD in seen:
            return DOES_NOT_HOLD
        return UNDETERMINED if UNDETERMINED in seen else HOLDS
    if HOLDS in seen:
        return HOLDS
    return UNDETERMINED if UNDETERMINED in seen else DOES_NOT_HOLD


def decide(spec: ItemRequirements, verdicts: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """The item's verdict and each group's, from each claim requirement's verdict."""
    groups: dict[str, str] = {}

    def verdict_of(name: str) -> str:
        if name in verdicts:
            return verdicts[name]
        if name in groups:
            return groups[name]
        group = spec.groups[name]
        groups[name] = combine(group.mode, (verdict_of(m) for m in group.members))
        return groups[name]

    for name in spec.groups:
        verdict_of(name)
    if spec.decide:
        return verdict_of(spec.decide), groups
    return combine("all", (verdicts[r.name] for r in spec.claims())), groups


def check_groups(spec: ItemRequirements) -> str:
    """A problem with the groups (unknown member, a cycle, a prefill in a group), or ''."""
    for group in spec.groups.values():
        for member in group.members:
            if member in spec.requirements:
                if not spec.requirements[member].claim:
                    return f"group {group.name} names {member}, which prefills and decides nothing"
            elif member not in spec.groups:
                return f"group {group.name} names {member!r}, neither a requirement nor a group"
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> str:
        if name in done or name not in spec.groups:
            return ""
        if name in visiting:
            return f"group {name} contains itself"
        visiting.add(name)
        for member in spec.groups[name].members:
            problem = visit(member)
            if problem:
                return problem
        visiting.discard(name)
        done.add(name)
        return ""

    for name in spec.groups:
        problem = visit(name)
        if problem:
            return problem
    if spec.decide and spec.decide not in spec.groups:
        requirement = spec.requirements.get(spec.decide)
        if requirement is None or not requirement.claim:
            return f"decide names {spec.decide!r}, neither a group nor a claim requirement"
    return ""


def describe(spec: ItemRequirements) -> list[str]:
    """One line per requirement and group, for `proofless policy explain`."""
    lines = []
    for req in spec.requirements.values():
        if req.claim:
            params = ", ".join(f"{k} = {v.describe()}" for k, v in sorted(req.params.items()))
            lines.append(f"{req.name}: claim {req.claim}" + (f" ({params})" if params else ""))
        else:
            whose = f" of the {req.subject_party}" if req.subject_party else ""
            lines.append(f"{req.name}: prefill {req.prefill}{whose}: {', '.join(req.fields)}")
    for group in spec.groups.values():
        lines.append(f"{group.name}: {group.mode} of {', '.join(group.members)}")
    lines.append(f"verdict: {spec.decide or 'all claim requirements'}")
    return lines
