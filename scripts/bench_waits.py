"""Benchmark: what many waiting migration runs cost the shift API, and how fast a new one is claimed.

`make bench` runs it after scripts/bench.py. Starts its own reference shift API, files
`--waits` migrations and moves each to awaiting approval (as if prepared), then runs, in
one event loop as one triggerer would, a `MigrationWaitTrigger` per migration (each run's
`await_start`) and the sensor DAG's `StagedMigrationsTrigger`. It counts the `staged`
requests over `--intervals` poll intervals (all triggers share one poll: at most one per
interval), the one `show` each wait makes when it starts, then files a new migration and
times until the sensor's trigger fires for it (the claim follows at once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def say(message: str) -> None:
    print(message, flush=True)


async def measure(api, waits: list[int], interval: float, intervals: int) -> dict:
    from shift_provider.triggers.migration_wait import MigrationWaitTrigger
    from shift_provider.triggers.shared_poll import SharedStagedPoller
    from shift_provider.triggers.staged import StagedMigrationsTrigger

    staged_calls: list[float] = []

    def counting(conn_id: str, poll: float):
        from shift_provider.hooks.shift_api import ShiftApiHook

        staged_calls.append(time.monotonic())
        return ShiftApiHook(conn_id).staged()

    SharedStagedPoller.fetch = staticmethod(counting)
    triggers = [MigrationWaitTrigger(migration_id=mid, act_on=[3, 9], poll_interval=interval, check_interval=3600)
                for mid in waits]
    sensor = StagedMigrationsTrigger(poll_interval=interval)
    generators = [t.run() for t in [*triggers, sensor]]
    tasks = [asyncio.ensure_future(g.__anext__()) for g in generators]
    await asyncio.sleep(interval)  # the waits' first look at their migration
    start, first = time.monotonic(), len(staged_calls)
    await asyncio.sleep(interval * intervals)
    steady = len([t for t in staged_calls[first:] if t >= start])
    filed = await asyncio.to_thread(lambda: api.create("ALTER TABLE t ADD COLUMN fresh INT", "bench", cluster="bench"))
    filed_at = time.monotonic()
    done, _ = await asyncio.wait([tasks[-1]], timeout=60)
    claimed_after = time.monotonic() - filed_at if done else None
    fired = [t for t in tasks[:-1] if t.done()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for generator in generators:
        await generator.aclose()
    event = tasks[-1].result() if done else None
    return {"staged_requests": steady, "intervals": intervals, "waits_fired": len(fired),
            "claimed_after": claimed_after,
            "new_listed": bool(event and filed["id"] in [m["id"] for m in event.payload["staged"]])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=300)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--intervals", type=int, default=10)
    args = parser.parse_args(argv)
    from tests.support.shift_api import ShiftApiServer

    api = ShiftApiServer({"bench": ("127.0.0.1", 3306)}).start()
    os.environ["AIRFLOW_CONN_SHIFT_API"] = api.url
    try:
        waits = []
        for i in range(args.waits):
            mid = api.create(f"ALTER TABLE t{i} ADD COLUMN c INT", "bench", cluster="bench")["id"]
            api.machine("unstage", mid)
            api.machine("next_step", mid)  # awaiting approval: its run's await_start waits
            waits.append(mid)
        result = asyncio.run(measure(api, waits, args.interval, args.intervals))
    finally:
        api.stop()
    say(f"waiting runs: {args.waits}, one triggerer, poll interval {args.interval}s")
    say(f"staged requests in {result['intervals']} intervals: {result['staged_requests']} "
        f"({result['staged_requests'] / result['intervals']:.2f} per interval; each wait also read its own "
        f"migration once when it started, and then every wait_check_interval)")
    claimed = result["claimed_after"]
    say(f"new migration seen by the sensor's trigger (and claimed) after: "
        f"{'never' if claimed is None else f'{claimed:.1f}s'}")
    say(f"waits woken by the new migration: {result['waits_fired']} (must be 0)")
    ok = (result["staged_requests"] <= result["intervals"] + 1 and claimed is not None and claimed <= 10
          and result["new_listed"] and result["waits_fired"] == 0)
    say("OK" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
