"""Hostile and malformed staged migrations refused before any SQL, and staged entries left alone.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus`` (its
docstring says how the cases are staged and what each outcome means). This phase runs
every ``refused`` and ``left alone`` case through the real path (API, sensor DAG,
shift_migration runs) and then a good migration, which must still be prepared.
"""

from __future__ import annotations

from tests.support.hostile_corpus import (
    CASES,
    DB_REFUSED,
    FULL_LIFE,
    LEFT_ALONE,
    PREPARED,
    REFUSED,
    phase_tests,
)

PHASE = "refused"
corpus, test_hostile_case = phase_tests(PHASE)


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60
    by_kind = {kind: sum(c.expect == kind for c in CASES) for kind in (REFUSED, LEFT_ALONE, DB_REFUSED,
                                                                       PREPARED, FULL_LIFE)}
    assert all(by_kind.values()), by_kind


def test_nothing_was_written_while_the_refused_cases_ran(corpus):
    """No binlog event at all between staging the refused cases and the last of them failing."""
    assert corpus.master_before_refused == corpus.master_after_refused


def test_the_sensor_keeps_working_after_hostile_input(corpus):
    mid = corpus.mid["good-after-hostile"]
    assert corpus.api.migration(mid)["status"] == 1
    assert [r[2] for r in corpus.runs_for(mid)] == ["success"]
