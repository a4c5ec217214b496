"""`proofless catalogue|policy`: check the evidence catalogue and the access policy, and
explain a decision, offline (the files, not a running gateway)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.catalogue import Catalogue, load_catalogue
from gateway.domain.errors import ConfigError, PermissionDenied, ProoflessError
from gateway.domain.policy import explain_allowed
from gateway.domain.policy_file import load_policy
from gateway.domain.requirements import Requirement
from gateway.domain.requirements import describe as describe_requirements

Command = Callable[[argparse.Namespace], int]
DEFAULT_CATALOGUE = Path("deploy/catalogue")
DEFAULT_POLICY = Path("deploy/config/policy.toml")


def _guarded(func: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ProoflessError as err:
            print(f"proofless: {err.diagnostics()}", file=sys.stderr)
            return 1

    run.__doc__ = func.__doc__
    return run


def _load_catalogue(directory: Path) -> Catalogue:
    """The catalogue, with each department's resilience settings checked too."""
    from gateway.server.departments import resilience_of

    catalogue = load_catalogue(directory)
    for department in catalogue.departments.values():
        try:
            resilience_of(department)
        except ConfigError as err:
            raise ConfigError(
                f"{department.source}: [department.resilience]: {err.message}"
            ) from None
    return catalogue


# ---- catalogue ------------------------------------------------------------------------------


def cmd_catalogue_check(args: argparse.Namespace) -> int:
    catalogue = _load_catalogue(args.dir)
    print(f"{args.dir}: valid, version {catalogue.version}")
    for code, department in sorted(catalogue.departments.items()):
        evidence = [e for e in catalogue.evidence.values() if e.department == code]
        print(f"  {code:20} {department.connector:9} {department.name}")
        for e in sorted(evidence, key=lambda e: e.code):
            claims = sorted(c.code for c in catalogue.claims.values() if c.evidence == e.code)
            typed = f", typed as {e.message}" if e.message else ""
            print(
                f"    evidence {e.code}: {len(e.record.fields)} fields about a {e.subject} "
                f"({e.cardinality}{typed})"
            )
            for claim in claims:
                print(f"      claim {claim}")
    return 0


def cmd_catalogue_show(args: argparse.Namespace) -> int:
    catalogue = _load_catalogue(args.dir)
    evidence = catalogue.evidence.get(args.code)
    claim = catalogue.claims.get(args.code)
    if evidence is not None:
        print(f"{evidence.code}: {evidence.name} — {evidence.description}")
        print(
            f"  department {evidence.department}; subject {evidence.subject};",
            evidence.cardinality,
        )
        for f in evidence.record.fields:
            personal = " (personal)" if f.personal else ""
            print(f"  {f.name:24} {f.type:8}{personal} {f.description}")
        return 0
    if claim is not None:
        print(f"{claim.code}: {claim.description}")
        for p in claim.params:
            extra = (
                " (required)"
                if p.required
                else f" (default {p.default})"
                if p.default is not None
                else ""
            )
            print(f"  {p.name} [{p.type}]{extra}: {p.description}")
        print(f"  rule: {' '.join(claim.rule_text.split())}")
        return 0
    print(f"proofless: no evidence type or claim {args.code!r} in {args.dir}", file=sys.stderr)
    return 1


# ---- policy ---------------------------------------------------------------------------------


def cmd_policy_check(args: argparse.Namespace) -> int:
    catalogue = _load_catalogue(args.catalogue)
    pol = load_policy(args.file, catalogue)
    print(f"{args.file}: valid, version {pol.version} (catalogue {catalogue.version[:12]})")
    print(f"  {len(pol.callers)} callers, {len(pol.items)} service items")
    for item in pol.items.values():
        records = "; ".join(f"{k}: {len(v)} fields" for k, v in sorted(item.records.items()))
        flags = [
            *(["consent"] if item.consent_required else []),
            *(["purpose"] if item.purpose_required else []),
            *([f"covert {item.covert_embargo_days}d"] if item.covert_embargo_days else []),
        ]
        print(
            f"  {item.code:24} {', '.join(sorted(item.callers))} | "
            f"{records or 'no records'} | {len(item.claims)} claims"
            + (f" | requires {len(item.requirements.requirements)}" if item.requirements else "")
            + (f" | {', '.join(flags)}" if flags else "")
        )
    return 0


def cmd_policy_explain(args: argparse.Namespace) -> int:
    catalogue = _load_catalogue(args.catalogue)
    pol = load_policy(args.policy, catalogue)
    if args.proof:
        text = pol.explain(args.caller, args.item, args.proof)
        print(text)
        return 0 if explain_allowed(text) else 1
    try:
        item = pol.grant(args.caller, args.item)
    except PermissionDenied as denied:
        print(f"DENIED ({denied.reason}): {denied.message}; policy {pol.version[:12]}")
        return 1
    if not item.requirements:
        print(f"{item.code} ({item.name}) declares no requirements: CheckItem refuses it")
        return 1
    print(f"CheckItem {item.code} ({item.name}) for {args.caller}; policy {pol.version[:12]}")
    for line in describe_requirements(item.requirements):
        name = line.split(":", 1)[0]
        requirement = item.requirements.requirements.get(name)
        reach = ""
        if requirement is not None:
            reach = " -> " + ", ".join(sorted(_departments(catalogue, requirement)))
        print(f"  {line}{reach}")
    return 0


def _departments(catalogue: Catalogue, requirement: Requirement) -> set[str]:
    """The departments a requirement reaches (a claim's own evidence and what it reads)."""
    if requirement.prefill:
        return {catalogue.evidence[requirement.prefill].department}
    claim = catalogue.claims[requirement.claim]
    return {catalogue.evidence[e].department for e in claim.evidence_types}


def _catalogue_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalogue",
        type=Path,
        default=DEFAULT_CATALOGUE,
        help="the evidence catalogue directory the policy names types of "
        f"(default {DEFAULT_CATALOGUE})",
    )


def add_commands(subparsers: Any) -> None:
    """Register `catalogue` and `policy` on the `proofless` command."""
    cat = subparsers.add_parser(
        "catalogue",
        help="check the evidence catalogue, show an evidence type or claim",
        description="The evidence catalogue: one TOML file per department declaring its "
        "connector, evidence types, fields and claims (ARCHITECTURE.md).",
    )
    cs = cat.add_subparsers(dest="catalogue_command", metavar="ACTION", required=True)
    p = cs.add_parser(
        "check",
        help="validate every file of a catalogue directory",
        description="Read every *.toml in DIR as one catalogue: every field, converter and "
        "code table checked, every CEL rule compiled and type-checked. Prints the version "
        "(SHA-256) and a summary, or every problem with its file and line, and exits 1.",
    )
    p.add_argument(
        "dir", type=Path, nargs="?", default=DEFAULT_CATALOGUE, help="default %(default)s"
    )
    p.set_defaults(func=_guarded(cmd_catalogue_check))
    p = cs.add_parser("show", help="describe one evidence type or claim")
    p.add_argument("code", help="an evidence type (household) or claim (household.residence)")
    p.add_argument("--dir", type=Path, default=DEFAULT_CATALOGUE, help="default %(default)s")
    p.set_defaults(func=_guarded(cmd_catalogue_show))

    pol = subparsers.add_parser(
        "policy",
        help="check the access policy, explain a decision",
        description="The access policy (用证清单): which caller may use which service item, "
        "and for it which evidence, fields and claims. Deny by default.",
    )
    ps = pol.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    p = ps.add_parser(
        "check",
        help="validate a policy file against the catalogue and summarise it",
        description="Parse and validate a policy file against the evidence catalogue (every "
        "evidence type, field and claim it names must exist); print its version (SHA-256) "
        "and a summary, or the precise error (file, table, key) and exit 1.",
    )
    p.add_argument("file", type=Path, nargs="?", default=DEFAULT_POLICY, help="default %(default)s")
    _catalogue_option(p)
    p.set_defaults(func=_guarded(cmd_policy_check))
    p = ps.add_parser(
        "explain",
        help="why a caller may or may not use a proof for a service item",
        description="Say whether CALLER may use PROOF (an evidence type such as household, or "
        "a claim such as property.ownership) for ITEM, with the fields it would see or the "
        "parameters it may use, or the rule that denies it. Without --proof: the item's "
        "requirements as CheckItem decides them, and the departments each reaches. Exit 0 "
        "allowed, 1 denied.",
    )
    p.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy TOML")
    _catalogue_option(p)
    p.add_argument("--caller", required=True, help="caller id")
    p.add_argument("--item", required=True, help="service item code")
    p.add_argument("--proof", help="evidence type or claim (default: the item's requirements)")
    p.set_defaults(func=_guarded(cmd_policy_explain))
