"""A table definition as named parts: what the rename's refusal names when the live table changed."""

from __future__ import annotations

from shift_provider.mysql.table_definition import differences, parts

BEFORE = """CREATE TABLE `t` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `a` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_a` (`a`)
) ENGINE=InnoDB AUTO_INCREMENT=3001 DEFAULT CHARSET=latin1"""


def test_parts_and_differences_name_columns_indexes_and_options():
    before = parts(BEFORE)
    assert before["column `a`"] == "`a` int(11) DEFAULT NULL" and before["index `idx_a`"] == "KEY `idx_a` (`a`)"
    assert before["table options"] == "ENGINE=InnoDB DEFAULT CHARSET=latin1"
    assert differences(before, parts(BEFORE.replace("3001", "9999"))) == []  # the counter is not the definition
    now = parts(BEFORE.replace("  KEY `idx_a` (`a`)\n", "  UNIQUE KEY `u` (`a`)\n")
                .replace("  `a` int(11) DEFAULT NULL,\n",
                         "  `a` bigint(20) DEFAULT 5,\n  `vip` tinyint(4) DEFAULT NULL,\n"))
    changes = differences(before, now)
    assert "column `vip` was added (`vip` tinyint(4) DEFAULT NULL)" in changes
    assert "index `u` was added (UNIQUE KEY `u` (`a`))" in changes
    assert "index `idx_a` was removed (was: KEY `idx_a` (`a`))" in changes
    assert "column `a` changed from (`a` int(11) DEFAULT NULL) to (`a` bigint(20) DEFAULT 5)" in changes
