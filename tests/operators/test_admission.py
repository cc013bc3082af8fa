"""DDL admission: out-of-scope DDLs are refused by the validation layer, and not one statement reaches the server.

Each line of ``OUT_OF_SCOPE`` is a DDL a requester could file for the table ``t`` (or the new
table ``n``) of database ``app``, and the words its refusal must contain. Every one is
checked through both gates a step passes before its SQL (``prepare.checked_ddl``: prepare
and the short run; ``ptosc.alter_clause``: dry run, copy, instant probe and rename), with
the real server watched meanwhile: its binlog position and general log do not move.
A few representative cases run end to end through the real DAGs in
``tests/e2e/test_out_of_scope.py``.
"""

from __future__ import annotations

import pytest

from shift_provider import ptosc
from shift_provider.exceptions import MigrationStepError
from shift_provider.contract.models import Migration
from shift_provider.operators.prepare import checked_ddl
from tests.support.hostile import RootServer, RunnerTrace

DB = "app"
EXCHANGE = "EXCHANGE PARTITION swaps rows with another table"
CONVERT = "moves rows between the table and another table"
TABLESPACE = "TABLESPACE detaches or replaces the table's data files"
SELECT = "CREATE ... SELECT (or a SELECT inside the DDL) copies rows from other tables"
OTHER_DB = "a table in another database ('other', not 'app')"

OUT_OF_SCOPE = [
    ("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE payroll", EXCHANGE),
    ("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE other.payroll WITHOUT VALIDATION", EXCHANGE),
    ("ALTER TABLE `app`.`t` exchange partition p0 with table payroll", EXCHANGE),
    ("ALTER TABLE t CONVERT TABLE invoices TO PARTITION p2 VALUES LESS THAN (3000)", "CONVERT TABLE " + CONVERT),
    ("ALTER TABLE t CONVERT PARTITION p0 TO TABLE t_p0", "CONVERT PARTITION " + CONVERT),
    ("ALTER TABLE t ADD COLUMN x INT, CONVERT PARTITION p0 TO TABLE t_p0", "CONVERT PARTITION " + CONVERT),
    ("ALTER TABLE t RENAME TO payroll", "RENAME TO changes the table's name"),
    ("ALTER TABLE t RENAME other.t", "RENAME TO changes the table's name"),
    ("ALTER TABLE t DISCARD TABLESPACE", "DISCARD ... " + TABLESPACE),
    ("ALTER TABLE t IMPORT TABLESPACE", "IMPORT ... " + TABLESPACE),
    ("ALTER TABLE t DISCARD PARTITION p0 TABLESPACE", "DISCARD ... " + TABLESPACE),
    ("ALTER TABLE t IMPORT PARTITION ALL TABLESPACE", "IMPORT ... " + TABLESPACE),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (amount) REFERENCES other.payroll (id)",
     "REFERENCES other.payroll: a foreign key to " + OTHER_DB),
    ("ALTER TABLE t ADD COLUMN pid INT REFERENCES `other`.`payroll` (id)",
     "REFERENCES other.payroll: a foreign key to " + OTHER_DB),
    ("ALTER TABLE t ENGINE=BLACKHOLE", "ENGINE=BLACKHOLE is not allowed (only InnoDB, Aria, MyISAM)"),
    ("ALTER TABLE t ENGINE BLACKHOLE", "ENGINE=BLACKHOLE is not allowed"),
    ("ALTER TABLE t ENGINE = 'blackhole'", "ENGINE=blackhole is not allowed"),
    ("ALTER TABLE t ADD COLUMN x INT, ENGINE MEMORY", "ENGINE=MEMORY is not allowed"),
    ("ALTER TABLE t STORAGE ENGINE FEDERATED", "ENGINE=FEDERATED is not allowed"),
    ("ALTER TABLE t ENGINE=MERGE UNION=(payroll)", "ENGINE=MERGE is not allowed"),
    ("ALTER TABLE t UNION=(payroll, invoices)", "UNION= makes the table a window on other tables"),
    ("ALTER TABLE t ENGINE=CONNECT TABLE_TYPE=MYSQL CONNECTION='mysql://u:p@10.0.0.9/db/x'",
     "ENGINE=CONNECT is not allowed"),
    ("ALTER TABLE t CONNECTION='mysql://u:p@10.0.0.9/db/x'", "CONNECTION= makes the table a window on another server"),
    ("ALTER TABLE t ADD PARTITION (PARTITION p9 VALUES LESS THAN (9999) ENGINE=BLACKHOLE)",
     "ENGINE=BLACKHOLE is not allowed"),
    ("ALTER TABLE t DATA DIRECTORY='/tmp'", "DATA DIRECTORY puts the table's files outside"),
    ("ALTER TABLE t INDEX DIRECTORY='/tmp'", "INDEX DIRECTORY puts the table's files outside"),
    ("ALTER TABLE t TABLESPACE innodb_system", "TABLESPACE moves or detaches the table's data files"),
    ("ALTER TABLE t ADD COLUMN x INT, TABLESPACE = innodb_system", "TABLESPACE moves or detaches"),
    ("ALTER TABLE t CONNECTION 'mysql://u:p@10.0.0.9/db/x'", "CONNECTION= makes the table a window on another"),
    ("ALTER TABLE t ADD COLUMN c INT DEFAULT (SELECT MAX(id) FROM other.payroll)", SELECT),
    ("CREATE TABLE n SELECT * FROM other.secrets", SELECT),
    ("CREATE TABLE n AS SELECT * FROM other.secrets", SELECT),
    ("CREATE TABLE n (id INT PRIMARY KEY) SELECT id FROM other.secrets", SELECT),
    ("CREATE TABLE n (id INT PRIMARY KEY) IGNORE SELECT id FROM payroll", SELECT),
    ("CREATE TABLE n (SELECT * FROM other.secrets)", SELECT),
    ("CREATE TABLE n LIKE other.secrets", "LIKE other.secrets: a copy of the definition of " + OTHER_DB),
    ("CREATE TABLE n (LIKE other.secrets)", "LIKE other.secrets: a copy of the definition of " + OTHER_DB),
    ("CREATE TABLE n (id INT) ENGINE=BLACKHOLE", "ENGINE=BLACKHOLE is not allowed"),
    ("CREATE TABLE n (id INT) ENGINE=FEDERATED CONNECTION='mysql://u:p@10.0.0.9:3306/db/x'",
     "ENGINE=FEDERATED is not allowed"),
    ("CREATE TABLE n (id INT) ENGINE=MEMORY", "ENGINE=MEMORY is not allowed"),
    ("CREATE TABLE n (id INT) ENGINE=SPIDER COMMENT='wrapper \"mysql\", srv \"x\"'", "ENGINE=SPIDER is not allowed"),
    ("CREATE TABLE n (id INT, p INT, FOREIGN KEY (p) REFERENCES other.payroll (id))",
     "REFERENCES other.payroll: a foreign key to " + OTHER_DB),
    ("CREATE TABLE n (id INT) DATA DIRECTORY = '/var/tmp'", "DATA DIRECTORY puts the table's files outside"),
    ("CREATE VIEW n AS SELECT * FROM other.secrets", "FROM other.secrets: a view on " + OTHER_DB),
    ("CREATE VIEW n AS SELECT a.id FROM t a JOIN other.secrets s ON s.id = a.id",
     "JOIN other.secrets: a view on " + OTHER_DB),
]

IN_SCOPE = [  # close to the refused ones, and legitimate: the same gates let them through
    "ALTER TABLE t ENGINE=InnoDB", "ALTER TABLE t ENGINE=Aria", "ALTER TABLE t ADD COLUMN engine VARCHAR(9)",
    "ALTER TABLE t CHANGE engine engine INT", "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4",
    "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (amount) REFERENCES payroll (id)",
    "ALTER TABLE t ADD CONSTRAINT c CHECK (name LIKE 'a%')", "ALTER TABLE t DROP PARTITION p0",
    "ALTER TABLE t RENAME COLUMN name TO full_name", "ALTER TABLE t ADD COLUMN `union` INT",
    "ALTER TABLE t ADD COLUMN connection INT, ADD COLUMN tablespace VARCHAR(9)", "ALTER TABLE t ADD engine INT",
    "ALTER TABLE t ADD COLUMN note VARCHAR(40) DEFAULT 'SELECT * FROM other.secrets'",
    "CREATE TABLE n (id INT, engine VARCHAR(9)) ENGINE=InnoDB", "CREATE TABLE n LIKE t", "CREATE TABLE n LIKE app.t",
    "CREATE TABLE n (id INT, p INT, FOREIGN KEY (p) REFERENCES app.payroll (id))",
    "CREATE VIEW n AS SELECT id FROM t UNION SELECT id FROM app.payroll",
]


def migration_for(ddl: str, primary) -> Migration:
    """The migration a requester files for ``ddl`` (as the API derives table, mode and action)."""
    create = ddl.startswith("CREATE")
    return Migration.from_payload({
        "id": 7, "database": DB, "table": "n" if create else "t", "ddl_statement": ddl, "status": 0,
        "staged": False, "host": primary.host, "port": primary.port, "runtype": 1,
        "mode": 1 if ddl.startswith("CREATE VIEW") else 0, "action": 0 if create else 2, "custom_options": None,
    })


def test_the_corpus_is_big_enough():
    assert len(OUT_OF_SCOPE) >= 30 and len({ddl for ddl, _ in OUT_OF_SCOPE}) == len(OUT_OF_SCOPE)


@pytest.fixture(scope="module")
def watched(primary):
    """The primary's binlog position and general log, around every case of this module."""
    root = RootServer(primary)
    trace = RunnerTrace(root).start()
    before = root.master_position()
    yield root, trace
    trace.stop()
    assert root.master_position() == before, "the binlog moved while DDLs were only validated"


@pytest.mark.parametrize(("ddl", "message"), OUT_OF_SCOPE, ids=[ddl for ddl, _ in OUT_OF_SCOPE])
def test_out_of_scope_ddl_is_refused_before_any_sql(watched, primary, ddl, message):
    root, trace = watched
    binlog = root.master_position()
    migration = migration_for(ddl, primary)
    with pytest.raises(MigrationStepError) as refused:
        checked_ddl(migration)
    assert message in str(refused.value), str(refused.value)
    if migration.action == 2 and "RENAME" not in message:  # the copy / dry run / rename gate says the same
        with pytest.raises(MigrationStepError, match="out of scope") as again:
            ptosc.alter_clause(migration)
        assert message in str(again.value)
    assert root.master_position() == binlog
    assert trace.runner_statements() == [], "the runner's user sent a statement"


@pytest.mark.parametrize("ddl", IN_SCOPE)
def test_in_scope_ddl_passes_the_gates(primary, ddl):
    migration = migration_for(ddl, primary)
    assert checked_ddl(migration).table == migration.table
    if migration.action == 2:
        assert ptosc.alter_clause(migration)
