"""`proofless audit …`: the auditor's commands, working offline on a copied log directory.

Argument parsing and printing only; the work is in `verify.py` and `tools.py`. Every command
returns an exit code (0 fine, 1 the log or proof is INVALID, 2 a usage or input error) and
prints a ProoflessError's `diagnostics()` instead of a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit import tools
from gateway.audit.entry import subject_of
from gateway.audit.note import NoteSigner, NoteVerifier
from gateway.audit.storage import LATEST, read_pepper
from gateway.audit.verify import verify_log
from gateway.domain.errors import ConfigError, ProoflessError
from gateway.domain.policy_file import parse_policy
from gateway.domain.vocabulary import OUTCOMES

Command = Callable[[argparse.Namespace], int]


def _guard(func: Command) -> Command:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ProoflessError as err:
            print(f"proofless audit: {err.diagnostics()}", file=sys.stderr)
            return 2 if isinstance(err, ConfigError) else 1
        except OSError as exc:
            print(f"proofless audit: {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 2

    return run


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _progress(done: int, total: int) -> None:
    width = 40
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {100 * done // max(total, 1):3d}%",
          end="", file=sys.stderr, flush=True)  # fmt: skip


@_guard
def cmd_verify(args: argparse.Namespace) -> int:
    key = NoteVerifier.from_vkey(args.key)
    witnesses = [NoteVerifier.from_vkey(w) for w in args.witness]
    known = [_read(p, "checkpoint").decode() for p in args.checkpoint]
    progress = _progress if sys.stderr.isatty() else None
    report = verify_log(
        args.dir, key, witnesses=witnesses, known_checkpoints=known, progress=progress
    )
    if progress:
        print(file=sys.stderr)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


@_guard
def cmd_replay(args: argparse.Namespace) -> int:
    subject = None
    if args.id_number:
        if not args.pepper_file:
            raise ConfigError("--id-number needs --pepper-file (the audit pepper)")
        pepper = read_pepper(args.pepper_file)  # as the gateway reads it: raw
        subject = subject_of(pepper, args.id_number.strip().upper())
    filters = tools.Filters(
        caller=args.caller,
        service_item=args.item,
        case_id=args.case,
        subject=subject,
        since=args.since,
        until=args.until,
        outcome=args.outcome,
    )
    selected = (e for e in tools.iter_entries(args.dir) if filters.match(e))
    if args.format == "csv":
        tools.write_csv(selected, sys.stdout)
    else:
        for e in selected:
            print(json.dumps(e, sort_keys=True, ensure_ascii=False))
    return 0


@_guard
def cmd_stats(args: argparse.Namespace) -> int:
    stats = tools.Stats()
    for e in tools.iter_entries(args.dir):
        stats.add(e)
    print(json.dumps(stats.as_dict(), indent=2, ensure_ascii=False))
    return 0


@_guard
def cmd_prove(args: argparse.Namespace) -> int:
    if args.proof is not None:
        index = tools.audit_index_of_proof(args.proof)
    elif args.index is not None:
        index = args.index
    else:
        raise ConfigError("give an INDEX or --proof FILE")
    key = NoteVerifier.from_vkey(args.key) if args.key else None
    print(json.dumps(tools.prove(args.dir, index, args.size, key), indent=2))
    return 0


@_guard
def cmd_recheck(args: argparse.Namespace) -> int:
    from gateway.catalogue import load_catalogue

    catalogue = load_catalogue(args.catalogue)
    policies = [parse_policy(_read(p, "policy file"), str(p), catalogue) for p in args.policy]
    report = tools.recheck(args.dir, policies)
    for finding in report.findings:
        print(finding.line())
    known = ", ".join(f"{p.version[:12]} ({p.source})" for p in policies)
    print(
        f"Results: {report.granted} granted entries, {report.allowed} allowed by the policy "
        f"in force, {len(report.findings)} not: "
        + ("VALID" if report.ok else "INVALID")
        + f"; policies given: {known}"
    )
    return 0 if report.ok else 1


@_guard
def cmd_key(args: argparse.Namespace) -> int:
    print(NoteSigner.from_pem(args.origin, _read(args.note_key, "note key")).vkey)
    return 0


@_guard
def cmd_merge(args: argparse.Namespace) -> int:
    if len(args.keys) != len(args.dirs):
        raise ConfigError("give one --key per DIR, in the same order")
    sources: list[tuple[str, Path]] = []
    for directory, vkey in zip(args.dirs, args.keys, strict=True):
        key = NoteVerifier.from_vkey(vkey)
        report = verify_log(directory, key)
        if not report.ok:
            print(
                f"{directory}: INVALID; run `proofless audit verify` for details", file=sys.stderr
            )
            return 1
        sources.append((key.name, directory))
    for origin, e in tools.merge(sources):
        print(json.dumps({"origin": origin, **e}, sort_keys=True, ensure_ascii=False))
    return 0


@_guard
def cmd_witness(args: argparse.Namespace) -> int:
    log_key = NoteVerifier.from_vkey(args.log_key)
    signer = NoteSigner.from_pem(args.name, _read(args.witness_key, "witness key"))
    source = args.checkpoint or args.log / LATEST
    cosigned = tools.witness(
        args.log, _read(source, "checkpoint").decode(), log_key, signer, args.state
    )
    if args.out is not None:
        args.out.write_text(cosigned.text)
    elif args.checkpoint is None:
        tools.write_back(args.log, cosigned)  # where verify --witness looks
    print(cosigned.text, end="")
    return 0


@_guard
def cmd_recover(args: argparse.Namespace) -> int:
    signer = NoteSigner.from_pem(args.origin, _read(args.note_key, "note key"))
    entry = tools.recover(args.dir, signer, args.reason)
    old = "none" if entry["old_size"] is None else entry["old_size"]
    print(
        f"{args.dir}: recovered ({entry['found']}): {entry['detail']}\n"
        f"old size: {old}, new size: {entry['new_size']}; recovery entry {entry['index']}, "
        f"checkpoint of {entry['index'] + 1} signed"
    )
    for name in entry["superseded"]:
        print(f"set aside: checkpoints/superseded/{name}")
    return 0


def _dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return path


def add_audit_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `audit` and its subcommands to the `proofless` parser."""
    audit = subparsers.add_parser(
        "audit",
        help="verify, search and prove the tamper-evident audit log (offline)",
        description="Auditor tools. They work offline on a copy of a log directory "
        "(entries/, tile/, checkpoints/, checkpoint) and trust nothing but the log's vkey.",
    )
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser(
        "verify",
        help="recompute every leaf and the tree; check every checkpoint",
        description="Recompute every leaf hash and the Merkle tree from the entries, check "
        "every checkpoint's signature and that its root matches the entries (so consecutive "
        "checkpoints are consistent). Prints, per segment and checkpoint, `valid` or "
        "`INVALID (reason)` — hash mismatch, missing, truncated, bad signature, inconsistent "
        "checkpoint, gap — then the first bad index and a summary. Exit status 1 if anything "
        "is INVALID.",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.add_argument("--key", required=True, help="the log's note vkey (name+hexid+base64)")
    p.add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="require this witness's cosignature on the latest checkpoint (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint", action="append", default=[], type=Path, metavar="FILE",
        help="a checkpoint seen earlier (e.g. from GetCheckpoint or a witness): the log must "
        "extend it, which catches a roll-back to an older copy (repeatable)",
    )  # fmt: skip
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "replay",
        help="print the entries that match filters, as JSON Lines or CSV",
        description="Print matching entries. Filters combine with AND. Citizen search needs "
        "the audit pepper: the log only stores HMAC-SHA256(pepper, ID number).",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.add_argument("--caller", help="caller id (certificate identity)")
    p.add_argument("--item", help="service item code (事项编码)")
    p.add_argument("--case", help="case id")
    p.add_argument("--id-number", help="the citizen's ID number (needs --pepper-file)")
    p.add_argument("--pepper-file", type=Path, help="file holding the audit pepper")
    p.add_argument("--since", help="only entries at or after this RFC 3339 UTC time")
    p.add_argument("--until", help="only entries before this RFC 3339 UTC time")
    p.add_argument("--outcome", choices=sorted(OUTCOMES))
    p.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="default jsonl")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser(
        "stats",
        help="counts per caller, department, item and outcome; latency percentiles",
        description="Counts per caller, department, service item and outcome, denials by "
        "reason, and latency p50/p90/p99 (microseconds), as JSON.",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "prove",
        help="an inclusion proof of one entry against a checkpoint, checked",
        description="Build the RFC 9162 inclusion proof of entry INDEX (or of the audit_index "
        "in a proof JWS given with --proof; its signature is not checked here — use "
        "`proofless proof verify`) against the latest checkpoint or the one of --size, verify "
        "it, and print it as JSON.",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.add_argument("index", type=int, nargs="?", help="the entry's audit index")
    p.add_argument("--proof", type=Path, help="a proof JWS file whose payload has audit_index")
    p.add_argument("--size", type=int, help="prove against the checkpoint of this tree size")
    p.add_argument("--key", help="also check the checkpoint's signature with this vkey")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser(
        "recheck",
        help="re-evaluate every grant against the policy version in force at the time",
        description="For every granted access entry, find the policy file whose SHA-256 the "
        "entry records and re-run its decision (caller, service item, evidence type, or "
        "claims with their parameters). Lists each grant that policy did not allow and each "
        "entry whose policy version is not among the files; exit status 1 if any. Trusts "
        "the entries: run `audit verify` first.",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.add_argument(
        "--policy", action="extend", nargs="+", type=Path, required=True, metavar="FILE",
        help="policy files (every version that was in force; repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--catalogue", type=Path, default=Path("deploy/catalogue"),
        help="the evidence catalogue the policies name types of (default %(default)s)",
    )  # fmt: skip
    p.set_defaults(func=cmd_recheck)

    p = sub.add_parser(
        "key",
        help="print the log's note vkey from its private note key",
        description="Print the verifier key (name+hexid+base64) auditors pass to --key.",
    )
    p.add_argument("--note-key", type=Path, required=True, help="PKCS#8 PEM Ed25519 key")
    p.add_argument("--origin", required=True, help="the log's origin (the key name)")
    p.set_defaults(func=cmd_key)

    p = sub.add_parser(
        "merge",
        help="several replicas' logs as one timeline (each verified first)",
        description="Verify each replica's log, then print all entries as one JSON Lines "
        "timeline ordered by time, then origin; each line gains an `origin` field.",
    )
    p.add_argument("dirs", type=_dir, nargs="+", metavar="DIR", help="log directories")
    p.add_argument(
        "--key", dest="keys", action="append", default=[], required=True, metavar="VKEY",
        help="each DIR's vkey, in the same order (repeat once per DIR)",
    )  # fmt: skip
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "witness",
        help="cosign a checkpoint after checking it extends the last one cosigned",
        description="Read a checkpoint (the log's latest, or --checkpoint FILE), check the "
        "log's signature and its consistency with the last checkpoint this witness cosigned "
        "(kept in --state), then add the witness's Ed25519 note signature. Without --out or "
        "--checkpoint the cosigned note is written back into the log directory, where "
        "`audit verify --witness VKEY` requires it.",
    )
    p.add_argument("log", type=_dir, help="the log directory (source of consistency proofs)")
    p.add_argument("--log-key", required=True, help="the log's vkey")
    p.add_argument("--witness-key", type=Path, required=True, help="PKCS#8 PEM Ed25519 key")
    p.add_argument("--name", required=True, help="the witness's key name")
    p.add_argument("--state", type=Path, required=True, help="file with the last cosigned note")
    p.add_argument("--checkpoint", type=Path, help="cosign this checkpoint file instead")
    p.add_argument("--out", type=Path, help="write the cosigned note here")
    p.set_defaults(func=cmd_witness)

    p = sub.add_parser(
        "recover",
        help="sign a log the gateway refuses to start on, with a recovery entry (operator)",
        description="The gateway refuses to start when no checkpoint it signed covers the "
        "entries (checkpoints deleted, more unsigned entries than a crash leaves) or its "
        "checkpoints contradict them (rolled back, rewritten): re-signing them silently would "
        "vouch for whatever was edited. Once you know why, this appends a `recovery` entry "
        "recording what was found, the old and new sizes and --reason, and only then signs a "
        "checkpoint over the log; checkpoints the entries contradict move to "
        "checkpoints/superseded/. Stop the gateway first. Needs the log's note key.",
    )
    p.add_argument("dir", type=_dir, help="the log directory")
    p.add_argument(
        "--reason", required=True,
        help="why (an incident number, what happened); one line, written into the log",
    )  # fmt: skip
    p.add_argument("--note-key", type=Path, required=True, help="the log's PKCS#8 PEM key")
    p.add_argument("--origin", required=True, help="the log's origin (the key name)")
    p.set_defaults(func=cmd_recover)
