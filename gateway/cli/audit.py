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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit import tools
from gateway.audit.cosignature import CosignatureVerifier, Cosigner
from gateway.audit.entry import subject_of
from gateway.audit.note import NoteSigner, NoteVerifier, SignedCheckpoint
from gateway.audit.remote import RemoteLog, client_context, verify_remote
from gateway.audit.storage import LATEST, prepare_directory, read_pepper, write_durably
from gateway.audit.verify import verify_log
from gateway.audit.witness import Witness, WitnessState, witness_log_directory
from gateway.audit.witness import serve as serve_witness
from gateway.audit.witnessing import witnessed_dir, witnessed_paths
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
    witnesses = [CosignatureVerifier.from_vkey(w) for w in args.witness]
    if isinstance(args.dir, str):  # a URL: the log read over HTTP (tlog-tiles)
        return _verify_remote(args, key, witnesses)
    known = [_read(p, "checkpoint").decode() for p in args.checkpoint]
    witnessed, problems = _witnessed(args.dir, key, witnesses)
    progress = _progress if sys.stderr.isatty() else None
    report = verify_log(args.dir, key, known_checkpoints=[*known, *witnessed], progress=progress)
    report.problems += problems
    if progress:
        print(file=sys.stderr)
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _witnessed(
    directory: Path, key: NoteVerifier, witnesses: list[CosignatureVerifier]
) -> tuple[list[str], list[str]]:
    """Each witness's largest cosigned checkpoint in the directory (`checkpoint` or
    `witnessed/`), to be verified against the entries like any checkpoint, and a problem for
    each witness without one."""
    notes, problems = [], []
    paths = [directory / LATEST, *witnessed_paths(directory)]
    for witness in witnesses:
        best: tuple[SignedCheckpoint, int] | None = None
        for path in paths:
            try:
                cp = SignedCheckpoint.open(path.read_bytes(), key)
                cosig = witness.require(cp.note)
            except (OSError, ProoflessError):
                continue
            if best is None or cp.size > best[0].size:
                best = (cp, cosig.timestamp)
        if best is None:
            problems.append(f"witness {witness.name}: INVALID (missing cosignature)")
            continue
        notes.append(best[0].text)
        print(f"witness {witness.name}: cosigned the tree of {best[0].size} at time {best[1]}")
    return notes, problems


def _verify_remote(
    args: argparse.Namespace, key: NoteVerifier, witnesses: list[CosignatureVerifier]
) -> int:
    context = (
        client_context(args.ca, args.cert, args.cert_key) if args.dir.startswith("https:") else None
    )
    remote = RemoteLog(args.dir, context)

    def fetch() -> bytes:
        """The checkpoint; with --witness, the first one carrying every cosignature asked
        for (a witness cosigns each new checkpoint moments after it is published)."""
        until = time.monotonic() + args.witness_wait
        while True:
            data = remote.checkpoint()
            try:
                note = SignedCheckpoint.parse(data).note
                if all(w.cosignatures(note) for w in witnesses):
                    return data
            except ProoflessError:
                return data  # verify_remote reports it
            if time.monotonic() >= until:
                return data
            time.sleep(0.5)

    known = [(str(p), _read(p, "checkpoint")) for p in args.checkpoint]
    report = verify_remote(
        remote, key, witnesses=witnesses, known=known, entries=args.cert is not None,
        fetch_checkpoint=fetch,
    )  # fmt: skip
    for line in report.lines:
        print(line)
    print(report.summary())
    if report.ok and report.checkpoint is not None and args.out is not None:
        args.out.write_text(report.checkpoint.text)  # next time's --checkpoint
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
def cmd_witness_serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from gateway.config import host_port
    from gateway.ops.logging import configure_logging

    cosigner = Cosigner.from_key_file(args.key, args.name)
    logs = [NoteVerifier.from_vkey(v) for v in args.log_key]
    host, port = host_port(args.listen)
    state = WitnessState(args.state)
    configure_logging(args.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)

        def ready(bound: int) -> None:
            where = f"[{host}]" if ":" in host else host
            print(f"witness {cosigner.vkey} serving http://{where}:{bound}/ for "
                  f"{', '.join(witness.origins)}", flush=True)  # fmt: skip

        await serve_witness(witness, host, port, ready=ready, stop=stop)

    try:
        witness = Witness(cosigner, logs, state)
        asyncio.run(run())
    finally:
        state.close()
    return 0


@_guard
def cmd_witness_cosign(args: argparse.Namespace) -> int:
    import asyncio

    cosigner = Cosigner.from_key_file(args.key, args.name)
    state = WitnessState(args.state)
    try:
        witness = Witness(cosigner, [NoteVerifier.from_vkey(args.log_key)], state)
        source = args.checkpoint or args.log / LATEST
        answer, cosigned = asyncio.run(
            witness_log_directory(witness, args.log, _read(source, "checkpoint"))
        )
    finally:
        state.close()
    if cosigned is None:
        why = answer.body.decode("utf-8", "replace").strip()
        print(f"proofless audit: witness refuses (HTTP {answer.status}): {why}", file=sys.stderr)
        return 1
    if args.out is not None:
        args.out.write_text(cosigned.text)
    elif args.checkpoint is None:  # where the gateway keeps them and verify --witness looks
        prepare_directory(witnessed_dir(args.log))
        path = witnessed_dir(args.log) / cosigner.verifier.key_id.hex()
        write_durably(path, cosigned.text.encode())
    print(cosigned.text, end="")
    return 0


@_guard
def cmd_witness_vkey(args: argparse.Namespace) -> int:
    print(Cosigner.from_key_file(args.key, args.name).vkey)
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


@_guard
def cmd_reindex(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.audit.index import PostgresIndex, index_settings, reindex_log, shard_dirs
    from gateway.config import load_config
    from gateway.crypto.keys import load_ed25519_private_key

    config = load_config(args.config)
    settings = index_settings(config.raw.get("audit", {}), str(args.config))
    dsn = args.dsn or settings.dsn
    if not dsn:
        raise ConfigError("give --dsn or set [audit] index_dsn (the shared subject index)")
    dirs = args.dirs or shard_dirs(config.audit.dir)
    if not dirs:
        raise ConfigError(f"{config.audit.dir}: no audit log here (no checkpoint)")
    note_key = load_ed25519_private_key(config.audit.note_key)

    async def run() -> None:
        index = await PostgresIndex.connect(dsn, args.schema or settings.schema)
        try:
            for directory in dirs:
                origin, size, rows = await reindex_log(index, directory, note_key)
                print(f"{origin}: {size} entries, {rows} index rows ({directory})")
        finally:
            await index.close()

    asyncio.run(run())
    return 0


def _dir_or_url(value: str) -> Path | str:
    return value if value.startswith(("http://", "https://")) else _dir(value)


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
    p.add_argument(
        "dir", type=_dir_or_url, metavar="DIR|URL",
        help="the log directory, or the URL of a log served as C2SP tlog-tiles (the ops "
        "port's /checkpoint and hash tiles; the [audit] tiles_listen URL with --cert for the "
        "entries too)",
    )  # fmt: skip
    p.add_argument("--key", required=True, help="the log's note vkey (name+hexid+base64)")
    p.add_argument(
        "--witness", action="append", default=[], metavar="VKEY",
        help="require a tlog-cosignature/v1 cosignature by this witness (its vkey, type 0x04 "
        "or 0x01) on a checkpoint the entries or tiles match (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint", action="append", default=[], type=Path, metavar="FILE",
        help="a checkpoint seen earlier (e.g. from GetCheckpoint or a witness): the log must "
        "extend it, which catches a roll-back to an older copy (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--cert", type=Path, help="URL: client certificate (an auditor's) for the entries"
    )
    p.add_argument("--cert-key", type=Path, help="URL: the client certificate's private key")
    p.add_argument("--ca", type=Path, help="URL: the CA of the server's certificate")
    p.add_argument("--out", type=Path, help="URL: save the verified checkpoint (for --checkpoint)")
    p.add_argument(
        "--witness-wait", type=float, default=10.0, metavar="SECONDS",
        help="URL: how long to wait for the witnesses' cosignatures on a new checkpoint",
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
        "reindex",
        help="rebuild the shared (PostgreSQL) subject index from the logs",
        description="Replace each log's rows in the subject index ListAccesses reads "
        '([audit] index = "postgresql") with the rows of its entries under its latest '
        "checkpoint, checked with the note key of --config; a running gateway carries on "
        "from there. Without DIR, the configured [audit] dir and its `serve --workers` "
        "shards (worker-<i>). The logs are the source of truth: run `audit verify` first if "
        "they are in doubt.",
    )
    p.add_argument("dirs", type=_dir, nargs="*", metavar="DIR", help="log directories")
    p.add_argument("--config", type=Path, required=True, help="the gateway's configuration")
    p.add_argument("--dsn", help="the index's PostgreSQL DSN (default [audit] index_dsn)")
    p.add_argument("--schema", help="its schema (default [audit] index_schema)")
    p.set_defaults(func=cmd_reindex)

    _add_witness_commands(sub)

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


def _add_witness_commands(sub: argparse._SubParsersAction[Any]) -> None:
    witness = sub.add_parser(
        "witness",
        help="a C2SP tlog-witness: serve add-checkpoint, or cosign a log directory offline",
        description="A transparency-log witness (https://c2sp.org/tlog-witness): it checks "
        "that each checkpoint of a log it knows extends the last one it cosigned (consistency "
        "proof) and answers with a tlog-cosignature/v1 cosignature. Its key is a PKCS#8 PEM "
        "Ed25519 key with --name, or a signed-note private key (PRIVATE+KEY+name+id+key).",
    )
    wsub = witness.add_subparsers(dest="witness_command", required=True, metavar="SUBCOMMAND")

    def key_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--key", "--witness-key", dest="key", type=Path, required=True,
            help="the witness's key: PKCS#8 PEM Ed25519 (with --name) or a note skey file",
        )  # fmt: skip
        p.add_argument("--name", help="the witness's key name (e.g. witness.example/w1)")

    p = wsub.add_parser(
        "serve",
        help="serve POST /add-checkpoint (and GET /<origin hash>/checkpoint)",
        description="Serve the tlog-witness protocol over HTTP until SIGTERM: 409 with the "
        "witness's size (text/x.tlog.size) when the log's old size is not the one it holds, "
        "422 on a bad consistency proof, 404 for an unknown origin, 403 without a valid "
        "signature by the log's key. The latest cosigned checkpoint of each log is kept in "
        "--state (one file per origin, replaced atomically and fsynced, never through a "
        "symbolic link). Prints its vkey and address once listening.",
    )
    key_args(p)
    p.add_argument(
        "--log-key", action="append", required=True, metavar="VKEY",
        help="the vkey of a log this witness follows, named after its origin (repeatable)",
    )  # fmt: skip
    p.add_argument("--state", type=Path, required=True, help="the witness's state directory")
    p.add_argument("--listen", default="127.0.0.1:8680", help="host:port (default %(default)s)")
    p.add_argument("--log-level", default="INFO", help="default %(default)s")
    p.set_defaults(func=cmd_witness_serve)

    p = wsub.add_parser(
        "cosign",
        help="cosign a log directory's checkpoint offline, as a witness would",
        description="Submit a checkpoint (the log's latest, or --checkpoint FILE) to this "
        "witness with a consistency proof from the size it last cosigned, built from the "
        "log directory's tiles; the same checks as `serve`. Without --out or --checkpoint "
        "the cosigned note is kept in the log directory (witnessed/<key id>), where "
        "`audit verify --witness VKEY` finds it.",
    )
    p.add_argument("log", type=_dir, help="the log directory (source of consistency proofs)")
    key_args(p)
    p.add_argument("--log-key", required=True, help="the log's vkey")
    p.add_argument("--state", type=Path, required=True, help="the witness's state directory")
    p.add_argument("--checkpoint", type=Path, help="cosign this checkpoint file instead")
    p.add_argument("--out", type=Path, help="write the cosigned note here")
    p.set_defaults(func=cmd_witness_cosign)

    p = wsub.add_parser(
        "vkey",
        help="print the witness's cosignature/v1 vkey (what logs and verifiers configure)",
    )
    key_args(p)
    p.set_defaults(func=cmd_witness_vkey)
