"""End-to-end flows of the approval engine against committed data: audit in the same
transaction as every state change, and a chain that `verify_audit` accepts at the end."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction

from approvals.models import ChangeRequest, RequestStatus
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
    change_requests_sweep,
    quorum_policy_for,
)
from audit.models import AuditEvent
from audit.services import audit_verify
from toggles.models import Profile, ProfileVersion, VersionKind
from toggles.selectors import effective_config

User = get_user_model()
HIGH_ENUM = "intel.foreign_analysis"
HIGH_INT = "intel.bulk_ingestion_cap_records"
HIGH_BOOL = "intel.domestic_pii_redaction"
BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)
pytestmark = pytest.mark.django_db(transaction=True)

# The audit action each status move writes, by the status it moves to.
STATUS_EVENTS = {status: f"change_request.{status}" for status in RequestStatus.values}


def person(username: str):
    return User.objects.get(username=username)


def submit(profile, username, changes, **extra):
    profile.refresh_from_db()
    return change_request_submit(
        tenant=profile.tenant,
        profile=profile,
        actor=person(username),
        changes=changes,
        justification="exercise",
        base_version=profile.current_version,
        **extra,
    )


def decide(cr, username, verdict="approve"):
    return change_request_decide(
        change_request_id=cr.pk, actor=person(username), verdict=verdict, channel="console"
    )


def status_path(cr: ChangeRequest) -> list[str]:
    """The statuses the request went through, read back from the audit log alone."""
    actions = AuditEvent.objects.filter(target=f"change_request:{cr.pk}").values_list(
        "action", flat=True
    )
    moves = {event: status for status, event in STATUS_EVENTS.items()}
    return ["pending"] + [moves[a] for a in actions if a in moves and a != "change_request.pending"]


def verify_audit_output() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue().strip()


@pytest.fixture
def profile(demo):
    return Profile.objects.get(tenant=demo.tenant, name="default")


def test_flows__every_kind_of_change__each_status_move_audited_and_chain_verifies(profile):
    tenant = profile.tenant
    applied = submit(profile, "vendor-admin", {HIGH_ENUM: "full"})
    stale = submit(profile, "customer-admin", {HIGH_BOOL: False})
    for name in BOTH_PARTIES:
        decide(applied, name)
    rejected = submit(profile, "customer-admin", {HIGH_INT: 500_000})
    decide(rejected, "vendor-reviewer-2", "reject")
    withdrawn = submit(profile, "vendor-reviewer-1", {HIGH_INT: 600_000})
    change_request_withdraw(change_request_id=withdrawn.pk, actor=person("vendor-reviewer-1"))
    grant = submit(profile, "customer-admin", {HIGH_INT: 900_000}, time_box=timedelta(hours=1))
    for name in BOTH_PARTIES:
        decide(grant, name)
    braked = submit(profile, "vendor-admin", {HIGH_BOOL: False})
    brake_pull(tenant=tenant, actor=person("customer-reviewer-2"), reason="drill", keys=[HIGH_ENUM])
    expired = submit(profile, "vendor-admin", {HIGH_BOOL: False})
    policy = change_request_submit(
        tenant=tenant,
        actor=person("customer-admin"),
        changes={"vendor.critical": 3},
        justification="stricter",
        base_version=quorum_policy_for(tenant).version,
    )
    decide(policy, "vendor-reviewer-1")
    grant.refresh_from_db()
    result = change_requests_sweep(now=grant.revert_at + timedelta(hours=72))
    assert (result.expired, result.reverted) == ([expired.pk], [grant.pk])

    expected = {
        applied: ["pending", "approved", "applied"],
        stale: ["pending", "stale"],
        rejected: ["pending", "rejected"],
        withdrawn: ["pending", "withdrawn"],
        grant: ["pending", "approved", "applied"],
        braked: ["pending", "stale"],
        expired: ["pending", "expired"],
        policy: ["pending", "approved", "applied"],
    }
    for cr, path in expected.items():
        cr.refresh_from_db()
        assert (cr.status, status_path(cr)) == (path[-1], path)
    kinds = list(
        ProfileVersion.objects.filter(profile=profile)
        .order_by("number")
        .values_list("kind", flat=True)
    )
    assert kinds == [
        VersionKind.INITIAL,
        VersionKind.CHANGE_REQUEST,
        VersionKind.CHANGE_REQUEST,
        VersionKind.BRAKE,
        VersionKind.GRANT_REVERT,
    ]
    profile.refresh_from_db()
    values = effective_config(profile=profile)["values"]
    assert (values[HIGH_ENUM], values[HIGH_INT]) == ("off", 100_000)
    checked, broken = audit_verify()
    assert broken is None
    assert checked == AuditEvent.objects.count()
    assert verify_audit_output() == f"audit chain verifies: {checked} events"


def test_decide__outer_transaction_rolled_back__no_version_no_audit_no_status_change(profile):
    cr = submit(profile, "vendor-admin", {HIGH_ENUM: "full"})
    for name in BOTH_PARTIES[:3]:
        decide(cr, name)
    events, versions = AuditEvent.objects.count(), ProfileVersion.objects.count()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        decide(cr, "customer-reviewer-2")
        assert ChangeRequest.objects.get(pk=cr.pk).status == RequestStatus.APPLIED
        assert AuditEvent.objects.count() > events
        raise Abort

    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING
    assert (AuditEvent.objects.count(), ProfileVersion.objects.count()) == (events, versions)
    assert audit_verify()[1] is None


def test_brake__outer_transaction_rolled_back__audit_and_stale_marks_go_with_it(profile):
    cr = submit(profile, "vendor-admin", {HIGH_BOOL: False})
    events = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        brake_pull(tenant=profile.tenant, actor=person("vendor-admin"), reason="drill")
        raise RuntimeError("abort")
    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING
    assert AuditEvent.objects.count() == events
    assert Profile.objects.get(pk=profile.pk).current_version == 1


def test_sweep__one_request_fails__logged_and_listed_and_the_rest_still_swept(profile, caplog):
    """A request the sweep cannot lock (here: another session holds it past the lock
    timeout) fails alone; the next sweep takes it."""
    held = submit(profile, "vendor-admin", {HIGH_BOOL: False})
    free = submit(profile, "customer-admin", {HIGH_INT: 500_000})
    locked, release = threading.Event(), threading.Event()

    def hold_the_row():
        try:
            with transaction.atomic():
                ChangeRequest.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    try:
        assert locked.wait(10)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        result = change_requests_sweep(now=free.expires_at + timedelta(seconds=1))
    finally:
        release.set()
        holder.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert (result.expired, result.failed) == ([free.pk], [held.pk])
    held.refresh_from_db()
    free.refresh_from_db()
    assert (held.status, free.status) == (RequestStatus.PENDING, RequestStatus.EXPIRED)
    (record,) = [r for r in caplog.records if r.name == "approvals.services"]
    assert record.getMessage() == (
        f"sweep: change request #{held.pk} failed; the next sweep retries it"
    )
    assert "LockNotAvailable" in record.exc_text

    again = change_requests_sweep(now=held.expires_at + timedelta(seconds=1))
    assert (again.expired, again.failed) == ([held.pk], [])
    assert verify_audit_output().startswith("audit chain verifies: ")
