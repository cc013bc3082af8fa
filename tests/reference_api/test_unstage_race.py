"""Twenty runners racing to claim one staged migration: exactly one wins."""

from __future__ import annotations

import threading

from shift_provider.hooks.shift_api import ShiftApiHook

RUNNERS = 20


def _race(migration_id: int) -> list:
    barrier = threading.Barrier(RUNNERS)
    hooks = [ShiftApiHook(retry_limit=3, retry_delay=0.05) for _ in range(RUNNERS)]
    for hook in hooks:  # connect first, so the race is about the claim and not about set-up
        hook.show(migration_id)
    results: list = [None] * RUNNERS

    def runner(index: int) -> None:
        barrier.wait()
        try:
            results[index] = hooks[index].unstage(migration_id)
        except Exception as exc:  # recorded, so the assertion below shows it
            results[index] = exc

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(RUNNERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_twenty_runners_one_winner(shift_api):
    for _ in range(3):
        migration_id = shift_api.create("ALTER TABLE t ADD COLUMN c INT")["id"]
        before = shift_api.migration(migration_id)["lock_version"]
        results = _race(migration_id)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors
        winners = [r for r in results if not r.stolen]
        stolen = [r for r in results if r.stolen]
        assert len(winners) == 1 and len(stolen) == RUNNERS - 1
        assert winners[0].payload["id"] == migration_id and winners[0].payload["staged"] is False
        assert all(r.payload is None and not r.uncertain for r in stolen)
        after = shift_api.migration(migration_id)
        assert after["staged"] is False and after["lock_version"] == before + 1, "only one claim was written"
