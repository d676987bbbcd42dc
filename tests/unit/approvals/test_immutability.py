"""PostgreSQL refuses edits of submitted content, illegal status moves and decision edits."""

import pytest
from django.db import IntegrityError, transaction

from approvals.models import ChangeRequest, Decision, RequestStatus
from approvals.services import change_request_withdraw

from .conftest import HIGH_ENUM, decide, person, submit, trigger_refusal


@pytest.fixture
def pending(tenant, profile):
    return submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "full"})


@pytest.fixture
def applied(tenant, profile):
    cr = submit(tenant, profile, "vendor-admin", {HIGH_ENUM: "off"})
    decide(cr, "customer-reviewer-1")
    assert cr.status == RequestStatus.APPLIED
    return cr


def immutable(cr) -> str:
    return f"change request #{cr.pk} is immutable once submitted; withdraw it and submit a new one"


def stored(cr) -> dict:
    return ChangeRequest.objects.filter(pk=cr.pk).values().get()


def orm_refusal(instance) -> str:
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        instance.save()
    assert error.value.__cause__.sqlstate == "23001"
    return error.value.__cause__.diag.message_primary


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("justification", "a different reason"),
        ("changes", {HIGH_ENUM: "off"}),
        ("previous", {HIGH_ENUM: "off"}),
        ("required_vendor", 0),
        ("required_any", 1),
        ("is_loosening", False),
        ("digest", "sha256:" + "0" * 64),
        ("base_version", 7),
    ],
)
def test_change_request_save__content_changed__trigger_refuses(pending, field, value):
    before = stored(pending)
    setattr(pending, field, value)
    assert orm_refusal(pending) == immutable(pending)
    assert stored(pending) == before


def test_change_request_raw_sql__justification_changed__trigger_refuses(pending):
    before = stored(pending)
    message = trigger_refusal(
        "UPDATE approvals_changerequest SET justification = %s WHERE id = %s",
        ["edited after review", pending.pk],
    )
    assert message == immutable(pending)
    assert stored(pending) == before


def test_change_request_raw_sql__changes_and_digest_rewritten_together__trigger_refuses(pending):
    before = stored(pending)
    message = trigger_refusal(
        "UPDATE approvals_changerequest SET changes = %s, digest = %s WHERE id = %s",
        ['{"intel.foreign_analysis": "off"}', "sha256:" + "1" * 64, pending.pk],
    )
    assert message == immutable(pending)
    assert stored(pending) == before


@pytest.mark.parametrize("target", ["pending", "approved", "rejected", "stale"])
def test_change_request_raw_sql__applied_moved_back__trigger_refuses(applied, target):
    before = stored(applied)
    message = trigger_refusal(
        "UPDATE approvals_changerequest SET status = %s WHERE id = %s", [target, applied.pk]
    )
    assert message == f"change request #{applied.pk} cannot move from applied to {target}"
    assert stored(applied) == before


def test_change_request_save__withdrawn_set_pending__trigger_refuses(pending):
    change_request_withdraw(change_request_id=pending.pk, actor=person("vendor-admin"))
    pending.refresh_from_db()
    before = stored(pending)
    pending.status = RequestStatus.PENDING
    assert orm_refusal(pending) == (
        f"change request #{pending.pk} cannot move from withdrawn to pending"
    )
    assert stored(pending) == before


def test_change_request_raw_sql__pending_straight_to_applied__trigger_refuses(pending):
    message = trigger_refusal(
        "UPDATE approvals_changerequest SET status = 'applied' WHERE id = %s", [pending.pk]
    )
    assert message == f"change request #{pending.pk} cannot move from pending to applied"
    assert stored(pending)["status"] == RequestStatus.PENDING


def test_change_request_delete__any_status__trigger_refuses(pending):
    message = trigger_refusal("DELETE FROM approvals_changerequest WHERE id = %s", [pending.pk])
    assert message == f"change requests are kept forever: delete of request #{pending.pk} refused"
    assert ChangeRequest.objects.filter(pk=pending.pk).exists()


def test_decision_save__verdict_changed__trigger_refuses(pending):
    decide(pending, "vendor-reviewer-1")
    decision = Decision.objects.get(change_request=pending)
    decision.verdict = "reject"
    assert (
        orm_refusal(decision)
        == f"decisions are append-only: UPDATE of decision {decision.pk} refused"
    )
    assert Decision.objects.get(pk=decision.pk).verdict == "approve"


@pytest.mark.parametrize(
    ("sql", "operation"),
    [
        ("UPDATE approvals_decision SET comment = 'edited' WHERE id = %s", "UPDATE"),
        ("UPDATE approvals_decision SET reviewer_id = reviewer_id WHERE id = %s", "UPDATE"),
        ("DELETE FROM approvals_decision WHERE id = %s", "DELETE"),
    ],
)
def test_decision_raw_sql__update_or_delete__trigger_refuses(pending, sql, operation):
    decide(pending, "vendor-reviewer-1", comment="fine")
    decision = Decision.objects.get(change_request=pending)
    before = Decision.objects.filter(pk=decision.pk).values().get()
    message = trigger_refusal(sql, [decision.pk])
    assert message == f"decisions are append-only: {operation} of decision {decision.pk} refused"
    assert Decision.objects.filter(pk=decision.pk).values().get() == before


def test_change_request_save__status_only_legal_move__allowed(pending):
    """The trigger guards content and moves, not the status columns the services write."""
    pending.status = RequestStatus.WITHDRAWN
    pending.status_reason = "withdrawn by hand"
    pending.save(update_fields=["status", "status_reason"])
    assert stored(pending)["status"] == RequestStatus.WITHDRAWN
