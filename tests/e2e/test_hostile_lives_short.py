"""Odd-but-legal names and final inserts through a whole life as short runs: prepare, then the DDL itself.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this file runs the ``full life`` cases approved as short runs: names pt-osc 3.2 cannot find
(accented, CJK, a quote) altered directly, a unicode column, and final inserts that must land
once (into another database, a Jinja-looking literal), to completed (8).
"""

from __future__ import annotations

from tests.support.hostile_corpus import phase_tests

PHASE, RUNTYPE = "full life", "short"
corpus, test_hostile_case = phase_tests(PHASE, RUNTYPE)
