"""Structured logs: one JSON object a line on stderr, with no personal data in it.

Lines at INFO and below are written in batches (like Envoy's file access log and nginx's
`access_log ... buffer= flush=`): the access log's line per call would otherwise cost one
`write` system call per call. A batch is written when it reaches `FLUSH_BYTES`, at most
`FLUSH_INTERVAL_S` after its first line, at exit, and at once (with everything before it)
when a WARNING or worse arrives, so problems are never held back. The audit log, not this
one, is the durable record of every access.

Call sites pass context as `extra={...}`; only the keys in `ALLOWED_FIELDS` are emitted, so a
careless `extra={"id_number": ...}` or `extra={"record": ...}` never reaches the log. As a
second guard, anything shaped like a resident ID number (15 or 18 characters) or a mobile
number is masked in the message and in string fields. Exceptions are logged by type and stack
only: an exception's message may quote the input it choked on.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import traceback
from _json import encode_basestring, make_encoder
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from gateway.domain import validation

#: the extra keys a log line may carry: ids, bounded labels and measurements, never a person
ALLOWED_FIELDS: Final = frozenset(
    {
        "request_id",
        "caller",
        "rpc",
        "transport",
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

#: A resident ID number or a mainland mobile number: the one pattern, kept with the request
#: validation (which refuses them in free-text fields); named here for the request-id check.
PERSONAL_NUMBER: Final = validation.PERSONAL_NUMBER
_PERSONAL = re.compile(rf"(?<![0-9]){PERSONAL_NUMBER}(?![0-9])")
_MASK: Final = "[redacted]"
_MAX_FIELD_CHARS: Final = 256
_HANDLER_MARK: Final = "_proofless_handler"
#: a batch of buffered lines is written when it holds this many bytes...
FLUSH_BYTES: Final = 64 * 1024
#: ...or this long after its first line
FLUSH_INTERVAL_S: Final = 0.2

# attributes every LogRecord has: anything else on a record came from `extra`
_RECORD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


#: the allowed keys that can only have come from `extra`
_EXTRA_FIELDS: Final = ALLOWED_FIELDS - _RECORD_ATTRS
_PLAIN: Final = (bool, int, float, type(None))
#: `json.dumps(ensure_ascii=False, separators=(",", ":"), default=str)` builds this C encoder
#: on every call; built once (as gateway.crypto.proofs and gateway.audit.entry build theirs). No
#: circular-reference markers: a line is a flat dict.
_ENCODE = make_encoder(None, str, encode_basestring, None, ":", ",", False, False, True)


def _dumps(line: dict[str, Any]) -> str:
    return "".join(_ENCODE(line, 0))


def redact(text: str) -> str:
    """`text` with ID-number- and phone-shaped digit runs masked."""
    return _PERSONAL.sub(_MASK, text)


def _safe(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    return redact(str(value)[:_MAX_FIELD_CHARS])


def _allowed(extra: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _safe(value) for key, value in extra.items() if key in _EXTRA_FIELDS}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The whitelisted, redacted extra fields of `record`."""
    return _allowed(vars(record))


def _json_line(
    created: datetime, level: str, logger: str, message: str, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """A JSON log line's fields: time, level, logger, message, then the allowed extras."""
    line: dict[str, Any] = {
        "time": created.isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": redact(message),
    }
    line.update(_allowed(extra))
    return line


def _exception(record: logging.LogRecord) -> dict[str, Any]:
    if not record.exc_info or record.exc_info[0] is None:
        return {}
    kind, _, tb = record.exc_info
    stack = "".join(traceback.format_tb(tb)) if tb else ""
    return {"exc_type": kind.__qualname__, "stack": redact(stack)}


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, the allowed extras and an exception's type and stack."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        line = _json_line(created, record.levelname, record.name, record.getMessage(), vars(record))
        if record.exc_info:
            line.update(_exception(record))
        return _dumps(line)


class TextFormatter(logging.Formatter):
    """The same content for a developer's terminal: `time level logger: message k=v ...`."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        extras = " ".join(f"{k}={v}" for k, v in fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        line = f"{line} {extras}" if extras else line
        exc = _exception(record)
        return f"{line}\n{exc['exc_type']}\n{exc['stack']}".rstrip() if exc else line


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes lines in batches (see the module docstring): at
    `flush_bytes`, `interval_s` after a batch's first line (a flusher thread, started on the
    first line in each process), at once for WARNING and worse, and on `flush()`/`close()`
    (which `logging.shutdown` calls at exit)."""

    def __init__(
        self,
        stream: Any = None,
        *,
        flush_bytes: int = FLUSH_BYTES,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._size = 0
        self._flush_bytes = flush_bytes
        self._interval_s = interval_s
        self._due = threading.Event()
        self._closed = False
        self._flusher_pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)
            return
        self.add_line(line, record.levelno)

    def add_line(self, line: str, levelno: int) -> None:
        """Batch one formatted line (with its terminator), as `emit` does for a record."""
        self.acquire()  # reentrant: `emit` already holds it when `handle` calls it
        try:
            self._lines.append(line)
            self._size += len(line)
            if levelno >= logging.WARNING or self._size >= self._flush_bytes:
                self._write()
            elif len(self._lines) == 1:
                pid = os.getpid()
                if self._flusher_pid != pid:  # first line in this process (or a fork)
                    self._flusher_pid = pid
                    threading.Thread(target=self._flusher, name="log-flusher", daemon=True).start()
                self._due.set()
        finally:
            self.release()

    def _write(self) -> None:
        lines, self._lines, self._size = self._lines, [], 0
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:  # a closed or broken stderr must not fail a call
                self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def _flusher(self) -> None:
        while not self._closed:
            self._due.wait()
            self._due.clear()
            if self._closed:
                return
            time.sleep(self._interval_s)
            self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._due.set()
        super().close()


def _sole_json_handler(logger: logging.Logger, levelno: int) -> BufferedStreamHandler | None:
    """The handler `configure_logging` installed, when it alone receives `logger`'s records:
    no filters and no other handler on the way up to the root, where it is the only one."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            if current.parent is not None or len(current.handlers) != 1:
                return None
            handler = current.handlers[0]
            if (
                type(handler) is BufferedStreamHandler
                and getattr(handler, _HANDLER_MARK, False)
                and not handler.filters
                and type(handler.formatter) is JsonFormatter
                and handler.level <= levelno
            ):
                return handler
            return None
        if not current.propagate:
            return None
        current = current.parent
    return None


def log_fields(logger: logging.Logger, levelno: int, message: str, extra: dict[str, Any]) -> None:
    """`logger.log(levelno, message, extra=extra)` for a line per call (the access log).

    When the JSON handler of `configure_logging` alone receives the logger's records, the
    line is formatted here and added to its batch without a LogRecord: the same line
    `JsonFormatter` writes for that record, at about half the cost. Any other set-up (other
    handlers or filters, a test's log capture, the text format) gets a real record.
    """
    if not logger.isEnabledFor(levelno):
        return
    handler = _sole_json_handler(logger, levelno)
    if handler is None:
        logger.log(levelno, message, extra=extra)
        return
    line = _json_line(datetime.now(UTC), logging.getLevelName(levelno), logger.name, message, extra)
    handler.add_line(_dumps(line) + handler.terminator, levelno)


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Send the root logger to stderr as JSON lines (or text with `json=False`) at `level`,
    batched (see the module docstring). Calling it again replaces the handler it installed
    before; other handlers stay."""
    # Neither format shows threads, processes or source lines: skip collecting them for
    # every record (the logging HOWTO's "Optimization" section).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # no findCaller() stack walk
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
