"""The auditor's offline tools over a copied log directory: read, filter, count, merge, prove,
witness; and the operator's `recover`. Plain functions on files; the CLI (`cli/audit.py`) only
parses arguments and prints."""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gateway.audit import merkle
from gateway.audit.note import NoteSigner, NoteVerifier, SignedCheckpoint
from gateway.audit.storage import (
    CHECKPOINTS,
    LATEST,
    checkpoint_name,
    segment_paths,
    write_durably,
)
from gateway.audit.tiles import TileTree
from gateway.domain.errors import ConfigError, IntegrityError, NotFound, PermissionDenied
from gateway.domain.policy import Policy
from gateway.domain.validation import has_control_chars, has_personal_number


def iter_lines(directory: Path) -> Iterator[tuple[int, bytes]]:
    """(index, leaf bytes) for every complete line, in order."""
    for first, path in segment_paths(directory):
        lines = path.read_bytes().split(b"\n")[:-1]
        for i, line in enumerate(lines):
            yield first + i, line


def iter_entries(directory: Path) -> Iterator[dict[str, Any]]:
    for index, line in iter_lines(directory):
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise IntegrityError(f"entry {index} is not JSON; run `audit verify`") from exc
        if isinstance(entry, dict):
            yield entry


@dataclass(frozen=True)
class Filters:
    caller: str | None = None
    service_item: str | None = None
    case_id: str | None = None
    subject: str | None = None
    since: str | None = None  # RFC 3339 prefix compare: entries' times are all UTC "Z"
    until: str | None = None
    outcome: str | None = None

    def match(self, e: dict[str, Any]) -> bool:
        time = str(e.get("time", ""))
        return (
            (self.caller is None or e.get("caller") == self.caller)
            and (self.service_item is None or e.get("service_item") == self.service_item)
            and (self.case_id is None or e.get("case_id") == self.case_id)
            and (self.subject is None or e.get("subject") == self.subject)
            and (self.outcome is None or e.get("outcome") == self.outcome)
            and (self.since is None or time >= self.since)
            and (self.until is None or time < self.until)
        )


CSV_COLUMNS = [
    "index", "time", "kind", "caller", "rpc", "service_item", "case_id", "purpose",
    "record_type", "claims", "departments", "outcome", "status", "reason", "latency_us",
    "proof_id", "digest", "subject", "policy", "covert_until", "request_id",
]  # fmt: skip


#: A cell starting with one of these is a formula to a spreadsheet (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A cell as a spreadsheet shows it, never runs it: lists joined with `;`, and text that
    starts with = + - @ tab or carriage return prefixed with a single quote (OWASP). Numbers
    stay numbers. Callers choose case ids and purposes, and the auditor opens the file."""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(entries: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    n = 0
    for e in entries:
        writer.writerow({k: csv_cell(v) for k, v in e.items()})
        n += 1
    return n


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


@dataclass
class Stats:
    entries: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    callers: Counter[str] = field(default_factory=Counter)
    departments: Counter[str] = field(default_factory=Counter)
    service_items: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    denials: Counter[str] = field(default_factory=Counter)
    latencies: list[int] = field(default_factory=list)

    def add(self, e: dict[str, Any]) -> None:
        self.entries += 1
        self.kinds[str(e.get("kind"))] += 1
        if e.get("kind") != "access":
            return
        self.callers[str(e.get("caller"))] += 1
        self.service_items[str(e.get("service_item"))] += 1
        self.outcomes[str(e.get("outcome"))] += 1
        for d in e.get("departments") or []:
            self.departments[str(d)] += 1
        if e.get("outcome") == "denied":
            self.denials[str(e.get("reason") or e.get("status"))] += 1
        if isinstance(e.get("latency_us"), int):
            self.latencies.append(e["latency_us"])

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "entries": self.entries,
            "kinds": dict(self.kinds),
            "callers": dict(self.callers.most_common()),
            "departments": dict(self.departments.most_common()),
            "service_items": dict(self.service_items.most_common()),
            "outcomes": dict(self.outcomes.most_common()),
            "denials_by_reason": dict(self.denials.most_common()),
            "latency_us": {f"p{p}": percentile(lat, p) for p in (50, 90, 99)},
        }


def merge(directories: Iterable[tuple[str, Path]]) -> list[tuple[str, dict[str, Any]]]:
    """Entries of several replicas' logs as one timeline, ordered by time, then origin, index."""
    out = [(origin, e) for origin, d in directories for e in iter_entries(d)]
    out.sort(key=lambda oe: (str(oe[1].get("time", "")), oe[0], oe[1].get("index", 0)))
    return out


def read_checkpoint(directory: Path, size: int | None = None) -> SignedCheckpoint:
    path = directory / (LATEST if size is None else f"{CHECKPOINTS}/{checkpoint_name(size)}")
    try:
        return SignedCheckpoint.parse(path.read_bytes())
    except FileNotFoundError as exc:
        raise NotFound(f"no checkpoint {path.name} in {directory}", reason="NO_CHECKPOINT") from exc


def leaf_at(directory: Path, index: int) -> bytes:
    for i, line in iter_lines(directory):
        if i == index:
            return line
    raise NotFound(f"the log has no entry {index}", reason="NO_SUCH_ENTRY")


def prove(
    directory: Path, index: int, size: int | None, key: NoteVerifier | None
) -> dict[str, Any]:
    """An inclusion proof of entry `index` against a stored checkpoint, checked before return."""
    cp = read_checkpoint(directory, size)
    if key is not None:
        cp = SignedCheckpoint.open(cp.text, key)
    if index >= cp.size:
        raise NotFound(f"entry {index} is not in the checkpoint of size {cp.size}")
    tiles = TileTree(directory)
    tiles.size = cp.size
    hashes = merkle.inclusion_proof(index, cp.size, tiles.read_node)
    leaf = merkle.leaf_hash(leaf_at(directory, index))
    merkle.verify_inclusion(index, cp.size, leaf, hashes, cp.root)
    return {
        "index": index,
        "tree_size": cp.size,
        "leaf_hash": base64.b64encode(leaf).decode(),
        "hashes": [base64.b64encode(h).decode() for h in hashes],
        "checkpoint": cp.text,
        "verified": True,
        "signature_checked": key is not None,
    }


def audit_index_of_proof(path: Path) -> int:
    """`audit_index` from a proof JWS's payload, decoded WITHOUT verifying the signature
    (that is `proofless proof verify`'s job)."""
    try:
        parts = path.read_text().strip().split(".")
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        index = claims["audit_index"]
    except (OSError, IndexError, KeyError, ValueError, binascii.Error, TypeError) as exc:
        raise ConfigError(f"{path} is not a proof JWS with an audit_index") from exc
    if not isinstance(index, int) or index < 0:
        raise ConfigError(f"{path}: audit_index is not a non-negative integer")
    return index


def witness(
    directory: Path,
    checkpoint_text: str,
    log_key: NoteVerifier,
    signer: NoteSigner,
    state: Path,
) -> SignedCheckpoint:
    """Cosign a checkpoint after checking it extends the last one this witness cosigned.

    The consistency proof is built from the log directory's tiles; the state file holds the
    last cosigned note, and is replaced only after the new one checks out.
    """
    new = SignedCheckpoint.open(checkpoint_text, log_key)
    if state.exists():
        old = SignedCheckpoint.open(state.read_bytes(), log_key, (signer.verifier,))
        if new.size < old.size:
            raise IntegrityError(
                f"checkpoint {new.size} is older than the cosigned {old.size} (rollback)",
                reason="INCONSISTENT_TREE",
            )
        if old.size:
            tiles = TileTree(directory)
            tiles.size = new.size
            proof = (
                merkle.consistency_proof(old.size, new.size, tiles.read_node)
                if new.size > old.size
                else []
            )
            merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    cosigned = new.cosigned(signer)
    write_durably(state, cosigned.text.encode())  # a symbolic link there is refused
    return cosigned


# ---------------------------------------------------------------------------------------------
# recover: the operator's explicit, logged way past a refused start

MAX_RECOVERY_REASON = 512


def recover(directory: Path, signer: NoteSigner, reason: str) -> dict[str, Any]:
    """Sign a log the gateway refuses to start on (no checkpoint covers its entries, or its
    checkpoints contradict them), after appending a `recovery` entry that records what was
    found, the old and new sizes and `reason`; returns that entry.

    Checkpoints the entries contradict are moved to `checkpoints/superseded/`, not deleted.
    A log that opens as it is needs no recovery (ConfigError). Run it with the gateway stopped:
    the recovery is an entry like any other, so every auditor and witness sees it.
    """
    text = reason.strip()
    if not text or len(text) > MAX_RECOVERY_REASON or has_control_chars(text):
        raise ConfigError(
            f"--reason must be 1 to {MAX_RECOVERY_REASON} characters on one line "
            "(it goes into the log)"
        )
    if has_personal_number(text):
        raise ConfigError(
            "--reason must not hold a resident ID number or a mobile number (it goes into "
            "the log in clear)"
        )

    # imported here: the log imports its subject index, which reads entries with this module
    from gateway.audit.log import AuditLog  # noqa: PLC0415

    async def run() -> dict[str, Any]:
        log = await AuditLog.open(
            directory, origin=signer.name, note_key=signer, recovery_reason=text
        )
        try:
            size = log.tree_size
            entry: dict[str, Any] = json.loads((await log.entries(size - 1, size))[0])
        finally:
            await log.close()
        return entry

    return asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# recheck: grants against the policy version in force at the time


@dataclass(frozen=True)
class Regrant:
    """A granted entry the policy in force did not allow, or whose policy is not at hand."""

    index: int
    caller: str
    service_item: str
    record_type: str
    policy: str
    why: str

    def line(self) -> str:
        return (
            f"entry {self.index}: {self.caller} {self.service_item} {self.record_type} "
            f"(policy {self.policy[:12]}): {self.why}"
        )


@dataclass
class RecheckReport:
    granted: int = 0
    allowed: int = 0
    findings: list[Regrant] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _decide(policy: Policy, e: dict[str, Any]) -> str | None:
    """Why `policy` would not have granted entry `e`, or None if it would have."""
    caller, item = str(e.get("caller", "")), str(e.get("service_item", ""))
    record_type = str(e.get("record_type", ""))
    try:
        if record_type == "claims":
            claims = e.get("claims") or []
            if not isinstance(claims, list):
                return "entry's claims field is not a list"
            asked: list[tuple[str, dict[str, Any]]] = []
            for c in claims:
                # {"type", "params"}; a plain string in entries written before parameters were
                if isinstance(c, dict):
                    asked.append((str(c.get("type", "")), dict(c.get("params") or {})))
                else:
                    asked.append((str(c), {}))
            policy.authorize_claims(caller, item, asked)
        elif record_type == "catalogue":  # discovery: any caller the policy names
            if policy.caller(caller) is None:
                return "NOT ALLOWED (CALLER_UNKNOWN): caller is not in the policy"
        else:  # an evidence type
            policy.authorize_record(caller, item, record_type, [])
    except PermissionDenied as err:
        return f"NOT ALLOWED ({err.reason}): {err.message}"
    return None


def recheck(directory: Path, policies: Iterable[Policy]) -> RecheckReport:
    """Re-evaluate every granted access entry against the policy whose version (SHA-256 of the
    policy file) the entry records; list each grant it did not allow and each entry whose
    policy version is not among `policies`. Run `audit verify` first: this trusts the entries."""
    by_version = {p.version: p for p in policies}
    report = RecheckReport()
    for index, line in iter_lines(directory):
        try:
            e = json.loads(line)
        except ValueError as exc:
            raise IntegrityError(f"entry {index} is not JSON; run `audit verify`") from exc
        if not isinstance(e, dict) or e.get("kind") != "access" or e.get("outcome") != "granted":
            continue
        report.granted += 1
        version = str(e.get("policy", ""))
        policy = by_version.get(version)
        why = "policy version not among the given files" if policy is None else _decide(policy, e)
        if why is None:
            report.allowed += 1
            continue
        report.findings.append(
            Regrant(
                index,
                str(e.get("caller", "")),
                str(e.get("service_item", "")),
                str(e.get("record_type", "")),
                version,
                why,
            )
        )
    return report
