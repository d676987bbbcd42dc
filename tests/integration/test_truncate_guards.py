"""TRUNCATE fires no row trigger; PostgreSQL still refuses to empty a guarded table, directly,
among other tables, or through CASCADE from a table that owns its rows."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from approvals.models import ChangeRequest, Channel, Decision
from approvals.services import change_request_decide, change_request_submit
from audit.models import AuditEvent
from toggles.models import Capability, Profile, ProfileVersion

GUARDED = {
    "toggles_capability": "red lines can never be removed",
    "toggles_profileversion": "profile versions are append-only",
    "audit_auditevent": "audit events are append-only",
    "approvals_changerequest": "change requests are kept forever",
    "approvals_decision": "decisions are append-only",
}


@pytest.fixture
def history(demo):
    """The demo with one decided request, so every guarded table holds rows."""
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    users = get_user_model().objects
    request = change_request_submit(
        tenant=demo.tenant,
        profile=profile,
        actor=users.get(username="vendor-admin"),
        changes={"intel.foreign_analysis": "open_source_only"},
        justification="narrow foreign-intelligence help",
        base_version=profile.current_version,
    )
    change_request_decide(
        change_request_id=request.pk,
        actor=users.get(username="customer-reviewer-1"),
        verdict="approve",
        channel=Channel.CONSOLE,
    )
    return counts()


def counts() -> dict[str, int]:
    return {
        "toggles_capability": Capability.objects.count(),
        "red lines": Capability.objects.filter(is_red_line=True).count(),
        "toggles_profileversion": ProfileVersion.objects.count(),
        "audit_auditevent": AuditEvent.objects.count(),
        "approvals_changerequest": ChangeRequest.objects.count(),
        "approvals_decision": Decision.objects.count(),
    }


def truncate_refusal(sql: str) -> str:
    with pytest.raises(IntegrityError) as error, transaction.atomic(), connection.cursor() as cur:
        # The test's transaction holds deferred foreign-key checks, which TRUNCATE refuses
        # to run beside; a psql session in autocommit has none.
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(sql)
    assert error.value.__cause__.sqlstate == "23001"
    return error.value.__cause__.diag.message_primary


def test_history_fixture__every_guarded_table_holds_rows(history):
    assert all(history[table] > 0 for table in GUARDED)
    assert history["red lines"] == 2


@pytest.mark.parametrize("table", sorted(GUARDED))
def test_truncate__guarded_table__refused_and_nothing_removed(history, table):
    assert truncate_refusal(f"TRUNCATE {table} CASCADE") == (
        f"TRUNCATE of {table} refused: {GUARDED[table]}"
    )
    assert counts() == history


@pytest.mark.parametrize(
    "parent",
    ["toggles_profile", "tenants_tenant", "auth_user"],
)
def test_truncate_cascade__from_a_table_owning_guarded_rows__refused(history, parent):
    message = truncate_refusal(f"TRUNCATE {parent} CASCADE")
    assert message.startswith("TRUNCATE of ")
    assert message.split(" ")[2] in GUARDED
    assert counts() == history


def test_truncate__several_tables_at_once__refused(history):
    message = truncate_refusal("TRUNCATE tenants_deployment, toggles_capability CASCADE")
    assert message == "TRUNCATE of toggles_capability refused: red lines can never be removed"
    assert counts() == history


def test_truncate__unguarded_table__allowed(history):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE toggles_deploymentdelivery")
    assert counts() == history


def guard_triggers() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgrelid::regclass::text, tgenabled FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgtype & 32 <> 0"
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_flush_of_the_test_suite__empties_the_tables_and_leaves_the_guards_enabled(catalog):
    """The suite's flush between transactional tests lifts the guards inside its own
    transaction only (tests/postgresql)."""
    assert Capability.objects.count() > 0
    call_command("flush", interactive=False, verbosity=0)
    assert Capability.objects.count() == 0
    assert guard_triggers() == dict.fromkeys(GUARDED, "O")
    assert truncate_refusal("TRUNCATE toggles_capability") == (
        "TRUNCATE of toggles_capability refused: red lines can never be removed"
    )
