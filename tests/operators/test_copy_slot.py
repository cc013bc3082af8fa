"""One copy per cluster: the copy's named lock on the cluster, taken by one holder, freed with its connection."""

from __future__ import annotations

import uuid


def test_one_holder_per_cluster_and_the_slot_frees_with_its_connection(shift_settings, primary, database):
    from shift_provider.mysql.copy_slot import CopySlot, lock_name
    from shift_provider.hooks.cluster import ShiftClusterHook
    from shift_provider.contract.models import Migration

    settings = shift_settings()
    cluster = f"slot-{uuid.uuid4().hex[:8]}"  # a name no other test's copy uses

    def migration(mid):
        return Migration.from_payload({"id": mid, "database": database, "table": "t", "status": 3, "runtype": 1,
                                       "ddl_statement": "ALTER TABLE t ADD COLUMN c INT", "host": primary.host,
                                       "port": primary.port, "mode": 0, "action": 2, "cluster_name": cluster})

    first, second = migration(1), migration(2)
    assert lock_name(first) == lock_name(second) == f"shift_copy:{cluster}"
    holder = CopySlot(ShiftClusterHook(first, settings), lock_name(first))
    other = CopySlot(ShiftClusterHook(second, settings), lock_name(second))
    assert holder.take() is None
    busy = other.take()
    assert isinstance(busy, int) and busy > 0  # the holder's connection id
    holder.release()
    assert other.take() is None  # free again once the holder's connection closed
    other.release()
