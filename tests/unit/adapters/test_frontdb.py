"""Front-end database locations and the one-SQL-text placeholder translation."""

from __future__ import annotations

import pytest

from adapters.frontdb import DEFAULT_SCHEMA, parse_dsn, placeholders
from gateway.catalogue.schema import SqlQuery
from gateway.domain.errors import ConfigError
from tests.support.rules import catalogue


def test_sqlite_paths() -> None:
    assert parse_dsn("sqlite:///var/frontdb/p.sqlite3").target == "var/frontdb/p.sqlite3"
    assert parse_dsn("sqlite:////tmp/p.sqlite3").target == "/tmp/p.sqlite3"
    assert parse_dsn("sqlite:///x").backend == "sqlite"


def test_postgres_schema_from_dsn_or_argument() -> None:
    loc = parse_dsn("postgresql://postgres@127.0.0.1:5432/test")
    assert (loc.backend, loc.schema) == ("postgresql", DEFAULT_SCHEMA)
    loc = parse_dsn("postgresql://postgres@127.0.0.1:5432/test?schema=bdc_t1&sslmode=disable")
    assert loc.schema == "bdc_t1"
    assert loc.target == "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
    assert parse_dsn("postgresql://h/test?schema=a", "b").schema == "b"


@pytest.mark.parametrize(
    "dsn",
    [
        "oracle://h/db",
        "sqlite:///",
        "postgresql://h/db?schema=x;drop",
        "postgresql://h/d?schema=1a",
    ],
)
def test_bad_locations(dsn: str) -> None:
    with pytest.raises(ConfigError):
        parse_dsn(dsn)


def test_placeholders() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c = ?"
    assert placeholders(sql, "sqlite") == sql
    assert placeholders(sql, "postgresql") == "SELECT a FROM t WHERE b = $1 AND c = $2"

    # The deployed property query ([evidence.property.sql] query) is one text for both.
    spec = catalogue().evidence["property"].fetch
    assert isinstance(spec, SqlQuery)
    assert spec.params == ("{subject}",)
    assert placeholders(spec.query, "sqlite") == spec.query
    rewritten = placeholders(spec.query, "postgresql")
    assert rewritten.count("$1") == 1
    assert "?" not in rewritten
