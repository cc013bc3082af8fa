"""Hostile and malformed staged migrations refused before any SQL, and staged entries left alone.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus`` (its
docstring says how the cases are staged and what each outcome means). Every ``refused``
case is staged and claimed as the runner does, then asserted at the layer that refuses it
(``tests.support.hostile_validation``: the claim's model validation, or the prepare
checks before its first SQL), with its message. A sample, one per layer and way of
staging (``END_TO_END_REFUSED``), and every ``left alone`` entry also run through the
real path (API, sensor DAG, shift_migration runs), and then a good migration, which must
still be prepared.
"""

from __future__ import annotations

import pytest

from tests.support.hostile_corpus import (
    CASES,
    DB_REFUSED,
    END_TO_END_REFUSED,
    FULL_LIFE,
    LEFT_ALONE,
    PREPARED,
    REFUSED,
    Corpus,
    phase_tests,
    refused_cases,
    runner_settings,
)
from tests.support.hostile_validation import refusal, staged_payloads

PHASE = "refused"
corpus, test_hostile_case = phase_tests(PHASE)
REFUSED_CASES = refused_cases()


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 60
    by_kind = {kind: sum(c.expect == kind for c in CASES) for kind in (REFUSED, LEFT_ALONE, DB_REFUSED,
                                                                       PREPARED, FULL_LIFE)}
    assert all(by_kind.values()), by_kind
    assert set(END_TO_END_REFUSED) <= {c.id for c in REFUSED_CASES}


@pytest.fixture(scope="module")
def claimed(airflow_home, tmp_path_factory):
    """(every refused case's payload as its run would get it, the runner's settings)."""
    from shift_provider.settings import get_settings

    work = tmp_path_factory.mktemp("hostile-validation")
    with runner_settings(work), staged_payloads(Corpus, REFUSED_CASES, work) as payloads:
        yield payloads, get_settings()


@pytest.mark.parametrize("case", REFUSED_CASES, ids=[c.id for c in REFUSED_CASES])
def test_refused_before_any_sql(claimed, case):
    payloads, settings = claimed
    refused = refusal(payloads[case.id], settings)
    assert refused is not None, f"{case.id} gets past the claim and the prepare checks"
    layer, message = refused
    assert case.message in message, message
    assert len(message) <= 2000, "an error message must stay readable"
    if case.id in END_TO_END_REFUSED:  # the end-to-end run shows this layer refusing it (no run, or a failed run)
        assert layer == END_TO_END_REFUSED[case.id], (layer, message)


def test_nothing_was_written_while_the_refused_cases_ran(corpus):
    """No binlog event at all between staging the refused cases and the last of them failing."""
    assert corpus.master_before_refused == corpus.master_after_refused


def test_the_sensor_keeps_working_after_hostile_input(corpus):
    mid = corpus.mid["good-after-hostile"]
    assert corpus.api.migration(mid)["status"] == 1
    assert [r[2] for r in corpus.runs_for(mid)] == ["success"]
