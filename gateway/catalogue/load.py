"""The catalogue as a whole: every department file read, cross-checked and its rules compiled.

`parse_catalogue(files)` is pure (file name → bytes in, `Catalogue` out) and raises one
`CatalogueError` listing every problem with its file and line; `load_catalogue(directory)`
is the thin shell that reads `*.toml` there. What spans files is checked here: codes unique
across departments, claims reading evidence another file declares, typed messages matching
their evidence types, and every CEL rule compiled and type-checked against the evidence it
reads (gateway.catalogue.rules).

The catalogue's version is the SHA-256 over its files (each name and its bytes, in name
order); every audit entry records it next to the policy's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.catalogue import rules
from gateway.catalogue.mapping import CatalogueMismatch, check_message
from gateway.catalogue.parse import ParsedFile, RawClaim, parse_file
from gateway.catalogue.reader import Invalid, Issue
from gateway.catalogue.schema import (
    Catalogue,
    ClaimSpec,
    Department,
    EvidenceType,
    Undetermined,
)
from gateway.domain.errors import ConfigError


class CatalogueError(ConfigError):
    """A catalogue that cannot be used; `issues` lists every problem found."""

    reason = "CATALOGUE_INVALID"

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__(f"the catalogue has {len(issues)} problem(s)")

    def diagnostics(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


def catalogue_version(files: Mapping[str, bytes]) -> str:
    """Names the content, not where it lies: the same files give the same version loaded
    from any directory (each file by its base name)."""
    digest = hashlib.sha256()
    for name in sorted(files, key=lambda n: Path(n).name):
        data = files[name]
        digest.update(f"{Path(name).name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def parse_catalogue(
    files: Mapping[str, bytes], overrides: Mapping[str, Any] | None = None
) -> Catalogue:
    """Every file, checked as a whole. `overrides` is the configuration's `[departments]`
    table: per-department keys of this deployment (endpoint, credentials, sizes)."""
    parsed: list[ParsedFile] = []
    issues: list[Issue] = []
    for name in sorted(files):
        try:
            text = files[name].decode("utf-8")
        except UnicodeDecodeError:
            issues.append(Issue(name, None, "", "not UTF-8 text"))
            continue
        parsed.append(parse_file(text, name, overrides))
    departments: dict[str, Department] = {}
    evidence: dict[str, EvidenceType] = {}
    raw_claims: list[tuple[ParsedFile, RawClaim]] = []
    for f in parsed:
        issues.extend(f.issues.found)
        if f.department is None:
            continue
        code = f.department.code
        if code in departments:
            f.issues.add(
                ("department", "code"),
                f"department {code} is also declared in {departments[code].source}",
            )
            continue
        departments[code] = f.department
        for ecode, ev in f.evidence.items():
            if ecode in evidence:
                f.issues.add(
                    ("evidence", ecode),
                    f"evidence type {ecode} is also declared by "
                    f"department {evidence[ecode].department}",
                )
                continue
            evidence[ecode] = ev
            if ev.message:
                try:
                    check_message(ev)
                except CatalogueMismatch as exc:
                    f.issues.add(("evidence", ecode, "message"), str(exc))
        raw_claims.extend((f, c) for c in f.claims)
    claims: dict[str, ClaimSpec] = {}
    for _, raw in raw_claims:
        try:
            claims[raw.code] = _compile(raw, evidence)
        except Invalid:
            continue
    for f in parsed:
        issues.extend(i for i in f.issues.found if i not in issues)
    if overrides:
        for code in overrides:
            if code not in departments:
                issues.append(
                    Issue(
                        "configuration",
                        None,
                        f"departments.{code}",
                        "names no catalogue department",
                    )
                )
    if not departments and not issues:
        issues.append(Issue("catalogue", None, "", "declares no department"))
    if issues:
        raise CatalogueError(issues)
    return Catalogue(
        version=catalogue_version(files),
        departments=MappingProxyType(departments),
        evidence=MappingProxyType(evidence),
        claims=MappingProxyType(claims),
        sources=tuple(sorted(files)),
    )


def _compile(raw: RawClaim, evidence: Mapping[str, EvidenceType]) -> ClaimSpec:
    t = raw.table
    home = evidence.get(raw.evidence)
    if home is None:
        t.fail(None, f"evidence type {raw.evidence} did not load")
    assert home is not None
    variables: dict[str, rules.RuleType] = {
        "records" if home.cardinality == "many" else "record": rules.evidence_type(home),
        "params": rules.params_type(raw.params),
        "today": rules.STRING,
        "this_month": rules.STRING,
    }
    for var, code in raw.reads.items():
        other = evidence.get(code)
        if other is None:
            t.fail("reads", f"{var}: no evidence type {code} in the catalogue")
        assert other is not None
        if other.subject != home.subject:
            t.fail("reads", f"{var}: {code} is about a {other.subject}, not a {home.subject}")
        if var in variables:
            t.fail("reads", f"{var}: the name is taken")
        variables[var] = rules.evidence_type(other)
    for var in raw.persons:
        if home.cardinality != "one":
            t.fail("persons", "another person's record is read only from one-record evidence")
        if var in variables:
            t.fail("persons", f"{var}: the name is taken")
        variables[var] = rules.evidence_type(home)
    try:
        rule = rules.compile_rule(raw.rule, variables)
    except rules.RuleError as exc:
        t.fail("rule", str(exc))
    undetermined: list[Undetermined] = []
    for i, (when, code, message) in enumerate(raw.undetermined):
        try:
            undetermined.append(Undetermined(rules.compile_rule(when, variables), code, message))
        except rules.RuleError as exc:
            t.note(("undetermined"), f"[{i}].when: {exc}")
    return ClaimSpec(
        code=raw.code,
        evidence=raw.evidence,
        description=raw.description,
        params=raw.params,
        rule_text=raw.rule,
        rule=rule,
        reads=MappingProxyType(dict(raw.reads)),
        persons=MappingProxyType(dict(raw.persons)),
        when_not_found=raw.when_not_found,  # type: ignore[arg-type]
        undetermined=tuple(undetermined),
    )


def load_catalogue(directory: Path | str, overrides: Mapping[str, Any] | None = None) -> Catalogue:
    """Read every `*.toml` in `directory` (not recursive) and parse them as one catalogue."""
    d = Path(directory)
    try:
        paths = sorted(p for p in d.glob("*.toml") if p.is_file())
        files = {str(p): p.read_bytes() for p in paths}
    except OSError as exc:
        raise ConfigError(f"{d}: cannot read the catalogue ({exc.strerror})") from exc
    if not files:
        raise ConfigError(f"{d}: no catalogue files (*.toml)")
    return parse_catalogue(files, overrides)
