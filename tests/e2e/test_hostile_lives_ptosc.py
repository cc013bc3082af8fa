"""Odd-but-legal names and final inserts through a whole life as long runs: prepare, pt-osc copy, rename.

The corpus and each case's expected outcome are in ``tests.support.hostile_corpus``;
this file runs the ``full life`` cases approved as long runs: reserved-word, hyphenated,
spaced, unicode and 64-character names through prepare, the pt-osc copy and the rename to
completed (8), with the schema really changed and nothing else touched.
"""

from __future__ import annotations

from tests.support.hostile_corpus import phase_tests

PHASE, RUNTYPE = "full life", "long"
corpus, test_hostile_case = phase_tests(PHASE, RUNTYPE)
