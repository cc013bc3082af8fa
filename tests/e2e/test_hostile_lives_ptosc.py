"""Odd-but-legal names and final inserts through a whole life as long runs: prepare, pt-osc copy, rename.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this file runs the ``full life`` cases approved as long runs: reserved-word, hyphenated,
spaced, unicode and 64-character names through prepare, the pt-osc copy and the rename to
completed (8), with the schema really changed and nothing else touched.
"""

from __future__ import annotations

import pytest

from tests.support.hostile_corpus import cases_of, check, running_corpus

PHASE, RUNTYPE = "full life", "long"


@pytest.fixture(scope="module")
def corpus(airflow_home, primary, tmp_path_factory):
    with running_corpus(primary, tmp_path_factory.mktemp("hostile"), PHASE, RUNTYPE) as c:
        yield c


@pytest.mark.parametrize("case", cases_of(PHASE, RUNTYPE), ids=[c.id for c in cases_of(PHASE, RUNTYPE)])
def test_hostile_case(corpus, case):
    check(corpus, case)
