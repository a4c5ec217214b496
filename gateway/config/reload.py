"""Files that change under a running gateway: the policy, the CRL, the TLS material.

`Reloadable` keeps the last good value of a file and replaces it only when the new content
parses; a bad file is reported and the old value stays in force. The server polls
`changed()` from an owned task (and on SIGHUP), which costs one stat() per file per tick.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from gateway.domain.errors import ProoflessError

T = TypeVar("T")
log = logging.getLogger("proofless.reload")


def _stamp(paths: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    stamps = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            stamps.append((0, 0, 0))
    return tuple(stamps)


Paths = Sequence[Path] | Callable[[], Sequence[Path]]


class Reloadable(Generic[T]):
    """`paths` are the files to watch, or a function naming them (a directory's files: a file
    added there changes the directory, and the next look names it)."""

    def __init__(self, name: str, paths: Paths, load: Callable[[], T]) -> None:
        self.name = name
        self._paths = paths if callable(paths) else tuple(paths)
        self._load = load
        self._stamp = self._now()
        self._value = load()  # at start-up a bad file is fatal: raise
        self.reloads = 0
        self.last_error = ""

    @property
    def value(self) -> T:
        return self._value

    def __call__(self) -> T:
        return self._value

    def _now(self) -> tuple[tuple[Path, tuple[int, int, int]], ...]:
        paths = self._paths() if callable(self._paths) else self._paths
        return tuple(zip(paths, _stamp(paths), strict=True))

    def changed(self) -> bool:
        return self._now() != self._stamp

    def reload(self, *, force: bool = False) -> bool:
        """Load again if the files changed (or `force`); True when a new value took effect."""
        stamp = self._now()
        if not force and stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self._value = self._load()
        except (ProoflessError, OSError, ValueError) as exc:
            self.last_error = str(exc)
            message = exc.diagnostics() if isinstance(exc, ProoflessError) else str(exc)
            log.error("%s reload rejected, previous version stays: %s", self.name, message)
            return False
        self.reloads += 1
        self.last_error = ""
        log.info("%s reloaded", self.name)
        return True
