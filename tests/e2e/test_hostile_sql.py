"""Hostile staged migrations that make the database run something (dry runs, rolled-back inserts).

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this phase runs the ``prepared`` and ``db refused`` cases: each ends prepared (1) or
failed (10) with the database's reason, and its database is exactly as before. The
prepared ones go through the sensor DAG and shift_migration runs; the db-refused ones,
claimed as the runner claims them, through prepare's own steps (``shift_test_prepare``).
"""

from __future__ import annotations

from tests.support.hostile_corpus import phase_tests

PHASE = "sql"
corpus, test_hostile_case = phase_tests(PHASE)
