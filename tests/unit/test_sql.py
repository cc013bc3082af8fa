"""DDL parsing and quoting: what the runner will run, and what it refuses."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shift_provider.contract.codes import Action, Mode
from shift_provider.mysql.sql import parse_ddl, qualified, quote_ident, timestamped_name


@pytest.mark.parametrize(("ddl", "action", "mode", "database", "table", "clause"), [
    ("alter table employees add column salary int(11)", Action.ALTER, Mode.TABLE, None, "employees", "add column salary int(11)"),
    ("ALTER TABLE `db`.`order` ADD INDEX k (x);", Action.ALTER, Mode.TABLE, "db", "order", "ADD INDEX k (x)"),
    ("Alter Table `my-table` modify `a;b` varchar(9) default 'x;y'", Action.ALTER, Mode.TABLE, None, "my-table", "modify `a;b` varchar(9) default 'x;y'"),
    ("create table if not exists t (id int primary key)", Action.CREATE, Mode.TABLE, None, "t", None),
    ("CREATE VIEW v AS SELECT 1", Action.CREATE, Mode.VIEW, None, "v", None),
    ("drop table if exists d.t", Action.DROP, Mode.TABLE, "d", "t", None),
    ("DROP VIEW `v`", Action.DROP, Mode.VIEW, None, "v", None),
    ("alter table `tábla` add column ñ int", Action.ALTER, Mode.TABLE, None, "tábla", "add column ñ int"),
    ("ALTER TABLE t RENAME COLUMN a TO b", Action.ALTER, Mode.TABLE, None, "t", "RENAME COLUMN a TO b"),
    ("ALTER TABLE t RENAME INDEX i TO j, ADD COLUMN c INT DEFAULT (1)", Action.ALTER, Mode.TABLE, None, "t",
     "RENAME INDEX i TO j, ADD COLUMN c INT DEFAULT (1)"),
])
def test_parse_ddl(ddl, action, mode, database, table, clause):
    parsed = parse_ddl(ddl)
    assert (parsed.action, parsed.mode, parsed.database, parsed.table, parsed.alter_clause) == (
        action, mode, database, table, clause)


@pytest.mark.parametrize(("ddl", "message"), [
    ("alter table t add column x int; drop table t", "more than one statement"),
    ("alter table t add column x int /* hi */", "comments"),
    ("alter table t add column x int -- hi", "comments"),
    ("select * from t", "must be CREATE TABLE"),
    ("create temporary table t (id int)", "TEMPORARY"),
    ("alter table t rename to u", "RENAME"),
    ("alter table t add column x int, rename u", "RENAME"),
    ("alter table t rename as u", "RENAME"),
    ("alter table t", "no alteration"),
    ("drop table a, b", "exactly one"),
    ("alter table `t add column x int", "unterminated"),
    ("alter table t add column x varchar(3) default 'abc", "unterminated"),
    ("alter table a.b.c add column x int", "too many parts"),
])
def test_parse_ddl_refuses(ddl, message):
    with pytest.raises(ValueError, match=message):
        parse_ddl(ddl)


def test_quoting_and_names():
    assert quote_ident("order") == "`order`"
    assert quote_ident("a`b") == "`a``b`"
    assert qualified("d", "my-table") == "`d`.`my-table`"
    with pytest.raises(ValueError):
        quote_ident("a\x00b")
    when = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    assert timestamped_name("employees", when) == "20260102030405678_employees"
    assert len(timestamped_name("x" * 64, when)) == 64
