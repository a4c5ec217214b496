"""Structured logs: one JSON object a line on stderr, with no personal data in it.

Call sites pass context as `extra={...}`; only the keys in `ALLOWED_FIELDS` are emitted, so a
careless `extra={"id_number": ...}` or `extra={"record": ...}` never reaches the log. As a
second guard, anything shaped like a resident ID number (15 or 18 characters) or a mobile
number is masked in the message and in string fields. Exceptions are logged by type and stack
only: an exception's message may quote the input it choked on.
"""

from __future__ import annotations

import json as _json
import logging
import re
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, Final

#: the extra keys a log line may carry: ids, bounded labels and measurements, never a person
ALLOWED_FIELDS: Final = frozenset(
    {
        "request_id",
        "caller",
        "rpc",
        "service_item",
        "outcome",
        "code",
        "reason",
        "latency_ms",
        "department",
        "audit_index",
        "tree_size",
        "proof_id",
        "kid",
        "origin",
        "host",
        "port",
        "worker",
        "attempt",
        "state",
        "count",
        "duration_ms",
        "path",
        "version",
    }
)

_PERSONAL = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15}|1[3-9][0-9]{9})(?![0-9])")
_MASK: Final = "[redacted]"
_MAX_FIELD_CHARS: Final = 256
_HANDLER_MARK: Final = "_proofless_handler"

# attributes every LogRecord has: anything else on a record came from `extra`
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def redact(text: str) -> str:
    """`text` with ID-number- and phone-shaped digit runs masked."""
    return _PERSONAL.sub(_MASK, text)


def _safe(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(str(value)[:_MAX_FIELD_CHARS])


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The whitelisted, redacted extra fields of `record`."""
    return {
        key: _safe(value)
        for key, value in vars(record).items()
        if key in ALLOWED_FIELDS and key not in _RECORD_ATTRS
    }


def _exception(record: logging.LogRecord) -> dict[str, Any]:
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    kind, _, tb = record.exc_info
    stack = "".join(traceback.format_tb(tb)) if tb else ""
    return {"exc_type": kind.__qualname__, "stack": redact(stack)}


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the allowed extras and an exception's type and stack."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(fields(record))
        line.update(_exception(record))
        return _json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """The same content for a developer's terminal: `time level logger: message k=v ...`."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{k}={v}" for k, v in fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        line = f"{line} {extras}" if extras else line
        exc = _exception(record)
        return f"{line}\n{exc['exc_type']}\n{exc['stack']}".rstrip() if exc else line


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Send the root logger to stderr as JSON lines (or text with `json=False`) at `level`.
    Calling it again replaces the handler it installed before; other handlers stay."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
