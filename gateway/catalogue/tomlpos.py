"""Where a key sits in a TOML file, so that a semantic error can name its line.

`tomllib` parses to plain dicts and forgets positions. Catalogue and policy files are written
by people, and "evidence.household.field[3].type: unknown type" is only half an answer without
"household.toml:42". `KeyLines` re-reads the text line by line, following table headers
(`[a.b]`, `[[a.b]]` with a running index per array of tables) and `key = value` lines, and
maps every key path it saw to the line it started on. It understands the shapes these files
use (dotted and quoted keys, arrays of tables, multi-line strings and arrays); a path it cannot
place falls back to the nearest enclosing table it can. Pure: text in, line numbers out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(text: str) -> list[str]:
    """`a."b.c".d` → ["a", "b.c", "d"] (bare and basic/literal quoted keys)."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t.":
            i += 1
            continue
        if c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                break
            parts.append(text[i + 1 : end])
            i = end + 1
            continue
        m = _BARE.match(text, i)
        if not m:
            break
        parts.append(m.group(0))
        i = m.end()
    return parts


def _key_of_line(line: str) -> str | None:
    """The key part of a `key = value` line, outside quotes."""
    in_quote = ""
    for i, c in enumerate(line):
        if in_quote:
            if c == in_quote:
                in_quote = ""
        elif c in "\"'":
            in_quote = c
        elif c == "=":
            return line[:i].strip()
    return None


class KeyLines:
    """Line numbers (1-based) of the keys and tables of one TOML text."""

    def __init__(self, text: str) -> None:
        self._lines: dict[Path, int] = {}
        counters: dict[tuple[str, ...], int] = {}
        table: Path = ()
        skip_until: str | None = None  # closing delimiter of a multi-line value
        depth = 0  # open brackets of a multi-line array or inline table
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if skip_until is not None:
                if skip_until in line:
                    skip_until = None
                continue
            if depth > 0:
                depth += line.count("[") + line.count("{") - line.count("]") - line.count("}")
                continue
            if not line or line.startswith("#"):
                continue
            if line.startswith("[["):
                names = tuple(_split_key(line[2 : line.find("]]")]))
                index = counters.get(names, -1) + 1
                counters[names] = index
                # Nested arrays of tables restart under a new parent element.
                for key in [
                    k for k in counters if len(k) > len(names) and k[: len(names)] == names
                ]:
                    del counters[key]
                table = (*names, index)
                self._lines.setdefault(table, number)
                continue
            if line.startswith("["):
                table = self._resolve(tuple(_split_key(line[1 : line.find("]")])), counters)
                self._lines.setdefault(table, number)
                continue
            key_text = _key_of_line(line)
            if key_text is None:
                continue
            path = (*table, *_split_key(key_text))
            self._lines.setdefault(path, number)
            value = line[line.find("=") + 1 :].strip()
            for quote in ('"""', "'''"):
                if value.startswith(quote) and value.count(quote) == 1:
                    skip_until = quote
            if skip_until is None:
                depth = value.count("[") + value.count("{") - value.count("]") - value.count("}")
                depth = max(depth, 0)

    @staticmethod
    def _resolve(names: tuple[str, ...], counters: dict[tuple[str, ...], int]) -> Path:
        """`[a.b.c]` inside the latest element of `[[a.b]]` lives at ("a", "b", i, "c")."""
        out: list[str | int] = []
        for i, name in enumerate(names):
            out.append(name)
            prefix = names[: i + 1]
            if prefix in counters and i + 1 < len(names):
                out.append(counters[prefix])
        return tuple(out)

    def line(self, path: Sequence[str | int]) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            found = self._lines.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return None


def dotted(path: Sequence[str | int]) -> str:
    """("evidence", "household", "field", 3, "type") → "evidence.household.field[3].type"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _BARE.fullmatch(part):
            out += ("." if out else "") + part
        else:
            out += ("." if out else "") + f'"{part}"'
    return out
