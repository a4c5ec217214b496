"""Typed access to a parsed TOML document with errors that name file, line and key path.

The catalogue loader reads every table through a `Table`; a problem becomes an `Issue`
("household.toml:42: evidence.household.field[3].type: unknown type 'strng'; expected …")
collected in the file's `Issues`, so one run of `proofless catalogue check` lists every
problem, not the first. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.catalogue.tomlpos import KeyLines, dotted

Path = tuple[str | int, ...]

_TOML_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "a table",
}


class Invalid(Exception):
    """Stop reading this table; the issue is already recorded."""


@dataclass(frozen=True)
class Issue:
    source: str
    line: int | None
    path: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.problem}" if self.path else f"{where}: {self.problem}"


@dataclass
class Issues:
    source: str
    lines: KeyLines
    found: list[Issue] = field(default_factory=list)

    def add(self, path: Sequence[str | int], problem: str) -> None:
        self.found.append(Issue(self.source, self.lines.line(path), dotted(path), problem))


class Table:
    """One TOML table at `path`; `get` and friends check types and record issues."""

    def __init__(self, issues: Issues, path: Path, data: Any) -> None:
        self.issues = issues
        self.path = path
        if not isinstance(data, dict):
            self.fail(None, "must be a table")
        self.data: dict[str, Any] = data

    def fail(self, key: str | int | None, problem: str) -> None:
        self.issues.add(self.path if key is None else (*self.path, key), problem)
        raise Invalid

    def note(self, key: str | int | None, problem: str) -> None:
        """Record an issue and carry on reading."""
        self.issues.add(self.path if key is None else (*self.path, key), problem)

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                self.note(key, f"unknown key; expected one of {', '.join(allowed)}")

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                self.fail(key, "is required")
            return default
        value = self.data[key]
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            self.fail(key, f"must be {_TOML_TYPES.get(kind, kind.__name__)}")
        return value

    def text(self, key: str, default: Any = ...) -> str:
        return str(self.get(key, str, default))

    def choice(self, key: str, options: Sequence[str], default: Any = ...) -> str:
        value = self.text(key, default)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}")
        return value

    def strings(self, key: str, default: Any = ...) -> list[str]:
        """An array of strings; a single string is read as a one-element array."""
        value = self.data.get(key, default)
        if value is ...:
            self.fail(key, "is required")
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, "must be a string or an array of strings")
        return list(value)

    def table(self, key: str, *, required: bool = False) -> Table | None:
        if key not in self.data:
            if required:
                self.fail(key, "is required")
            return None
        return Table(self.issues, (*self.path, key), self.data[key])

    def tables(self, key: str) -> Iterator[Table]:
        """The elements of an array of tables (`[[key]]`)."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.fail(key, "must be an array of tables ([[...]])")
        for i, item in enumerate(value):
            try:
                yield Table(self.issues, (*self.path, key, i), item)
            except Invalid:
                continue

    def children(self) -> Iterator[tuple[str, Table]]:
        """Each sub-table of this table, by name."""
        for name, value in self.data.items():
            try:
                yield name, Table(self.issues, (*self.path, name), value)
            except Invalid:
                continue
