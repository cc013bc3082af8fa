"""Odd-but-legal names and final inserts through a whole life as short runs: prepare, then the DDL itself.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this file runs the ``full life`` cases approved as short runs: names pt-osc 3.2 cannot find
(accented, CJK, a quote) altered directly, a unicode column, and final inserts that must land
once (into another database, a Jinja-looking literal), to completed (8).
"""

from __future__ import annotations

import pytest

from tests.support.hostile_corpus import cases_of, check, running_corpus

PHASE, RUNTYPE = "full life", "short"


@pytest.fixture(scope="module")
def corpus(airflow_home, primary, tmp_path_factory):
    with running_corpus(primary, tmp_path_factory.mktemp("hostile"), PHASE, RUNTYPE) as c:
        yield c


@pytest.mark.parametrize("case", cases_of(PHASE, RUNTYPE), ids=[c.id for c in cases_of(PHASE, RUNTYPE)])
def test_hostile_case(corpus, case):
    check(corpus, case)
