"""The migration model: the contract's payload parses; every malformed one gets one clear error."""

from __future__ import annotations

import json

import pytest

from shift_provider.contract.codes import Action, Mode, RunType, Status
from shift_provider.exceptions import MalformedMigrationError
from shift_provider.contract.models import DERIVED_FIELDS, CustomOptions, Migration, MigrationLifecycle, claimed_payload

GOOD = {
    "id": 43, "database": "appname_staging", "table": "employees",
    "ddl_statement": "alter table employees add column salary int(11)", "final_insert": "", "staged": True,
    "status": 0, "host": "localhost", "port": 3306, "runtype": 1, "run_host": None, "mode": 0, "action": 2,
    "custom_options": "{\"max_threads_running\": \"200\", \"max_replication_lag\":\"1\"}",
    "lock_version": 7, "cluster_name": "appname-001", "copy_percentage": None,
}


def with_(**changes):
    payload = dict(GOOD)
    for key, value in changes.items():
        if value is ...:
            payload.pop(key)
        else:
            payload[key] = value
    return payload


def test_contract_example_parses_with_named_codes():
    m = Migration.from_payload(GOOD)
    assert (m.id, m.status, m.runtype, m.mode, m.action) == (43, Status.PREPARING, RunType.LONG, Mode.TABLE, Action.ALTER)
    assert m.custom_options.max_threads_running == 200 and m.custom_options.max_replication_lag == 1
    assert m.final_insert_sql is None and m.uses_ptosc


def test_custom_options_defaults_when_null_or_missing():
    for raw in (None, "", "null", "{}"):
        assert Migration.from_payload(with_(custom_options=raw)).custom_options.max_threads_running == 200
    assert Migration.from_payload(with_(custom_options=...)).custom_options.max_replication_lag == 1


def test_pause_and_cancel_payloads_may_lack_runtype_mode_action():
    for status in (9, 11):
        m = Migration.from_payload(with_(status=status, runtype=..., mode=..., action=...))
        assert m.runtype is None and m.status == status


def test_string_numbers_from_the_api_are_accepted():
    m = Migration.from_payload(with_(id="43", port="3306", status="3", runtype="2"))
    assert (m.id, m.port, m.status, m.runtype) == (43, 3306, Status.COPY_IN_PROGRESS, RunType.SHORT)


def test_round_trip_keeps_custom_options_a_json_string():
    payload = Migration.from_payload(GOOD).to_payload()
    assert isinstance(payload["custom_options"], str)
    assert json.loads(payload["custom_options"])["max_threads_running"] == "200"
    assert Migration.from_payload(payload) == Migration.from_payload(GOOD)


MALFORMED = [
    ("not a dict", ["a list"], "must be a JSON object"),
    ("null payload", None, "must be a JSON object"),
    ("missing id", with_(id=...), "id is missing"),
    ("negative id", with_(id=-4), "id must be positive"),
    ("zero id", with_(id=0), "id must be positive"),
    ("float id", with_(id=4.5), "id must be an integer"),
    ("bool id", with_(id=True), "id must be an integer"),
    ("text id", with_(id="forty"), "id must be an integer"),
    ("missing database", with_(database=...), "database is missing"),
    ("numeric database", with_(database=12), "database must be a string"),
    ("empty table", with_(table=""), "table is empty"),
    ("long table", with_(table="t" * 65), "longer than 64"),
    ("backtick table", with_(table="a`b"), "NUL or backtick"),
    ("NUL database", with_(database="a\x00b"), "NUL or backtick"),
    ("padded table", with_(table=" t"), "leading or trailing spaces"),
    ("slash database", with_(database="../etc"), "path character"),
    ("missing ddl", with_(ddl_statement=...), "ddl_statement is missing"),
    ("empty ddl", with_(ddl_statement="  "), "ddl_statement is empty"),
    ("ddl not text", with_(ddl_statement=["alter"]), "ddl_statement must be a string"),
    ("enormous ddl", with_(ddl_statement="alter table employees add column x int" + " " * 70000), "longer than"),
    ("final insert not text", with_(final_insert=5), "final_insert must be a string"),
    ("missing status", with_(status=...), "status is missing"),
    ("null status", with_(status=None), "status is missing"),
    ("unknown status", with_(status=7), "status"),
    ("text status", with_(status="preparing"), "status must be a numeric code"),
    ("unknown runtype", with_(runtype=9), "runtype"),
    ("missing runtype at prepare", with_(runtype=...), "runtype is missing"),
    ("unknown mode", with_(mode=3), "mode"),
    ("unknown action", with_(action=5), "action"),
    ("missing host", with_(host=...), "host is missing"),
    ("host with spaces", with_(host="db; rm -rf /"), "host is not a valid host name"),
    ("missing port", with_(port=...), "port is missing"),
    ("port out of range", with_(port=70000), "port must be between 1 and 65535"),
    ("custom options not json", with_(custom_options="{nope"), "custom_options is not valid JSON"),
    ("custom options a list", with_(custom_options="[1, 2]"), "custom_options must be a JSON object"),
    ("custom options unknown key", with_(custom_options='{"drop_everything": "1"}'), "custom_options"),
    ("max_threads_running negative", with_(custom_options='{"max_threads_running": "-5"}'), "max_threads_running must be a positive integer"),
    ("max_replication_lag text", with_(custom_options='{"max_replication_lag": "1; DROP"}'), "max_replication_lag must be a positive integer"),
    ("relative config_path", with_(custom_options='{"config_path": "my.cnf"}'), "config_path must be an absolute file path"),
    ("bad recursion_method", with_(custom_options='{"recursion_method": "hosts --execute"}'), "recursion_method must be one of"),
    ("run_host not text", with_(run_host=12), "run_host must be a string or null"),
    ("lock_version text", with_(lock_version="v7"), "lock_version must be an integer"),
]


@pytest.mark.parametrize(("case", "payload", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_payloads_give_one_clear_error(case, payload, message):
    with pytest.raises(MalformedMigrationError) as info:
        Migration.from_payload(payload)
    assert message in str(info.value), str(info.value)
    if isinstance(payload, dict) and isinstance(payload.get("id"), int):
        assert info.value.migration_id == payload["id"]


def test_there_are_at_least_thirty_malformed_cases():
    assert len(MALFORMED) >= 30


# -- after the claim: Rails answers the bare row ---------------------------------------------------

def bare_row(**changes):
    """A row as show/unstage/next_step answer it: no table, host, port, mode or action."""
    row = {k: v for k, v in GOOD.items() if k not in DERIVED_FIELDS}
    row.update(runtype=0, error_message=None, **changes)
    return row


def test_a_bare_row_is_not_a_migration_but_has_a_lifecycle():
    with pytest.raises(MalformedMigrationError, match="table is missing; host is missing; port is missing"):
        Migration.from_payload(bare_row())
    lifecycle = MigrationLifecycle.from_answer(bare_row(status=3, staged=False, run_host="w1", copy_percentage=45))
    assert (lifecycle.status, lifecycle.staged, lifecycle.run_host, lifecycle.copy_percentage) == (
        Status.COPY_IN_PROGRESS, False, "w1", 45)


@pytest.mark.parametrize(("row", "message"), [
    ({"id": 1}, "status is missing"),
    ({"id": 1, "status": "copying"}, "status must be a numeric code"),
    ({"id": True, "status": 3}, "id must be an integer"),
    ({"id": 1, "status": 3, "run_host": 5}, "run_host must be a string or null"),
    ([1, 2], "not a migration row"),
])
def test_a_malformed_answer_is_one_clear_error(row, message):
    with pytest.raises(MalformedMigrationError, match=message):
        MigrationLifecycle.from_answer(row)


def test_the_claim_keeps_the_listed_target_and_takes_the_claims_lifecycle():
    listed = dict(GOOD, status=3, staged=True, run_host=None)
    claimed = bare_row(status=11, staged=False, lock_version=9, run_host="w2")
    merged = Migration.from_payload(claimed_payload(listed, claimed))
    assert (merged.table, merged.host, merged.port, merged.mode, merged.action) == (
        "employees", "localhost", 3306, Mode.TABLE, Action.ALTER)
    assert merged.runtype == RunType.LONG, "the runtype Rails decided in staged, not the row's undecided 0"
    assert (merged.status, merged.staged, merged.lock_version, merged.run_host) == (
        Status.PAUSING, False, 9, "w2")


@pytest.mark.parametrize("value", ["none", "processlist", "hosts", "dsn=D=percona,t=dsns", "dsn=t=dsns,D=percona"])
def test_recursion_methods_that_stay_on_the_cluster(value):
    assert CustomOptions.parse({"recursion_method": value}).recursion_method == value


@pytest.mark.parametrize("value", [
    "dsn=h=2130706433,P=3307,D=percona,t=dsns",  # another server, by a decimal IP
    "dsn=h=evil.example,D=x,t=y", "dsn=D=x,t=y,P=3307", "dsn=D=x,t=y,S=/tmp/other.sock",
    "dsn=D=x,t=y,u=root", "dsn=D=x,t=y,p=secret", "dsn=D=x,t=y,F=/etc/other.cnf", "dsn=D=x",
    "dsn=t=y", "dsn=D=x,t=y,t=z", "dsn=D=x,t=y,", "dsn=", "DSN=D=x,t=y", "hosts,processlist",
])
def test_recursion_methods_that_could_send_the_login_elsewhere_are_refused(value):
    with pytest.raises(ValueError, match="recursion_method must be one of"):
        CustomOptions.parse({"recursion_method": value})
