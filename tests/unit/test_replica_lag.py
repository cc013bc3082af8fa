"""Which replicas the checksum checks for lag: pt-osc's own recursion methods, read the same way."""

from __future__ import annotations

from shift_provider.mysql.replica_lag import DEFAULT_METHODS, Replica, methods_of, parse_dsn_row


def test_methods_in_pt_osc_order():
    assert methods_of(None) == DEFAULT_METHODS == ("processlist", "hosts")
    assert methods_of("hosts") == ("hosts",)
    assert methods_of("none") == ("none",)
    assert methods_of("dsn=D=percona,t=dsns") == ("dsn=D=percona,t=dsns",)


def test_a_dsn_row_gives_host_and_port_and_nothing_else():
    assert parse_dsn_row("h=10.0.0.7,P=3307") == Replica("10.0.0.7", 3307)
    assert parse_dsn_row("h=db-replica-2") == Replica("db-replica-2", 3306)
    # A row's user and password are never taken: the runner logs in to a replica as itself.
    assert parse_dsn_row("h=r1,P=3306,u=admin,p=secret") == Replica("r1", 3306)
    assert parse_dsn_row("P=3306") is None
    assert parse_dsn_row("h=r1,P=x") is None
