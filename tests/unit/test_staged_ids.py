"""Which staged entries the runner can address: those it claims (and fails if bad) versus those it only logs."""

from __future__ import annotations

import logging

import pytest

from shift_provider.contract.staged_ids import addressable_id, log_unaddressable, split


@pytest.mark.parametrize(("entry", "expected"), [
    ({"id": 43}, 43), ({"id": "43"}, 43), ({"id": -7}, -7), ({"id": " -7 "}, -7), ({"id": 0}, 0),
    ({"id": "forty"}, None), ({"id": True}, None), ({"id": 4.5}, None), ({"id": "４"}, None), ({"id": "-"}, None),
    ({}, None), ("ALTER TABLE t ADD COLUMN x INT", None), (None, None), ({"id": [1]}, None),
])
def test_addressable_id(entry, expected):
    assert addressable_id(entry) == expected


def test_unaddressable_entries_are_logged_once(caplog):
    entries = [{"id": -7}, {"id": "forty"}, None, {"id": 3}]
    addressable, other = split(entries)
    assert addressable == [{"id": -7}, {"id": 3}] and other == [{"id": "forty"}, None]
    seen: set[str] = set()
    log = logging.getLogger("staged-ids-test")
    with caplog.at_level(logging.ERROR, logger="staged-ids-test"):
        for _ in range(5):  # five polls
            log_unaddressable(log, other, seen)
    assert len(caplog.records) == 2
