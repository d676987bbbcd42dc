"""What each mail says, and sending it: plain text with an HTML alternative, one per person.

The send functions are what the Celery tasks call; each loads by id and checks again,
because things may have moved between the commit and the worker.
"""

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from approvals.models import ChangeRequest, RequestKind, RequestStatus, Verdict
from approvals.notifications import review_recipients
from approvals.review_links import review_link_issue, review_link_url
from approvals.selectors import change_request_progress
from audit.models import AuditEvent
from tenants.models import Tenant
from tenants.selectors import party_of
from toggles.models import Capability
from toggles.values import value_text

User = get_user_model()

POLICY_TITLES = {
    "vetoes_required": "Rejections needed to veto a request",
    "pending_lifetime_hours": "Hours a request stays open",
    "apply_window_hours": "Hours to apply an approved request",
}


@dataclass(frozen=True)
class ChangeRow:
    key: str
    title: str
    old: str
    new: str
    direction: str
    risk_tier: str


def person(user) -> str:
    name = user.get_full_name()
    return f"{name} ({user.get_username()})" if name else user.get_username()


def _policy_title(key: str) -> str:
    if key in POLICY_TITLES:
        return POLICY_TITLES[key]
    party, tier = key.split(".")
    return f"{party.title()} approvals needed for {tier}-risk changes"


def change_rows(cr: ChangeRequest) -> list[ChangeRow]:
    """Each change old -> new, marked tightening or loosening, with its risk tier."""
    if cr.kind == RequestKind.POLICY:
        titles = {key: (_policy_title(key), cr.risk_tier) for key in cr.changes}
    else:
        titles = {
            c.key: (c.title, c.risk_tier) for c in Capability.objects.filter(key__in=cr.changes)
        }
    return [
        ChangeRow(
            key=key,
            title=titles[key][0],
            old=value_text(cr.previous[key]),
            new=value_text(new),
            direction=cr.directions[key],
            risk_tier=titles[key][1],
        )
        for key, new in sorted(cr.changes.items())
    ]


def asked(cr: ChangeRequest) -> str:
    """What the request asks, in a few words: "loosen 2 safety settings"."""
    verb = "loosen" if cr.is_loosening else "tighten"
    if cr.kind == RequestKind.POLICY:
        return f"{verb} the quorum policy"
    count = len(cr.changes)
    return f"{verb} {count} safety setting{'' if count == 1 else 's'}"


def request_context(cr: ChangeRequest) -> dict:
    """What a reviewer needs to judge a request, for mails and the review page."""
    return {
        "cr": cr,
        "tenant": cr.tenant,
        "asked": asked(cr),
        "requester": person(cr.requester),
        "requester_party": party_of(user=cr.requester, tenant=cr.tenant),
        "rows": change_rows(cr),
        "progress": change_request_progress(cr)["summary"],
        "decisions": [
            {
                "who": person(d.reviewer),
                "party": d.party,
                "verdict": d.verdict,
                "comment": d.comment,
                "at": d.created_at,
            }
            for d in cr.decisions.select_related("reviewer")
        ],
        "vetoes_required": cr.vetoes_required,
    }


def _message(*, subject: str, template: str, context: dict, to) -> EmailMultiAlternatives:
    context = {**context, "site_url": settings.SITE_URL.rstrip("/"), "recipient": person(to)}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"email/{template}.txt", context),
        to=[to.email],
        headers={"Auto-Submitted": "auto-generated"},
    )
    message.attach_alternative(render_to_string(f"email/{template}.html", context), "text/html")
    return message


# Review requests ---------------------------------------------------------------------------


def review_request_message(*, cr: ChangeRequest, reviewer, party: str, url: str):
    return _message(
        subject=f"Approve or reject: {asked(cr)} of {cr.tenant.name} (request #{cr.pk})",
        template="review_request",
        context={**request_context(cr), "party": party, "url": url},
        to=reviewer,
    )


def review_request_send(*, change_request_id: int, reviewer_id: int) -> bool:
    """Issue one reviewer's link and mail it; False when there is nothing (more) to send.

    The link row commits only if the mail went out, so a retry after a failure sends a
    fresh link, and a retry after a success sends nothing.
    """
    with transaction.atomic():
        cr = (
            ChangeRequest.objects.select_related("tenant", "profile", "requester")
            .filter(pk=change_request_id)
            .first()
        )
        if cr is None or cr.status != RequestStatus.PENDING or cr.expires_at <= timezone.now():
            return False
        membership = next((m for m in review_recipients(cr) if m.user_id == reviewer_id), None)
        if membership is None:
            return False
        token = review_link_issue(change_request=cr, membership=membership)
        if token is None:
            return False
        review_request_message(
            cr=cr, reviewer=membership.user, party=membership.party, url=review_link_url(token)
        ).send()
    return True


# Outcomes ----------------------------------------------------------------------------------

CLOSED_SUBJECTS = {
    RequestStatus.APPLIED: "Applied",
    RequestStatus.REJECTED: "Rejected",
    RequestStatus.EXPIRED: "Expired",
    RequestStatus.STALE: "Out of date",
    RequestStatus.WITHDRAWN: "Withdrawn",
}


def request_closed_message(*, cr: ChangeRequest, recipient):
    context = request_context(cr)
    context["rejections"] = [d for d in context["decisions"] if d["verdict"] == Verdict.REJECT]
    return _message(
        subject=(
            f"{CLOSED_SUBJECTS[cr.status]}: request #{cr.pk} to {asked(cr)} of {cr.tenant.name}"
        ),
        template="request_closed",
        context=context,
        to=recipient,
    )


def request_closed_send(*, change_request_id: int, recipient_id: int) -> bool:
    cr = (
        ChangeRequest.objects.select_related("tenant", "profile", "requester")
        .filter(pk=change_request_id, status__in=CLOSED_SUBJECTS)
        .first()
    )
    recipient = User.objects.filter(pk=recipient_id, is_active=True).exclude(email="").first()
    if cr is None or recipient is None:
        return False
    request_closed_message(cr=cr, recipient=recipient).send()
    return True


# Emergency brake -----------------------------------------------------------------------------


def brake_pulled_message(*, event: AuditEvent, tenant: Tenant, recipient):
    username = event.actor.removeprefix("user:")
    actor = User.objects.filter(username=username).first()
    data = event.data
    return _message(
        subject=f"Emergency brake pulled for {tenant.name} by {username} ({data['party']})",
        template="brake_pulled",
        context={
            "tenant": tenant,
            "actor": person(actor) if actor else username,
            "party": data["party"],
            "reason": data["reason"],
            "capabilities": data["capabilities"],
            "versions": sorted(data["versions"].items()),
            "unchanged": data["unchanged"],
            "at": event.created_at,
        },
        to=recipient,
    )


def _event_mail_send(*, event_id: int, recipient_id: int, action: str, message) -> bool:
    """Mail one person about an audit event; False when the event, its tenant or an active
    recipient with an address is not there."""
    event = AuditEvent.objects.filter(pk=event_id, action=action).first()
    recipient = User.objects.filter(pk=recipient_id, is_active=True).exclude(email="").first()
    tenant = Tenant.objects.filter(slug=event.tenant).first() if event else None
    if tenant is None or recipient is None:
        return False
    message(event=event, tenant=tenant, recipient=recipient).send()
    return True


def brake_pulled_send(*, event_id: int, recipient_id: int) -> bool:
    return _event_mail_send(
        event_id=event_id,
        recipient_id=recipient_id,
        action="brake.pulled",
        message=brake_pulled_message,
    )


# Rollout paused ------------------------------------------------------------------------------


def rollout_paused_message(*, event: AuditEvent, tenant: Tenant, recipient):
    data = event.data
    return _message(
        subject=f"Rollout of version {data['version']} paused for {tenant.name}: "
        f"canary {data['canary']} failed",
        template="rollout_paused",
        context={
            "tenant": tenant,
            "version": data["version"],
            "canary": data["canary"],
            "error": data["error"],
            "rollout": data["rollout"],
            "at": event.created_at,
        },
        to=recipient,
    )


def rollout_paused_send(*, event_id: int, recipient_id: int) -> bool:
    return _event_mail_send(
        event_id=event_id,
        recipient_id=recipient_id,
        action="rollout.paused",
        message=rollout_paused_message,
    )
