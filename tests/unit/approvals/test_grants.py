"""Time-boxed grants revert by themselves, without quorum, and never undo a later brake."""

from datetime import timedelta

import pytest

from approvals.models import RequestStatus
from approvals.services import brake_pull, change_requests_sweep
from audit.models import AuditEvent
from toggles.models import ProfileVersion, VersionKind

from .conftest import HIGH_BOOL, HIGH_ENUM, HIGH_INT, approve_all, decide, person, submit, values_of

BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)


@pytest.fixture
def grant(tenant, profile):
    cr = submit(
        tenant,
        profile,
        "customer-admin",
        {HIGH_ENUM: "full", HIGH_INT: 2_000_000},
        time_box=timedelta(hours=8),
    )
    approve_all(cr, *BOTH_PARTIES)
    assert (cr.status, cr.applied_version) == (RequestStatus.APPLIED, 2)
    assert cr.revert_at == cr.applied_at + timedelta(hours=8)
    return cr


def test_sweep__grant_before_its_time__not_reverted(grant, profile):
    result = change_requests_sweep(now=grant.revert_at - timedelta(seconds=1))
    assert result.reverted == []
    assert profile.versions.count() == 2
    assert values_of(profile)[HIGH_ENUM] == "full"


def test_sweep__grant_time_up__revert_version_restores_previous_values(grant, profile):
    result = change_requests_sweep(now=grant.revert_at)
    assert result.reverted == [grant.pk]
    version = ProfileVersion.objects.get(profile=profile, number=3)
    assert (version.kind, version.source, version.reason, version.created_by) == (
        VersionKind.GRANT_REVERT,
        f"change_request:{grant.pk}",
        f"time box of change request #{grant.pk} ended",
        None,
    )
    assert values_of(profile)[HIGH_ENUM] == "with_human_review"
    assert values_of(profile)[HIGH_INT] == 100_000
    grant.refresh_from_db()
    assert (grant.status, grant.reverted_at) == (RequestStatus.APPLIED, grant.revert_at)
    event = AuditEvent.objects.get(action="grant.reverted")
    assert event.data == {
        "version": 3,
        "restored": {HIGH_ENUM: "with_human_review", HIGH_INT: 100_000},
    }
    assert change_requests_sweep(now=grant.revert_at + timedelta(days=1)).reverted == []
    assert profile.versions.count() == 3


def test_sweep__brake_changed_a_granted_key__revert_leaves_it_alone(tenant, grant, profile):
    brake_pull(tenant=tenant, actor=person("vendor-reviewer-1"), reason="leak", keys=[HIGH_ENUM])
    assert values_of(profile)[HIGH_ENUM] == "off"
    change_requests_sweep(now=grant.revert_at)
    version = ProfileVersion.objects.get(profile=profile, number=4)
    assert version.kind == VersionKind.GRANT_REVERT
    assert values_of(profile)[HIGH_ENUM] == "off"
    assert values_of(profile)[HIGH_INT] == 100_000
    assert AuditEvent.objects.get(action="grant.reverted").data["restored"] == {HIGH_INT: 100_000}


def test_sweep__brake_changed_every_granted_key__no_version_and_skip_audited(
    tenant, grant, profile
):
    brake_pull(
        tenant=tenant, actor=person("customer-admin"), reason="leak", keys=[HIGH_ENUM, HIGH_INT]
    )
    result = change_requests_sweep(now=grant.revert_at)
    assert result.reverted == [grant.pk]
    assert profile.versions.count() == 3
    assert (values_of(profile)[HIGH_ENUM], values_of(profile)[HIGH_INT]) == ("off", 0)
    event = AuditEvent.objects.get(action="grant.revert_skipped")
    assert event.data == {"reason": "every granted setting has changed since"}


def test_sweep__grant_reverted__pending_requests_on_old_version_become_stale(
    tenant, grant, profile
):
    pending = submit(tenant, profile, "vendor-admin", {HIGH_BOOL: False})
    change_requests_sweep(now=grant.revert_at)
    pending.refresh_from_db()
    assert (pending.status, pending.status_reason) == (
        RequestStatus.STALE,
        "demo/default moved to version 3 before the request (built on version 2) was applied",
    )


def test_sweep__grant_rejected_before_apply__nothing_to_revert(tenant, profile):
    cr = submit(tenant, profile, "customer-admin", {HIGH_ENUM: "full"}, time_box=timedelta(hours=1))
    decide(cr, "vendor-reviewer-1", "reject")
    result = change_requests_sweep(now=cr.created_at + timedelta(days=10))
    assert (result.reverted, result.expired) == ([], [])
    assert profile.versions.count() == 1
