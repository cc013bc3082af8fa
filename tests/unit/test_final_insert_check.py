"""The final insert's target, read from its text so prepare can aim it at an altered empty copy."""

from __future__ import annotations

import pytest

from shift_provider.exceptions import MigrationStepError
from shift_provider.engine.final_insert_check import target


@pytest.mark.parametrize("sql, database, table, span", [
    ("INSERT INTO t (a) VALUES (1)", None, "t", "t"),
    ("insert ignore into `d`.`a``b`(x) values (1)", "d", "a`b", "`d`.`a``b`"),
    ("INSERT INTO audit SET note = 'x'", None, "audit", "audit"),
    ("INSERT INTO d . t VALUES (1)", "d", "t", "d . t"),
])
def test_target_and_its_span(sql, database, table, span):
    found_db, found_table, start, end = target(sql)
    assert (found_db, found_table, sql[start:end]) == (database, table, span)


def test_no_target_is_refused():
    with pytest.raises(MigrationStepError):
        target("INSERT INTO")
