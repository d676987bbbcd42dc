"""Who is told what, and when: mail tasks queued once the transaction commits.

Called from the approval services, so this module stays free of imports that lead back
to them; the tasks (which render through approvals.emails) are imported when queued.
"""

from functools import partial

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q

from approvals.models import ChangeRequest
from tenants.models import Membership, Tenant
from tenants.selectors import reviewers_for

User = get_user_model()


def review_recipients(cr: ChangeRequest) -> list[Membership]:
    """Every reviewer whose decision can count, never the requester.

    A loosening needs both parties and a tightening either, and any reviewer's rejection
    can veto: so every current reviewer of both parties, with an address to write to.
    """
    return [
        membership
        for membership in reviewers_for(tenant=cr.tenant).order_by("party", "user__username")
        if membership.user_id != cr.requester_id and membership.user.email
    ]


def outcome_recipients(tenant: Tenant, *, requester_id: int | None = None) -> list[User]:
    """Both parties (every active member with an address) and the requester."""
    who = Q(memberships__tenant=tenant)
    if requester_id is not None:
        who |= Q(pk=requester_id)
    users = User.objects.filter(who, is_active=True).exclude(email="").distinct()
    return list(users.order_by("username"))


def notify_review_requested(cr: ChangeRequest) -> None:
    """Each reviewer gets their own mail and personal link once the request is committed."""
    from approvals.tasks import send_review_request

    for membership in review_recipients(cr):
        transaction.on_commit(partial(send_review_request.delay, cr.pk, membership.user_id))


def notify_request_closed(cr: ChangeRequest) -> None:
    """The requester and both parties learn that a request was applied, rejected, expired,
    went stale or was withdrawn."""
    from approvals.tasks import send_request_closed

    for user in outcome_recipients(cr.tenant, requester_id=cr.requester_id):
        transaction.on_commit(partial(send_request_closed.delay, cr.pk, user.pk))


def notify_brake_pulled(*, tenant: Tenant, event_id: int) -> None:
    """Both parties learn that the brake was pulled, as the audit event records it."""
    from approvals.tasks import send_brake_pulled

    for user in outcome_recipients(tenant):
        transaction.on_commit(partial(send_brake_pulled.delay, event_id, user.pk))


def notify_rollout_paused(*, tenant: Tenant, event_id: int) -> None:
    """Both parties learn that a failed canary paused a rollout."""
    from approvals.tasks import send_rollout_paused

    for user in outcome_recipients(tenant):
        transaction.on_commit(partial(send_rollout_paused.delay, event_id, user.pk))
