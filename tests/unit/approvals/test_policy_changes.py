"""Changing the quorum policy is itself a change request (DESIGN invariant 5)."""

from datetime import timedelta

import pytest

from approvals.errors import RequestNotPending, SelfApprovalForbidden
from approvals.models import QuorumPolicy, RequestKind, RequestStatus
from approvals.policy import policy_values
from approvals.services import change_request_submit, quorum_policy_for
from audit.models import AuditEvent
from config.errors import ValidationFailed
from toggles.services import NoChange, StaleBaseVersion

from .conftest import (
    CRITICAL_BOOL,
    HIGH_ENUM,
    approve_all,
    db_state,
    decide,
    person,
    submit,
    submit_policy,
)

BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)
DEFAULTS = {
    "vendor.low": 1,
    "customer.low": 1,
    "vendor.high": 2,
    "customer.high": 2,
    "vendor.critical": 2,
    "customer.critical": 2,
    "vetoes_required": 1,
    "pending_lifetime_hours": 72,
    "apply_window_hours": 24,
}


def test_quorum_policy_for__first_use__created_at_defaults_and_audited(tenant):
    policy = quorum_policy_for(tenant)
    assert (policy.version, policy_values(policy)) == (1, DEFAULTS)
    event = AuditEvent.objects.get(action="quorum_policy.created")
    assert (event.target, event.data) == ("policy:demo", DEFAULTS)
    assert quorum_policy_for(tenant).pk == policy.pk
    assert AuditEvent.objects.filter(action="quorum_policy.created").count() == 1


def test_policy_change__raise_threshold__tightening_needs_one_approval(tenant, profile):
    cr = submit_policy(tenant, "vendor-reviewer-1", {"customer.critical": 3})
    assert (cr.kind, cr.profile_id, cr.directions, cr.is_loosening) == (
        RequestKind.POLICY,
        None,
        {"customer.critical": "tightening"},
        False,
    )
    assert (cr.required_vendor, cr.required_customer, cr.required_any) == (0, 0, 1)
    with pytest.raises(SelfApprovalForbidden):
        decide(cr, "vendor-reviewer-1")
    decide(cr, "customer-reviewer-1")
    assert (cr.status, cr.applied_version) == (RequestStatus.APPLIED, 2)
    policy = QuorumPolicy.objects.get(tenant=tenant)
    assert (policy.version, policy.customer_critical, policy.vendor_critical) == (2, 3, 2)
    event = AuditEvent.objects.get(action="quorum_policy.changed")
    assert event.data == {
        "version": 2,
        "change_request": cr.pk,
        "changes": {"customer.critical": {"from": 2, "to": 3}},
    }
    loosening = submit(tenant, profile, "vendor-admin", {CRITICAL_BOOL: True})
    assert (loosening.required_vendor, loosening.required_customer) == (2, 3)


def test_policy_change__lower_threshold__loosening_needs_both_critical_quorums(tenant):
    cr = submit_policy(tenant, "customer-admin", {"vendor.high": 1})
    assert (cr.directions, cr.is_loosening, cr.risk_tier) == (
        {"vendor.high": "loosening"},
        True,
        "critical",
    )
    assert (cr.required_vendor, cr.required_customer, cr.required_any) == (2, 2, 0)
    approve_all(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
    assert cr.status == RequestStatus.PENDING
    assert QuorumPolicy.objects.get(tenant=tenant).vendor_high == 2
    approve_all(cr, "customer-reviewer-2")
    assert cr.status == RequestStatus.APPLIED
    policy = QuorumPolicy.objects.get(tenant=tenant)
    assert (policy.version, policy.vendor_high) == (2, 1)


@pytest.mark.parametrize(
    ("changes", "directions"),
    [
        ({"vetoes_required": 2}, {"vetoes_required": "loosening"}),
        ({"pending_lifetime_hours": 24}, {"pending_lifetime_hours": "loosening"}),
        ({"apply_window_hours": 48}, {"apply_window_hours": "loosening"}),
        (
            {"vendor.critical": 3, "customer.low": 2},
            {"customer.low": "tightening", "vendor.critical": "tightening"},
        ),
        (
            {"vendor.critical": 3, "vendor.high": 1},
            {"vendor.critical": "tightening", "vendor.high": "loosening"},
        ),
    ],
)
def test_policy_change__direction__classified(tenant, changes, directions):
    cr = submit_policy(tenant, "vendor-admin", changes)
    assert cr.directions == directions
    assert cr.is_loosening is ("loosening" in directions.values())


def test_policy_change__hours__applied_as_durations(tenant):
    cr = submit_policy(tenant, "vendor-admin", {"pending_lifetime_hours": 24})
    approve_all(cr, *BOTH_PARTIES)
    policy = QuorumPolicy.objects.get(tenant=tenant)
    assert (policy.pending_lifetime, policy.apply_window) == (
        timedelta(hours=24),
        timedelta(hours=24),
    )


@pytest.mark.parametrize(
    ("changes", "error_class", "message"),
    [
        (
            {"vendor.low": 3},
            ValidationFailed,
            "vendor thresholds must not fall as risk rises (low 3, high 2, critical 2)",
        ),
        (
            {"customer.critical": 3, "customer.high": 4},
            ValidationFailed,
            "customer thresholds must not fall as risk rises (low 1, high 4, critical 3)",
        ),
        (
            {"quorum": 1},
            ValidationFailed,
            "unknown policy key 'quorum'; use one of vendor.low, customer.low, vendor.high, "
            "customer.high, vendor.critical, customer.critical, vetoes_required, "
            "pending_lifetime_hours, apply_window_hours",
        ),
        ({"vendor.low": "2"}, ValidationFailed, "'vendor.low' takes a whole number, not '2'"),
        ({"vendor.low": True}, ValidationFailed, "'vendor.low' takes a whole number, not True"),
        ({"vetoes_required": 0}, ValidationFailed, "'vetoes_required' must be between 1 and 20"),
        (
            {"pending_lifetime_hours": 0},
            ValidationFailed,
            "'pending_lifetime_hours' must be between 1 and 720 hours",
        ),
        ({}, ValidationFailed, "changes must be a non-empty object of {policy key: new value}"),
        ({"vendor.high": 2}, NoChange, "'vendor.high' is already 2; leave it out of the request"),
    ],
)
def test_policy_change__invalid__refused_with_message(tenant, changes, error_class, message):
    quorum_policy_for(tenant)
    before = db_state()
    with pytest.raises(error_class) as error:
        submit_policy(tenant, "vendor-admin", changes)
    assert type(error.value) is error_class
    assert str(error.value) == message
    assert error.value.status_code == 400
    assert db_state() == before


def test_policy_change__old_base_version__stale_base_refused(tenant):
    quorum_policy_for(tenant)
    before = db_state()
    with pytest.raises(StaleBaseVersion) as error:
        submit_policy(tenant, "vendor-admin", {"vendor.low": 2}, base_version=0)
    assert str(error.value) == (
        "the quorum policy is at version 1, not 0; rebuild the change on the current version"
    )
    assert error.value.status_code == 409
    assert db_state() == before


def test_policy_change__time_box__refused(tenant):
    quorum_policy_for(tenant)
    before = db_state()
    with pytest.raises(ValidationFailed) as error:
        change_request_submit(
            tenant=tenant,
            actor=person("vendor-admin"),
            changes={"vendor.high": 1},
            justification="temporary",
            base_version=1,
            time_box=timedelta(hours=1),
        )
    assert str(error.value) == "a time box applies to profile changes, not to the quorum policy"
    assert db_state() == before


def test_policy_change__another_policy_change_applies__pending_one_becomes_stale(tenant):
    first = submit_policy(tenant, "vendor-admin", {"vendor.critical": 3})
    second = submit_policy(tenant, "customer-admin", {"vendor.high": 1})
    decide(first, "customer-reviewer-1")
    assert first.status == RequestStatus.APPLIED
    second.refresh_from_db()
    assert (second.status, second.status_reason) == (
        RequestStatus.STALE,
        "the quorum policy moved to version 2 before the request was applied",
    )
    assert AuditEvent.objects.filter(
        action="change_request.stale", target=f"change_request:{second.pk}"
    ).exists()
    with pytest.raises(RequestNotPending):
        decide(second, "vendor-reviewer-1")
    assert QuorumPolicy.objects.get(tenant=tenant).vendor_high == 2


def test_policy_change__profile_change_applies__policy_request_unaffected(tenant, profile):
    policy_cr = submit_policy(tenant, "vendor-admin", {"vendor.critical": 3})
    tighten = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off"})
    decide(tighten, "vendor-reviewer-1")
    policy_cr.refresh_from_db()
    assert policy_cr.status == RequestStatus.PENDING
    decide(policy_cr, "vendor-reviewer-1")
    assert policy_cr.status == RequestStatus.APPLIED
