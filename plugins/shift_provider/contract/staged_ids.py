"""Which entries of the ``staged`` answer the runner can act on, decided in one place.

An entry with an integer id (``-7`` and ``"43"`` included) can be addressed: the claim
unstages it, and when the id (or anything else) is not one a migration may have, fails it
through the API with the reason. An entry without one (text, a float, a bool, no id, not
an object) cannot be addressed: it is logged once and ignored, and it must not wake the
sensor, or the ``@continuous`` sensor DAG would start a new run at once, forever.

Kept free of Airflow imports: the triggerer, the sensor and the claim all use it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def addressable_id(entry: Any) -> int | None:
    """The entry's id as an integer, whatever its sign; None when the API cannot be asked about it."""
    value = entry.get("id") if isinstance(entry, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text.startswith("-") else text
        return int(text) if digits.isascii() and digits.isdigit() else None
    return value if isinstance(value, int) else None


def fingerprint(entry: Any) -> str:
    """A short stable name for an entry, so it is logged once, not at every poll."""
    text = json.dumps(entry, sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def split(entries: list[Any]) -> tuple[list[Any], list[Any]]:
    """(addressable, unaddressable) entries, in the API's order."""
    addressable = [e for e in entries if addressable_id(e) is not None]
    return addressable, [e for e in entries if addressable_id(e) is None]


def log_unaddressable(log, entries: list[Any], seen: set[str]) -> None:
    """Log each entry without a usable id once (``seen`` remembers which were logged)."""
    for entry in entries:
        key = fingerprint(entry)
        if key not in seen:
            seen.add(key)
            log.error("staged entry without a usable id, left alone (shift cannot be told about it): %.500r",
                      entry)
