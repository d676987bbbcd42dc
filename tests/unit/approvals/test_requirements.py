"""What a request needs: both quorums for a loosening, one approval for a tightening, floors."""

import pytest

from approvals.errors import SelfApprovalForbidden
from approvals.models import QuorumPolicy, RequestStatus
from approvals.policy import policy_validate_changes
from approvals.selectors import change_request_progress
from approvals.services import quorum_policy_for
from config.errors import ValidationFailed

from .conftest import (
    CRITICAL_BOOL,
    HIGH_BOOL,
    HIGH_ENUM,
    LOW_TEXT,
    approve_all,
    db_state,
    decide,
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


def required(cr) -> tuple:
    return (
        cr.risk_tier,
        cr.is_loosening,
        cr.required_vendor,
        cr.required_customer,
        cr.required_any,
    )


# Loosening: vendor AND customer quorum for the highest tier touched ----------------------


def test_submit__low_tier_loosening__needs_low_quorum_of_both(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {LOW_TEXT: "SECRET"})
    assert required(cr) == ("low", True, 1, 1, 0)
    assert cr.directions == {LOW_TEXT: "loosening"}


def test_submit__low_and_critical_keys__needs_critical_quorum_of_both(tenant, profile):
    raise_critical = submit_policy(tenant, "vendor-admin", {"vendor.critical": 3})
    decide(raise_critical, "customer-reviewer-1")
    assert raise_critical.status == RequestStatus.APPLIED

    cr = submit(tenant, profile, "vendor-admin", {LOW_TEXT: "SECRET", CRITICAL_BOOL: True})
    assert required(cr) == ("critical", True, 3, 2, 0)


def test_decide__critical_loosening_with_low_quorum__stays_pending(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {LOW_TEXT: "SECRET", CRITICAL_BOOL: True})
    approve_all(cr, "vendor-reviewer-1", "customer-reviewer-1")
    assert cr.status == RequestStatus.PENDING
    approve_all(cr, "vendor-reviewer-2")
    assert cr.status == RequestStatus.PENDING
    approve_all(cr, "customer-reviewer-2")
    assert cr.status == RequestStatus.APPLIED
    assert values_of(profile)[CRITICAL_BOOL] is True


@pytest.mark.parametrize("party", ["vendor", "customer"])
def test_decide__loosening_with_one_party_only__never_applies(tenant, profile, party):
    cr = submit(tenant, profile, "customer-admin", {HIGH_ENUM: "full"})
    approve_all(cr, f"{party}-reviewer-1", f"{party}-reviewer-2")
    assert cr.status == RequestStatus.PENDING
    assert change_request_progress(cr)["met"] is False
    assert values_of(profile)[HIGH_ENUM] == "with_human_review"


def test_submit__tightening_and_loosening_mixed__needs_both_quorums(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off", HIGH_BOOL: False})
    assert cr.directions == {HIGH_ENUM: "tightening", HIGH_BOOL: "loosening"}
    assert required(cr) == ("high", True, 2, 2, 0)
    approve_all(cr, "customer-reviewer-1")
    assert cr.status == RequestStatus.PENDING


# Tightening only: one approval of either party, never the requester ---------------------


@pytest.mark.parametrize("approver", ["vendor-reviewer-2", "customer-reviewer-1"])
def test_decide__tightening_only__one_approval_of_either_party_applies(tenant, profile, approver):
    cr = submit(tenant, profile, "vendor-reviewer-1", {HIGH_ENUM: "off"})
    assert required(cr) == ("high", False, 0, 0, 1)
    with pytest.raises(SelfApprovalForbidden):
        decide(cr, "vendor-reviewer-1")
    assert cr.status == RequestStatus.PENDING
    decide(cr, approver)
    assert (cr.status, cr.applied_version) == (RequestStatus.APPLIED, 2)
    assert values_of(profile)[HIGH_ENUM] == "off"


# Floors ----------------------------------------------------------------------------------


def test_submit__policy_below_raised_floor__floor_applies(tenant, profile, settings):
    settings.REDLINE_QUORUM_FLOOR = {"low": 1, "high": 3, "critical": 3}
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    assert required(cr) == ("high", True, 3, 3, 0)
    assert QuorumPolicy.objects.get(tenant=tenant).vendor_high == 2


def test_submit__critical_policy_of_one__still_needs_floor_of_two(tenant, profile, settings):
    settings.REDLINE_QUORUM_FLOOR = {"low": 1, "high": 1, "critical": 1}
    lower = submit_policy(
        tenant,
        "vendor-admin",
        {"vendor.high": 1, "customer.high": 1, "vendor.critical": 1, "customer.critical": 1},
    )
    assert required(lower) == ("critical", True, 2, 2, 0)
    approve_all(lower, *BOTH_PARTIES)
    assert lower.status == RequestStatus.APPLIED
    assert QuorumPolicy.objects.get(tenant=tenant).vendor_critical == 1
    assert required(submit(tenant, profile, "vendor-admin", {CRITICAL_BOOL: True})) == (
        "critical",
        True,
        1,
        1,
        0,
    )

    settings.REDLINE_QUORUM_FLOOR = {"low": 1, "high": 1, "critical": 2}
    cr = submit(tenant, profile, "customer-admin", {CRITICAL_BOOL: True})
    assert required(cr) == ("critical", True, 2, 2, 0)
    approve_all(cr, "vendor-reviewer-1", "customer-reviewer-1")
    assert cr.status == RequestStatus.PENDING


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vendor.critical": 1}, "'vendor.critical' must be between the floor of 2 and 20"),
        ({"customer.low": 0}, "'customer.low' must be between the floor of 1 and 20"),
        ({"customer.high": 21}, "'customer.high' must be between the floor of 1 and 20"),
    ],
)
def test_submit_policy__threshold_outside_floor_and_cap__refused(tenant, changes, message):
    quorum_policy_for(tenant)
    before = db_state()
    with pytest.raises(ValidationFailed) as error:
        submit_policy(tenant, "vendor-admin", changes)
    assert str(error.value) == message
    assert db_state() == before


def test_policy_validate__floor_raised_in_settings__refuses_old_minimum(tenant, settings):
    policy = QuorumPolicy.objects.create(tenant=tenant)
    settings.REDLINE_QUORUM_FLOOR = {"low": 2, "high": 2, "critical": 2}
    with pytest.raises(ValidationFailed) as error:
        policy_validate_changes(policy, {"vendor.low": 1})
    assert str(error.value) == "'vendor.low' must be between the floor of 2 and 20"
