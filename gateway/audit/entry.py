"""What an audit entry is: its canonical bytes, its kinds and the citizen's pseudonym. Pure.

An entry is one JSON object, serialized canonically (sorted keys, no spaces, UTF-8 as is);
those bytes, without the newline, are the Merkle leaf. Floats are refused: their text form
is not canonical across implementations, and nothing in an access record needs them.

An access entry, as the gateway writes it::

    {"kind": "access", "time": "2026-11-21T10:00:00.123456Z", "request_id": ..., "caller": ...,
     "rpc": "GetHouseholdRecord", "service_item": ... (事项编码), "case_id": ..., "purpose": ...,
     "record_type": "household" | "claims", "claims": [...], "departments": [...],
     "outcome": "granted" | "denied" | "not_found" | "error", "status": "OK" | ...,
     "reason": ..., "latency_us": int, "proof_id": ..., "digest": sha256 hex of the disclosure,
     "subject": HMAC hex or "", "policy": policy file sha256, "covert_until": "YYYY-MM-DD"?}
"""

from __future__ import annotations

import hashlib
import hmac
from _json import encode_basestring, make_encoder
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.domain.errors import ProoflessError

KIND_ACCESS = "access"
KIND_RECOVERY = "recovery"
KIND_START = "start"


class AuditEntryError(ProoflessError):
    """The gateway tried to log something that is not a canonical entry (a bug, not input)."""

    reason = "AUDIT_ENTRY_INVALID"


def subject_of(pepper: bytes, id_number: str) -> str:
    """The citizen's pseudonym in the log: hex HMAC-SHA256(audit pepper, ID number).

    The pepper is a secret separate from the note key: without it, nobody can test whether a
    given ID number appears in the log.
    """
    return hmac.new(pepper, id_number.encode(), hashlib.sha256).hexdigest()


_SCALARS = frozenset({str, int, bool, type(None)})
_FLAT = _SCALARS | {list}
_STR = frozenset({str})


def _plain(values: Collection[Any]) -> bool:
    """Scalars and lists of scalars: the common shape, checked with set operations at C speed."""
    types = set(map(type, values))
    if types <= _SCALARS:
        return True
    return types <= _FLAT and set(map(type, [x for v in values if type(v) is list for x in v])) <= (
        _SCALARS
    )


def check_entry(entry: Mapping[str, Any], path: str = "") -> None:
    """Refuse anything canonical JSON cannot carry unambiguously (floats, non-str keys, objects).

    The common shape (str keys, `_plain` values) passes at once; anything else takes the
    slow, precise path.
    """
    if set(map(type, entry)) <= _STR and _plain(entry.values()):
        return
    for key, value in entry.items():
        if not isinstance(key, str):
            raise AuditEntryError(f"entry key {path}{key!r} is not a string")
        _check_value(value, f"{path}{key}")


def check_values(entry: Mapping[str, Any]) -> None:
    """`check_entry` on every append, less the keys: `canonical_json` refuses a key that is not
    a str (orjson does not encode one; its fallback runs `check_entry`), so checking them here
    too cost a third of the check for nothing."""
    if not _plain(entry.values()):
        check_entry(entry)


def _check_value(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        return  # lone surrogates are caught when the line is encoded (canonical_json)
    if isinstance(value, float):
        raise AuditEntryError(f"entry field {path} is a float; use an integer or a string")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        check_entry(value, path + ".")
        return
    raise AuditEntryError(f"entry field {path} has type {type(value).__name__}")


def _refuse(value: Any) -> Any:
    raise AuditEntryError(f"entry value of type {type(value).__name__} has no JSON form")


#: The C encoder `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` builds
#: on every call, built once. No circular-reference markers: `check_entry` has walked the entry.
_ENCODE = make_encoder(None, _refuse, encode_basestring, None, ":", ",", True, False, False)

_orjson_dumps = orjson.dumps
_OrjsonError = orjson.JSONEncodeError
#: Subclasses of str, int, dict and list, dataclasses and datetimes are refused by orjson with
#: these and so take the stdlib path: only exact JSON types are left to orjson's own rules.
_ORJSON_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """The leaf bytes of an entry: sorted keys, no whitespace, UTF-8 (not ASCII-escaped).

    Byte-identical to `json.dumps(obj, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode()` for anything `check_entry` accepts, and refuses the rest
    (a hypothesis test holds it to both). orjson writes it at a fifth of the stdlib's cost:
    its escapes are the stdlib's, and it sorts keys by UTF-8 bytes, which is code point order
    for every string it accepts (it refuses surrogates). Whatever it refuses (keys that are
    not str, integers beyond 64 bits, lone surrogates, nesting past 255 levels, subclasses) is
    checked by `check_entry` and handed to the stdlib's C encoder, so those entries are
    encoded, or refused, exactly as before.
    """
    try:
        # A copy of exactly its length: orjson's own buffer is several KiB, and the log keeps
        # a batch of lines until they are written. Kept, those buffers grew the heap by two
        # pages a line, and the page faults made encoding three times as slow as with the copy.
        return memoryview(_orjson_dumps(obj, option=_ORJSON_OPTIONS)).tobytes()
    except _OrjsonError:
        check_entry(obj)
        return _canonical_json_stdlib(obj)


def _canonical_json_stdlib(obj: Mapping[str, Any]) -> bytes:
    """`canonical_json` by the stdlib's C encoder directly (`JSONEncoder.encode` rebuilds it
    per call, which costs as much as the encoding)."""
    try:
        return "".join(_ENCODE(obj, 0)).encode()
    except UnicodeEncodeError as exc:
        raise AuditEntryError("entry text is not valid Unicode (lone surrogate)") from exc


def utc_timestamp(now: datetime | None = None) -> str:
    """Entry time: RFC 3339 UTC with microseconds, e.g. 2026-11-21T10:00:00.123456Z."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
