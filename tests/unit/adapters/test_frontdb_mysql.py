"""MySQL / MariaDB front-end databases (adapters.frontdb): DSNs, placeholders, and the real
server on 127.0.0.1:3306 read through a read-only pool."""

from __future__ import annotations

import pytest

from adapters.frontdb import MysqlReader, mysql_connect_args, open_reader, parse_dsn, placeholders
from gateway.domain.errors import ConfigError
from tests.conftest import need_service


def test_mysql_dsns() -> None:
    loc = parse_dsn("mysql://root@127.0.0.1:3306/test")
    assert (loc.backend, loc.schema) == ("mysql", "test")
    assert parse_dsn("mariadb://u:p@db/exchange", "wjw_frontdb").schema == "wjw_frontdb"
    with pytest.raises(ConfigError, match="names a database"):
        parse_dsn("mysql://root@127.0.0.1:3306/")
    with pytest.raises(ConfigError, match="names a database"):
        parse_dsn("mysql://root@127.0.0.1/test", "x; DROP DATABASE test")
    args = mysql_connect_args("mysql://wjw%40gw:p%2Fw@10.0.0.5:3307/test", "test")
    assert (args["host"], args["port"], args["user"], args["password"], args["db"]) == (
        "10.0.0.5",
        3307,
        "wjw@gw",
        "p/w",
        "test",
    )
    assert mysql_connect_args("mysql://db/test", "test")["port"] == 3306


def test_mysql_placeholders_double_a_literal_percent() -> None:
    sql = "SELECT * FROM T WHERE A = ? AND B LIKE '%x' AND C = ?"
    assert placeholders(sql, "mysql") == "SELECT * FROM T WHERE A = %s AND B LIKE '%%x' AND C = %s"
    assert placeholders(sql, "postgresql").count("$") == 2
    assert placeholders(sql, "sqlite") == sql


async def test_mysql_reader_reads_rows_keyed_upper_case_and_refuses_writes() -> None:
    need_service("MariaDB", "127.0.0.1", 3306)
    reader = open_reader(parse_dsn("mysql://root@127.0.0.1:3306/test"), pool_size=2, timeout_s=2)
    assert isinstance(reader, MysqlReader)
    try:
        rows = await reader.query("SELECT ? AS id_number, 'a%b' AS text", ("35050519760926005X",))
        assert rows == [{"ID_NUMBER": "35050519760926005X", "TEXT": "a%b"}]
        import pymysql  # noqa: PLC0415

        with pytest.raises(pymysql.MySQLError):  # the session is read-only
            await reader.query("CREATE TABLE PL_READ_ONLY_PROBE (A INT)", ())
    finally:
        await reader.close()
