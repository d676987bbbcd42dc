"""Personal review links: `/review/<token>/` in the mail a reviewer receives.

Built like Django's password-reset tokens, plus a row per link:

* The token is `<selector>.<signature>`. The row keeps only a SHA-256 of the selector;
  the signature is an HMAC (SECRET_KEY, or one of SECRET_KEY_FALLBACKS) over the selector
  and the row's binding: request, digest, reviewer, the membership it was issued under,
  expiry. Neither a copy of the database nor a write to it yields a working link.
* A link works once, for its reviewer only, while the request is pending and unexpired
  and the reviewer's membership is the one it was issued under.
* Opening a link only reads. Deciding asks for the reviewer's password unless they are
  signed in as themselves, so a forwarded or intercepted mail decides nothing.
* Failed attempts (unknown or tampered tokens, wrong passwords) are counted per client in
  the cache; past the limit every review link answers 429 to that client for a while.
"""

import hashlib
import re
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from approvals.errors import NotAllowed, SelfApprovalForbidden
from approvals.models import (
    ChangeRequest,
    Channel,
    Decision,
    RequestStatus,
    ReviewLink,
    Verdict,
)
from approvals.services import change_request_decide
from config.errors import DomainError, ValidationFailed
from tenants.models import Membership
from tenants.permissions import REVIEW_CHANGE, ROLE_PERMISSIONS

KEY_SALT = "redline.approvals.review_links"
SELECTOR_BYTES = 16
TOKEN_PATTERN = re.compile(r"(?P<selector>[A-Za-z0-9_-]{22})\.(?P<signature>[A-Za-z0-9_-]{43})")
MAX_COMMENT = 2000


@dataclass(frozen=True)
class Refusal:
    status: int
    title: str
    message: str


REFUSALS = {
    "unknown": Refusal(
        404,
        "This link does not work",
        "This review link is not valid. Open it again from the email, and make sure the "
        "whole link was copied: review links are long.",
    ),
    "rate_limited": Refusal(
        429,
        "Too many failed attempts",
        "Too many review links that do not work were opened from your network. "
        "Wait {minutes} minutes, then open the link from your email again.",
    ),
    "password_limited": Refusal(
        429,
        "Too many wrong passwords",
        "Too many wrong passwords were entered for this reviewer. Nothing was decided. "
        "Wait {minutes} minutes and try again.",
    ),
    "other_user": Refusal(
        403,
        "This link is someone else's",
        "This review link was sent to another reviewer, and you are signed in as "
        "{username}. A link only ever decides for the person it was sent to; to decide "
        "yourself, use the link in your own email or the console.",
    ),
    "requester": Refusal(
        403,
        "The requester does not decide",
        "This link names the person who requested the change. The requester never "
        "decides on their own request.",
    ),
    "used": Refusal(
        410,
        "This link has been used",
        "This review link has already been used. Each link records one decision and then "
        "stops working.",
    ),
    "decided": Refusal(
        410,
        "You have already decided",
        "You have already decided on this request, in the console or through the API. "
        "A decision cannot be changed.",
    ),
    "membership": Refusal(
        403,
        "Your membership has changed",
        "Your membership or role has changed since this link was sent, so the link no "
        "longer works. If you still review for this tenant, decide in the console.",
    ),
    "expired": Refusal(
        410,
        "This link has expired",
        "This review link has expired: the request was not decided in time.",
    ),
    RequestStatus.WITHDRAWN: Refusal(
        410,
        "The request was withdrawn",
        "The requester withdrew this request, so there is nothing left to decide.",
    ),
    RequestStatus.APPROVED: Refusal(
        410,
        "The request is already approved",
        "This request has already been approved; there is nothing left to decide.",
    ),
    RequestStatus.APPLIED: Refusal(
        410,
        "The request is already applied",
        "This request has already been approved and applied; there is nothing left to decide.",
    ),
    RequestStatus.REJECTED: Refusal(
        410,
        "The request was rejected",
        "This request has already been rejected; there is nothing left to decide.",
    ),
    RequestStatus.STALE: Refusal(
        410,
        "The request is out of date",
        "The settings changed before this request was decided, so it can no longer be "
        "applied; there is nothing left to decide.",
    ),
}
REFUSALS[RequestStatus.EXPIRED] = REFUSALS["expired"]


class ReviewLinkRefused(DomainError):
    """Why a link cannot be used. The message names no request, tenant or setting."""

    def __init__(self, reason: str, **details):
        refusal = REFUSALS[reason]
        super().__init__(refusal.message.format(**details))
        self.code = reason
        self.status_code = refusal.status
        self.title = refusal.title


class WrongPassword(DomainError):
    status_code = 403
    code = "wrong_password"


# Issuing -------------------------------------------------------------------------------


def _selector_hash(selector: str) -> str:
    return hashlib.sha256(selector.encode()).hexdigest()


def review_link_sign(link: ReviewLink, selector: str, secret: str | None = None) -> str:
    """The token for a link: its selector and an HMAC over the link's binding."""
    binding = "|".join(
        str(part)
        for part in (
            selector,
            link.pk,
            link.change_request_id,
            link.digest,
            link.reviewer_id,
            link.membership_id,
            link.party,
            link.role,
            int(link.expires_at.timestamp()),
        )
    )
    mac = salted_hmac(KEY_SALT, binding, secret=secret, algorithm="sha256").digest()
    return f"{selector}.{urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def review_link_issue(*, change_request: ChangeRequest, membership: Membership) -> str | None:
    """A new link for one reviewer of the request; None when they already have one.

    The token is returned once and never stored.
    """
    if membership.user_id == change_request.requester_id:
        raise SelfApprovalForbidden("the requester never gets a review link for their request")
    if (
        membership.tenant_id != change_request.tenant_id
        or REVIEW_CHANGE not in ROLE_PERMISSIONS[membership.role]
    ):
        raise NotAllowed(f"{membership.user} does not review for {change_request.tenant}")
    selector = secrets.token_urlsafe(SELECTOR_BYTES)
    try:
        with transaction.atomic():
            link = ReviewLink.objects.create(
                change_request=change_request,
                reviewer_id=membership.user_id,
                membership_id=membership.pk,
                party=membership.party,
                role=membership.role,
                digest=change_request.digest,
                selector_hash=_selector_hash(selector),
                created_at=timezone.now(),
                expires_at=change_request.expires_at,
            )
    except IntegrityError:
        return None
    return review_link_sign(link, selector)


def review_link_url(token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("review-link", args=[token])


# Checking ------------------------------------------------------------------------------


def _window_minutes() -> int:
    return max(1, settings.REDLINE_REVIEW_FAILURE_WINDOW_SECONDS // 60)


def _count_failure(key: str) -> None:
    window = settings.REDLINE_REVIEW_FAILURE_WINDOW_SECONDS
    if cache.add(key, 1, timeout=window):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)


def _client_key(client: str) -> str:
    return f"review-link:failures:{client}"


def _password_key(reviewer_id: int) -> str:
    return f"review-link:passwords:{reviewer_id}"


def _check_client(client: str) -> None:
    if cache.get(_client_key(client), 0) >= settings.REDLINE_REVIEW_FAILURE_LIMIT:
        raise ReviewLinkRefused("rate_limited", minutes=_window_minutes())


def _find(token: str, *, client: str, lock: bool = False) -> ReviewLink:
    """The link whose signature matches, or a 404 refusal counted against the client."""
    match = TOKEN_PATTERN.fullmatch(token)
    links = ReviewLink.objects.select_related(
        "change_request__tenant", "change_request__requester", "reviewer"
    )
    if lock:
        links = links.select_for_update(of=("self",))
    link = links.filter(selector_hash=_selector_hash(match["selector"])).first() if match else None
    if link is not None and any(
        constant_time_compare(token, review_link_sign(link, match["selector"], secret))
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    ):
        return link
    _count_failure(_client_key(client))
    raise ReviewLinkRefused("unknown")


def _check(link: ReviewLink, *, user) -> None:
    """Refuse a link that may not show or decide its request now."""
    cr = link.change_request
    if user.is_authenticated and user.pk != link.reviewer_id:
        raise ReviewLinkRefused("other_user", username=user.get_username())
    if link.used_at is not None:
        raise ReviewLinkRefused("used")
    if link.reviewer_id == cr.requester_id:
        raise ReviewLinkRefused("requester")
    if Decision.objects.filter(change_request=cr, reviewer_id=link.reviewer_id).exists():
        raise ReviewLinkRefused("decided")
    if cr.status != RequestStatus.PENDING:
        raise ReviewLinkRefused(cr.status)
    if min(link.expires_at, cr.expires_at) <= timezone.now():
        raise ReviewLinkRefused("expired")
    membership = Membership.objects.filter(user_id=link.reviewer_id, tenant_id=cr.tenant_id).first()
    if (
        not link.reviewer.is_active
        or membership is None
        or (membership.pk, membership.party, membership.role)
        != (link.membership_id, link.party, link.role)
    ):
        raise ReviewLinkRefused("membership")
    if link.digest != cr.digest:
        raise ReviewLinkRefused("unknown")


def review_link_open(*, token: str, client: str, user) -> ReviewLink:
    """The link behind a token, checked, for showing its request. Changes nothing."""
    _check_client(client)
    link = _find(token, client=client)
    _check(link, user=user)
    return link


def review_link_needs_password(link: ReviewLink, user) -> bool:
    return not (user.is_authenticated and user.pk == link.reviewer_id)


def _confirm_identity(link: ReviewLink, *, user, password: str, client: str) -> None:
    if not review_link_needs_password(link, user):
        return
    key = _password_key(link.reviewer_id)
    if cache.get(key, 0) >= settings.REDLINE_REVIEW_PASSWORD_LIMIT:
        raise ReviewLinkRefused("password_limited", minutes=_window_minutes())
    if not password or not link.reviewer.check_password(password):
        _count_failure(key)
        _count_failure(_client_key(client))
        raise WrongPassword(
            f"That is not the password of {link.reviewer.get_username()}. Nothing was decided."
        )


def review_link_decide(
    *, token: str, client: str, user, verdict: str, comment: str = "", password: str = ""
) -> Decision:
    """Decide through a link, as its reviewer, with the same service as the console.

    The link is locked, checked again, and marked used in the decision's transaction.
    """
    _check_client(client)
    if verdict not in Verdict.values:
        raise ValidationFailed("Choose Approve or Reject.")
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"Keep the comment under {MAX_COMMENT} characters.")
    with transaction.atomic():
        link = _find(token, client=client, lock=True)
        _check(link, user=user)
        _confirm_identity(link, user=user, password=password, client=client)
        cr = change_request_decide(
            change_request_id=link.change_request_id,
            actor=link.reviewer,
            verdict=verdict,
            channel=Channel.EMAIL,
            comment=comment,
            seen_digest=link.digest,
        )
        link.used_at = timezone.now()
        link.save(update_fields=["used_at"])
    return cr.decisions.get(reviewer_id=link.reviewer_id)
