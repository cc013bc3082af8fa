"""shift's answer for a migration, as the console needs it: cached for a moment, never raising.

Every open Migration view and Shift page asks every few seconds; one ``show`` per
migration per ``CACHE_SECONDS`` in this api-server process, whoever asks, bounds what
the console costs the shift API. A page must render even when shift cannot answer: the
error is part of the answer (and the run's own facts are still shown).
"""

from __future__ import annotations

import threading
import time

from shift_provider.console.summary import ShiftAnswer

CACHE_SECONDS = 2.0
TIMEOUT_SECONDS = 5.0
_cache: dict[int, tuple[float, ShiftAnswer]] = {}
_lock = threading.Lock()


def _ask(migration_id: int) -> ShiftAnswer:
    from shift_provider.exceptions import ShiftApiError
    from shift_provider.hooks.shift_api import ShiftApiHook
    from shift_provider.settings import get_settings

    try:
        hook = ShiftApiHook(get_settings().api_conn_id, retry_limit=1, timeout=TIMEOUT_SECONDS,
                            max_retry_seconds=TIMEOUT_SECONDS)
        shown = hook.show(migration_id)
    except ShiftApiError as exc:
        if exc.status_code == 404:
            return ShiftAnswer(deleted=True, error=f"migration {migration_id} does not exist in shift (deleted)")
        return ShiftAnswer(error=str(exc))
    except Exception as exc:  # a broken connection or settings file: said on the page, not a 500
        return ShiftAnswer(error=f"the shift API could not be asked: {exc}")
    migration = shown.get("migration") if isinstance(shown, dict) else None
    actions = shown.get("available_actions") if isinstance(shown, dict) else None
    if not isinstance(migration, dict):
        return ShiftAnswer(error=f"the shift API answered without a migration: {str(shown)[:200]}")
    return ShiftAnswer(migration=migration, actions=[str(a) for a in actions] if isinstance(actions, list) else [])


def answer(migration_id: int | None) -> ShiftAnswer:
    """The migration as shift shows it now (at most ``CACHE_SECONDS`` old)."""
    if migration_id is None:
        return ShiftAnswer(error="the run's conf names no migration id")
    now = time.monotonic()
    with _lock:
        cached = _cache.get(migration_id)
        if cached is not None and cached[0] > now:
            return cached[1]
    fresh = _ask(migration_id)
    with _lock:
        _cache[migration_id] = (time.monotonic() + CACHE_SECONDS, fresh)
        for key in [k for k, (expires, _) in _cache.items() if expires <= now]:
            del _cache[key]
    return fresh


def shift_url(migration_id: int | None) -> str | None:
    """The migration's page in the shift UI (``shift_ui_url_template`` in the settings)."""
    if migration_id is None:
        return None
    from shift_provider.settings import get_settings

    try:
        return get_settings().shift_ui_url_template.format(id=int(migration_id))
    except Exception:  # an unreadable settings file: no link rather than no page
        return None
