"""Expiry is a real state change made by the sweep (and by a late decision), always audited."""

from datetime import timedelta

import pytest

from approvals.errors import RequestNotPending
from approvals.models import Decision, RequestStatus
from approvals.services import change_request_withdraw, change_requests_sweep
from audit.models import AuditEvent
from toggles.models import Capability

from .conftest import (
    HIGH_ENUM,
    HIGH_INT,
    approve_all,
    audit_actions,
    decide,
    frozen_clock,
    person,
    submit,
    submit_policy,
    values_of,
)

BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)


@pytest.fixture
def pending(tenant, profile):
    return submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})


def test_sweep__pending_before_its_lifetime__left_pending(pending):
    result = change_requests_sweep(now=pending.expires_at - timedelta(seconds=1))
    assert (result.expired, result.applied, result.reverted) == ([], [], [])
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_sweep__pending_past_its_lifetime__expired_and_audited(pending, profile):
    decide(pending, "vendor-reviewer-1")
    result = change_requests_sweep(now=pending.created_at + timedelta(hours=72))
    assert result.expired == [pending.pk]
    pending.refresh_from_db()
    assert (pending.status, pending.status_reason) == (
        RequestStatus.EXPIRED,
        f"no quorum before {pending.expires_at.isoformat()}",
    )
    event = AuditEvent.objects.filter(target=f"change_request:{pending.pk}").last()
    assert (event.action, event.actor, event.data) == (
        "change_request.expired",
        "system",
        {"from": "pending", "reason": pending.status_reason},
    )
    assert profile.versions.count() == 1
    assert change_requests_sweep(now=pending.expires_at + timedelta(days=1)).expired == []


def test_sweep__withdrawn_request_past_its_lifetime__left_withdrawn(pending):
    change_request_withdraw(change_request_id=pending.pk, actor=person("vendor-admin"))
    assert change_requests_sweep(now=pending.expires_at + timedelta(days=1)).expired == []
    pending.refresh_from_db()
    assert pending.status == RequestStatus.WITHDRAWN


def test_decide__pending_past_its_lifetime__refused_and_request_marked_expired(pending, profile):
    decide(pending, "vendor-reviewer-1")
    with (
        frozen_clock(pending.expires_at + timedelta(minutes=1)),
        pytest.raises(RequestNotPending) as error,
    ):
        decide(pending, "vendor-reviewer-2")
    assert str(error.value) == (
        f"change request #{pending.pk} expired at {pending.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    pending.refresh_from_db()
    assert pending.status == RequestStatus.EXPIRED
    assert audit_actions(f"change_request:{pending.pk}") == [
        "change_request.submitted",
        "decision.approve",
        "change_request.expired",
    ]
    assert Decision.objects.filter(change_request=pending).count() == 1
    assert profile.versions.count() == 1


def test_decide__all_approvals_just_before_expiry__applied(pending, profile):
    with frozen_clock(pending.expires_at - timedelta(seconds=1)):
        approve_all(pending, *BOTH_PARTIES)
    assert pending.status == RequestStatus.APPLIED
    assert values_of(profile)[HIGH_ENUM] == "full"


def test_submit__under_shorter_policy_lifetime__expires_sooner(tenant, profile):
    shorter = submit_policy(tenant, "vendor-admin", {"pending_lifetime_hours": 2})
    approve_all(shorter, *BOTH_PARTIES)
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    assert cr.expires_at - cr.created_at == timedelta(hours=2)
    assert change_requests_sweep(now=cr.created_at + timedelta(hours=2)).expired == [cr.pk]


# Approved but not applied: apply retries and the apply window ----------------------------


def narrow_catalog_maximum(key: str, maximum: float) -> None:
    """An operator edits the catalog row so an approved value no longer fits."""
    capability = Capability.objects.get(key=key)
    capability.maximum = maximum
    capability.save()


@pytest.fixture
def stuck(tenant, profile):
    """A request approved by both parties whose value the catalog no longer allows."""
    cr = submit(tenant, profile, "vendor-admin", {HIGH_INT: 5_000_000})
    approve_all(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
    narrow_catalog_maximum(HIGH_INT, 1_000_000)
    decide(cr, "customer-reviewer-2")
    assert cr.status == RequestStatus.APPROVED
    assert cr.status_reason == f"not applied: '{HIGH_INT}' must be at most 1000000, not 5000000"
    assert audit_actions(f"change_request:{cr.pk}")[-2:] == [
        "change_request.approved",
        "change_request.apply_failed",
    ]
    assert profile.versions.count() == 1
    return cr


def test_sweep__approved_past_apply_window__expired(stuck, profile):
    result = change_requests_sweep(now=stuck.approved_at + timedelta(hours=24))
    assert result.expired == [stuck.pk]
    stuck.refresh_from_db()
    assert (stuck.status, stuck.status_reason) == (
        RequestStatus.EXPIRED,
        "approved but not applied within 1 day, 0:00:00",
    )
    assert audit_actions(f"change_request:{stuck.pk}")[-1] == "change_request.expired"
    assert profile.versions.count() == 1


def test_sweep__approved_within_window_after_catalog_fixed__applied(stuck, profile):
    narrow_catalog_maximum(HIGH_INT, 10_000_000)
    result = change_requests_sweep(now=stuck.approved_at + timedelta(hours=1))
    assert (result.applied, result.expired) == ([stuck.pk], [])
    stuck.refresh_from_db()
    assert (stuck.status, stuck.applied_version) == (RequestStatus.APPLIED, 2)
    assert values_of(profile)[HIGH_INT] == 5_000_000


def test_sweep__approved_still_unfit__stays_approved_and_retried(stuck):
    result = change_requests_sweep(now=stuck.approved_at + timedelta(hours=1))
    assert (result.applied, result.expired) == ([], [])
    stuck.refresh_from_db()
    assert stuck.status == RequestStatus.APPROVED
    assert audit_actions(f"change_request:{stuck.pk}")[-1] == "change_request.apply_failed"
