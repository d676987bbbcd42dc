"""Who may decide, and what a decision counts for (issue 3, Decisions; DESIGN invariant 3)."""

import pytest
from django.db import IntegrityError, transaction

from approvals.errors import (
    AlreadyDecided,
    DigestMismatch,
    NotAllowed,
    RequestNotPending,
    SelfApprovalForbidden,
)
from approvals.models import Channel, Decision, RequestStatus, Verdict
from approvals.selectors import change_request_progress
from approvals.services import change_request_submit
from audit.models import AuditEvent
from config.errors import ValidationFailed
from tenants.models import Party, Role
from tenants.services import membership_remove, membership_set
from toggles.models import ProfileVersion

from .conftest import (
    HIGH_ENUM,
    audit_actions,
    db_state,
    decide,
    person,
    submit,
    submit_policy,
    values_of,
)

LOOSEN = {HIGH_ENUM: "full"}  # high tier: vendor 2 AND customer 2


@pytest.fixture
def loosening(tenant, profile):
    return submit(tenant, profile, "vendor-admin", LOOSEN)


@pytest.fixture
def superuser(make_user):
    return make_user("root", is_superuser=True, is_staff=True)


# The requester never decides -------------------------------------------------------------


@pytest.mark.parametrize("verdict", [Verdict.APPROVE, Verdict.REJECT])
def test_decide__requester_on_own_request__self_approval_forbidden(tenant, profile, verdict):
    cr = submit(tenant, profile, "vendor-reviewer-1", LOOSEN)
    before = db_state(profile)
    with pytest.raises(SelfApprovalForbidden) as error:
        decide(cr, "vendor-reviewer-1", verdict)
    assert str(error.value) == (
        "you requested this change; the requester never decides on their own request"
    )
    assert error.value.status_code == 403
    assert db_state(profile) == before


def test_decide__superuser_requester_with_reviewer_role__self_approval_forbidden(
    tenant, profile, superuser
):
    membership_set(tenant=tenant, user=superuser, party=Party.VENDOR, role=Role.REVIEWER)
    cr = submit(tenant, profile, superuser, LOOSEN)
    before = db_state(profile)
    with pytest.raises(SelfApprovalForbidden):
        decide(cr, superuser)
    assert db_state(profile) == before


def test_decide__superuser_without_membership__not_allowed(loosening, profile, superuser):
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        decide(loosening, superuser)
    assert str(error.value) == "root is not a reviewer of demo"
    assert db_state(profile) == before


def test_submit__superuser_without_membership__not_allowed(tenant, profile, superuser):
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        submit(tenant, profile, superuser, LOOSEN)
    assert str(error.value) == "root may not propose changes in demo"
    assert db_state(profile) == before


# One decision per person per request -----------------------------------------------------


@pytest.mark.parametrize("second", [Verdict.APPROVE, Verdict.REJECT])
def test_decide__same_reviewer_twice__already_decided(loosening, profile, second):
    decide(loosening, "vendor-reviewer-1")
    before = db_state(profile)
    with pytest.raises(AlreadyDecided) as error:
        decide(loosening, "vendor-reviewer-1", second)
    assert str(error.value) == (
        f"vendor-reviewer-1 has already decided on change request #{loosening.pk}"
    )
    assert error.value.status_code == 409
    assert db_state(profile) == before
    assert loosening.status == RequestStatus.PENDING


def test_decision_table__second_row_same_reviewer__unique_constraint_refuses(loosening):
    decide(loosening, "vendor-reviewer-1")
    first = Decision.objects.get(change_request=loosening)
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        Decision.objects.create(
            change_request=loosening,
            reviewer=first.reviewer,
            party=first.party,
            verdict=Verdict.APPROVE,
            channel=Channel.API,
            request_digest=loosening.digest,
        )
    assert error.value.__cause__.diag.constraint_name == "one_decision_per_reviewer"
    assert Decision.objects.filter(change_request=loosening).count() == 1


# Only members whose role grants review_change --------------------------------------------


@pytest.mark.parametrize("username", ["vendor-admin", "customer-admin", "auditor"])
def test_decide__member_without_review_role__not_allowed(tenant, profile, username):
    cr = submit(tenant, profile, "vendor-reviewer-1", LOOSEN)
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        decide(cr, username)
    assert str(error.value) == f"{username} is not a reviewer of demo"
    assert db_state(profile) == before


def test_decide__viewer__not_allowed(tenant, profile, loosening, make_user):
    viewer = make_user("customer-viewer")
    membership_set(tenant=tenant, user=viewer, party=Party.CUSTOMER, role=Role.VIEWER)
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        decide(loosening, viewer)
    assert str(error.value) == "customer-viewer is not a reviewer of demo"
    assert db_state(profile) == before


def test_decide__reviewer_of_another_tenant__not_allowed(loosening, profile, make_tenant):
    make_tenant("acme")
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        decide(loosening, "acme-customer-reviewer-1")
    assert str(error.value) == "acme-customer-reviewer-1 is not a reviewer of demo"
    assert db_state(profile) == before


def test_decide__deactivated_reviewer__not_allowed(loosening, profile):
    reviewer = person("customer-reviewer-1")
    reviewer.is_active = False
    reviewer.save()
    with pytest.raises(NotAllowed):
        decide(loosening, reviewer)
    assert not Decision.objects.filter(change_request=loosening).exists()


# A person counts only for their own party ------------------------------------------------


def test_decide__vendor_reviewers_beyond_quorum__never_fill_customer_quorum(
    tenant, profile, loosening, make_user
):
    membership_set(
        tenant=tenant, user=make_user("vendor-reviewer-3"), party=Party.VENDOR, role=Role.REVIEWER
    )
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "vendor-reviewer-3"):
        decide(loosening, name)
    decide(loosening, "customer-reviewer-1")
    assert loosening.status == RequestStatus.PENDING
    progress = change_request_progress(loosening)
    assert (progress["vendor"], progress["customer"]) == (
        {"approvals": 3, "required": 2},
        {"approvals": 1, "required": 2},
    )
    assert profile.versions.count() == 1

    decide(loosening, "customer-reviewer-2")
    assert loosening.status == RequestStatus.APPLIED


def test_decide__reviewer_moved_to_other_party__earlier_vote_no_longer_counts(
    tenant, profile, loosening
):
    switcher = person("vendor-reviewer-1")
    decide(loosening, switcher)
    membership_remove(tenant=tenant, user=switcher)
    membership_set(tenant=tenant, user=switcher, party=Party.CUSTOMER, role=Role.REVIEWER)
    for name in ("vendor-reviewer-2", "customer-reviewer-1"):
        decide(loosening, name)
    progress = change_request_progress(loosening)
    assert (progress["vendor"]["approvals"], progress["customer"]["approvals"]) == (1, 1)
    with pytest.raises(AlreadyDecided):
        decide(loosening, switcher)
    decide(loosening, "customer-reviewer-2")
    assert loosening.status == RequestStatus.PENDING
    assert profile.versions.count() == 1


# Losing the membership before apply ------------------------------------------------------


def test_decide__approver_removed_before_last_approval__request_not_applied(
    tenant, profile, loosening, make_user
):
    decide(loosening, "vendor-reviewer-1")
    membership_remove(tenant=tenant, user=person("vendor-reviewer-1"))
    for name in ("vendor-reviewer-2", "customer-reviewer-1", "customer-reviewer-2"):
        decide(loosening, name)
    assert loosening.status == RequestStatus.PENDING
    assert values_of(profile)[HIGH_ENUM] == "with_human_review"
    assert profile.versions.count() == 1

    membership_set(
        tenant=tenant, user=make_user("vendor-reviewer-3"), party=Party.VENDOR, role=Role.REVIEWER
    )
    decide(loosening, "vendor-reviewer-3")
    assert loosening.status == RequestStatus.APPLIED
    assert values_of(profile)[HIGH_ENUM] == "full"


def test_decide__approver_demoted_to_admin_before_last_approval__request_not_applied(
    tenant, profile, loosening
):
    decide(loosening, "customer-reviewer-1")
    membership_set(
        tenant=tenant, user=person("customer-reviewer-1"), party=Party.CUSTOMER, role=Role.ADMIN
    )
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-2"):
        decide(loosening, name)
    assert loosening.status == RequestStatus.PENDING
    assert profile.versions.count() == 1


# Veto ------------------------------------------------------------------------------------


def test_decide__one_rejection__request_rejected_naming_who_and_why(loosening, profile):
    decide(loosening, "vendor-reviewer-1")
    decide(loosening, "customer-reviewer-2", Verdict.REJECT, comment="  no legal basis cited  ")
    assert loosening.status == RequestStatus.REJECTED
    assert (
        loosening.status_reason
        == "rejected by customer-reviewer-2 (customer): no legal basis cited"
    )
    assert profile.versions.count() == 1
    assert audit_actions(f"change_request:{loosening.pk}") == [
        "change_request.submitted",
        "decision.approve",
        "decision.reject",
        "change_request.rejected",
    ]
    before = db_state(profile)
    with pytest.raises(RequestNotPending) as error:
        decide(loosening, "vendor-reviewer-2")
    assert str(error.value) == (
        f"change request #{loosening.pk} is rejected; only pending requests take decisions"
    )
    assert db_state(profile) == before


def test_decide__rejection_of_a_tightening__request_rejected(tenant, profile):
    cr = submit(tenant, profile, "vendor-reviewer-1", {HIGH_ENUM: "off"})
    decide(cr, "customer-reviewer-1", Verdict.REJECT)
    assert (cr.status, cr.status_reason) == (
        RequestStatus.REJECTED,
        "rejected by customer-reviewer-1 (customer)",
    )
    assert profile.versions.count() == 1


def test_decide__policy_needing_two_vetoes__one_rejection_keeps_it_pending(tenant, profile):
    policy_cr = submit_policy(tenant, "vendor-admin", {"vetoes_required": 2})
    assert policy_cr.directions == {"vetoes_required": "loosening"}
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1"):
        decide(policy_cr, name)
    decide(policy_cr, "customer-reviewer-2")
    assert policy_cr.status == RequestStatus.APPLIED

    cr = submit(tenant, profile, "vendor-admin", LOOSEN)
    assert cr.vetoes_required == 2
    decide(cr, "vendor-reviewer-1", Verdict.REJECT, comment="too broad")
    assert cr.status == RequestStatus.PENDING
    decide(cr, "customer-reviewer-1", Verdict.REJECT, comment="no authority")
    assert cr.status == RequestStatus.REJECTED
    assert cr.status_reason == (
        "rejected by vendor-reviewer-1 (vendor): too broad; "
        "rejected by customer-reviewer-1 (customer): no authority"
    )


def test_decide__policy_needing_two_vetoes__one_rejection_does_not_block_quorum(tenant, profile):
    policy_cr = submit_policy(tenant, "vendor-admin", {"vetoes_required": 2})
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1"):
        decide(policy_cr, name)
    decide(policy_cr, "customer-reviewer-2")

    cr = submit(tenant, profile, "customer-admin", LOOSEN)
    decide(cr, "vendor-reviewer-1", Verdict.REJECT)
    for name in ("vendor-reviewer-2", "customer-reviewer-1", "customer-reviewer-2"):
        decide(cr, name)
    assert cr.status == RequestStatus.PENDING
    membership_set(
        tenant=tenant, user=person("vendor-admin"), party=Party.VENDOR, role=Role.REVIEWER
    )
    decide(cr, "vendor-admin")
    assert cr.status == RequestStatus.APPLIED


# What a decision records -----------------------------------------------------------------


def test_decide__approval__records_party_channel_digest_and_audit_event(loosening):
    decide(loosening, "customer-reviewer-1", comment=" looks right ", channel=Channel.EMAIL)
    decision = Decision.objects.get(change_request=loosening)
    assert (
        decision.reviewer.username,
        decision.party,
        decision.verdict,
        decision.comment,
        decision.channel,
        decision.request_digest,
    ) == ("customer-reviewer-1", "customer", "approve", "looks right", "email", loosening.digest)
    event = AuditEvent.objects.filter(action="decision.approve").get()
    assert (event.actor, event.target, event.data) == (
        "user:customer-reviewer-1",
        f"change_request:{loosening.pk}",
        {
            "party": "customer",
            "channel": "email",
            "comment": "looks right",
            "digest": loosening.digest,
        },
    )


def test_decide__digest_of_other_content__digest_mismatch(loosening, profile):
    before = db_state(profile)
    with pytest.raises(DigestMismatch) as error:
        decide(loosening, "vendor-reviewer-1", seen_digest="sha256:" + "0" * 64)
    assert str(error.value) == (
        f"change request #{loosening.pk} is not the content you reviewed; "
        "reload it and decide again"
    )
    assert db_state(profile) == before


def test_decide__unknown_verdict__validation_failed(loosening, profile):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        decide(loosening, "vendor-reviewer-1", "abstain")
    assert str(error.value) == "verdict must be 'approve' or 'reject'"
    assert db_state(profile) == before


def test_decide__submitted_by_admin__admin_cannot_review_but_may_propose(tenant, profile):
    cr = change_request_submit(
        tenant=tenant,
        profile=profile,
        actor=person("customer-admin"),
        changes={HIGH_ENUM: "off"},
        justification="tighten",
        base_version=1,
    )
    decide(cr, "vendor-reviewer-2")
    assert cr.status == RequestStatus.APPLIED
    assert ProfileVersion.objects.filter(profile=profile).count() == 2
