"""Hostile staged migrations that make the database run something (dry runs, rolled-back inserts).

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this phase runs the ``prepared`` and ``db refused`` cases: each ends prepared (1) or
failed (10) with the database's reason, and its database is exactly as before.
"""

from __future__ import annotations

import pytest

from tests.support.hostile_corpus import cases_of, check, running_corpus

PHASE = "sql"


@pytest.fixture(scope="module")
def corpus(airflow_home, primary, tmp_path_factory):
    with running_corpus(primary, tmp_path_factory.mktemp("hostile"), PHASE) as c:
        yield c


@pytest.mark.parametrize("case", cases_of(PHASE), ids=[c.id for c in cases_of(PHASE)])
def test_hostile_case(corpus, case):
    check(corpus, case)
