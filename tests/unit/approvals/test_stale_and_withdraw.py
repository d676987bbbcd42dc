"""A request built on a base version never applies once the profile has moved on (invariant 4)."""

import pytest

from approvals.errors import NotAllowed, RequestNotPending
from approvals.models import RequestStatus
from approvals.services import change_request_withdraw
from audit.models import AuditEvent
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create

from .conftest import (
    HIGH_BOOL,
    HIGH_ENUM,
    approve_all,
    audit_actions,
    db_state,
    decide,
    person,
    submit,
    values_of,
)


def test_apply__other_request_on_same_base__becomes_stale_at_once(tenant, profile):
    a = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off"})
    b = submit(tenant, profile, "customer-admin", {HIGH_BOOL: False})
    decide(b, "vendor-reviewer-1")
    decide(a, "customer-reviewer-1")
    assert (a.status, a.applied_version) == (RequestStatus.APPLIED, 2)
    b.refresh_from_db()
    assert (b.status, b.status_reason) == (
        RequestStatus.STALE,
        "demo/default moved to version 2 before the request (built on version 1) was applied",
    )
    assert audit_actions(f"change_request:{b.pk}")[-1] == "change_request.stale"
    event = AuditEvent.objects.filter(action="change_request.stale").get()
    assert event.data["from"] == RequestStatus.PENDING

    before = db_state(profile)
    with pytest.raises(RequestNotPending) as error:
        decide(b, "vendor-reviewer-2")
    assert str(error.value) == (
        f"change request #{b.pk} is stale; only pending requests take decisions"
    )
    assert db_state(profile) == before
    assert values_of(profile)[HIGH_BOOL] is True


def test_apply__profile_moved_on_without_staling__final_approval_marks_stale(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    approve_all(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
    profile_version_create(
        profile=profile,
        changes={HIGH_BOOL: True, HIGH_ENUM: "off"},
        actor=None,
        reason="one-party tightening",
        kind=VersionKind.TIGHTENING,
    )
    decide(cr, "customer-reviewer-2")
    assert (cr.status, cr.applied_version) == (RequestStatus.STALE, None)
    assert cr.status_reason == (
        "demo/default moved to version 2 before the request (built on version 1) was applied"
    )
    assert audit_actions(f"change_request:{cr.pk}")[-2:] == [
        "change_request.approved",
        "change_request.stale",
    ]
    assert profile.versions.count() == 2
    assert values_of(profile)[HIGH_ENUM] == "off"


def test_apply__other_profile_moved_on__request_still_applies(tenant, profile, make_tenant):
    other = Profile.objects.get(tenant=make_tenant("acme"))
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off"})
    profile_version_create(
        profile=other, changes={HIGH_ENUM: "off"}, actor=None, reason="x", kind=VersionKind.BRAKE
    )
    decide(cr, "vendor-reviewer-1")
    assert cr.status == RequestStatus.APPLIED


def test_withdraw__requester__withdrawn_and_audited(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    decide(cr, "vendor-reviewer-1")
    change_request_withdraw(change_request_id=cr.pk, actor=person("vendor-admin"), reason=" typo ")
    cr.refresh_from_db()
    assert (cr.status, cr.status_reason) == (RequestStatus.WITHDRAWN, "typo")
    assert audit_actions(f"change_request:{cr.pk}")[-1] == "change_request.withdrawn"
    with pytest.raises(RequestNotPending):
        decide(cr, "vendor-reviewer-2")


@pytest.mark.parametrize("username", ["vendor-reviewer-1", "customer-admin"])
def test_withdraw__not_the_requester__not_allowed(tenant, profile, username):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        change_request_withdraw(change_request_id=cr.pk, actor=person(username))
    assert str(error.value) == "only the requester may withdraw a change request"
    assert db_state(profile) == before


def test_withdraw__applied_request__not_pending(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off"})
    decide(cr, "vendor-reviewer-1")
    before = db_state(profile)
    with pytest.raises(RequestNotPending) as error:
        change_request_withdraw(change_request_id=cr.pk, actor=person("vendor-admin"))
    assert str(error.value) == (
        f"change request #{cr.pk} is applied; only pending requests can be withdrawn"
    )
    assert db_state(profile) == before


def test_withdraw_then_resubmit__edit_is_a_new_request(tenant, profile):
    first = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})
    change_request_withdraw(change_request_id=first.pk, actor=person("vendor-admin"))
    second = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "open_source_only"})
    decide(second, "customer-reviewer-1")
    assert second.status == RequestStatus.APPLIED
    assert values_of(profile)[HIGH_ENUM] == "open_source_only"
    first.refresh_from_db()
    assert first.status == RequestStatus.WITHDRAWN
