"""Review link tokens: what is stored, what a token is bound to, and what using one does."""

import hashlib
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.test import override_settings

from approvals.errors import NotAllowed, SelfApprovalForbidden
from approvals.models import Channel, Decision, RequestStatus, ReviewLink
from approvals.review_links import (
    TOKEN_PATTERN,
    ReviewLinkRefused,
    WrongPassword,
    review_link_decide,
    review_link_issue,
    review_link_open,
    review_link_url,
)
from approvals.services import change_request_submit
from audit.models import AuditEvent
from tenants.models import Membership
from tests.conftest import DEMO_PASSWORD
from toggles.models import Profile

User = get_user_model()
ANONYMOUS = type("Anonymous", (), {"is_authenticated": False})()


@pytest.fixture
def change_request(demo):
    return change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=User.objects.get(username="vendor-admin"),
        changes={"intel.foreign_analysis": "full"},
        justification="analysts need full assistance for the exercise",
        base_version=1,
    )


def client() -> str:
    """A client address of its own: failed attempts are counted per client in Redis."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def membership(username: str) -> Membership:
    return Membership.objects.get(user__username=username, tenant__slug="demo")


def issue(change_request, username: str = "customer-reviewer-1") -> str:
    return review_link_issue(change_request=change_request, membership=membership(username))


def refusal(token: str, user=ANONYMOUS) -> ReviewLinkRefused:
    with pytest.raises(ReviewLinkRefused) as refused:
        review_link_open(token=token, client=client(), user=user)
    return refused.value


def test_issue__new_link__token_never_stored_only_selector_hash(change_request):
    token = issue(change_request)

    match = TOKEN_PATTERN.fullmatch(token)
    assert match is not None
    link = ReviewLink.objects.get()
    assert link.selector_hash == hashlib.sha256(match["selector"].encode()).hexdigest()
    stored = " ".join(str(value) for value in ReviewLink.objects.values().get().values())
    assert match["selector"] not in stored
    assert match["signature"] not in stored
    assert (link.reviewer.username, link.party, link.role) == (
        "customer-reviewer-1",
        "customer",
        "reviewer",
    )
    assert (link.digest, link.expires_at) == (change_request.digest, change_request.expires_at)
    assert review_link_url(token) == f"http://127.0.0.1:8000/review/{token}/"


def test_issue__two_links__unrelated_tokens(change_request):
    first, second = issue(change_request), issue(change_request, "customer-reviewer-2")

    assert first.split(".")[0] != second.split(".")[0]
    assert first.split(".")[1] != second.split(".")[1]


def test_issue__same_reviewer_again__no_second_link(change_request):
    issue(change_request)

    assert issue(change_request) is None
    assert ReviewLink.objects.count() == 1


def test_issue__requester__refused(demo):
    requester = User.objects.get(username="vendor-reviewer-1")
    cr = change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=requester,
        changes={"intel.foreign_analysis": "full"},
        justification="exercise",
        base_version=1,
    )

    with pytest.raises(SelfApprovalForbidden, match="the requester never gets a review link"):
        issue(cr, "vendor-reviewer-1")
    assert not ReviewLink.objects.exists()


def test_issue__admin_without_review_role__refused(change_request):
    with pytest.raises(NotAllowed, match="customer-admin does not review for demo"):
        issue(change_request, "customer-admin")


def test_open__valid_token__returns_link_and_changes_nothing(change_request):
    token = issue(change_request)
    events = AuditEvent.objects.count()

    link = review_link_open(token=token, client=client(), user=ANONYMOUS)

    assert link.reviewer.username == "customer-reviewer-1"
    link.refresh_from_db()
    change_request.refresh_from_db()
    assert link.used_at is None
    assert change_request.status == RequestStatus.PENDING
    assert not Decision.objects.exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature
        lambda t: ("A" if t[0] != "A" else "B") + t[1:],  # selector
        lambda t: t.split(".")[0],  # selector alone
        lambda t: t + "A",  # too long
        lambda t: "",
    ],
    ids=["signature", "selector", "selector-alone", "too-long", "empty"],
)
def test_open__tampered_token__404_unknown(change_request, tamper):
    token = issue(change_request)

    refused = refusal(tamper(token))

    assert (refused.status_code, refused.code) == (404, "unknown")


def test_open__signed_with_rotated_key__valid_while_key_is_a_fallback(change_request):
    with override_settings(SECRET_KEY="old-key-" * 8):
        token = issue(change_request)

    with override_settings(SECRET_KEY="new-key-" * 8, SECRET_KEY_FALLBACKS=["old-key-" * 8]):
        assert review_link_open(token=token, client=client(), user=ANONYMOUS)
    with override_settings(SECRET_KEY="new-key-" * 8, SECRET_KEY_FALLBACKS=[]):
        assert refusal(token).code == "unknown"


def test_link_row__rebound_or_unused__database_refuses(change_request):
    token = issue(change_request)
    review_link_decide(
        token=token, client=client(), user=ANONYMOUS, verdict="approve", password=DEMO_PASSWORD
    )
    other = User.objects.get(username="customer-reviewer-2")

    for change in ({"reviewer": other}, {"used_at": None}):
        with (
            pytest.raises(IntegrityError, match="can only be marked used, once"),
            transaction.atomic(),
        ):
            ReviewLink.objects.update(**change)


def test_decide__right_password__email_decision_and_link_used(change_request):
    token = issue(change_request)

    decision = review_link_decide(
        token=token,
        client=client(),
        user=ANONYMOUS,
        verdict="reject",
        comment="  not during the exercise  ",
        password=DEMO_PASSWORD,
    )

    assert (decision.reviewer.username, decision.verdict, decision.channel) == (
        "customer-reviewer-1",
        "reject",
        Channel.EMAIL,
    )
    assert (decision.comment, decision.request_digest) == (
        "not during the exercise",
        change_request.digest,
    )
    assert decision.change_request.status == RequestStatus.REJECTED
    assert ReviewLink.objects.get().used_at is not None
    assert refusal(token).code == "used"


def test_decide__wrong_password__nothing_decided_link_still_usable(change_request):
    token = issue(change_request)

    with pytest.raises(WrongPassword, match="That is not the password of customer-reviewer-1"):
        review_link_decide(
            token=token, client=client(), user=ANONYMOUS, verdict="approve", password="guess"
        )

    assert not Decision.objects.exists()
    assert ReviewLink.objects.get().used_at is None
    assert review_link_open(token=token, client=client(), user=ANONYMOUS)


def test_decide__signed_in_as_the_reviewer__no_password_needed(change_request):
    token = issue(change_request)
    reviewer = User.objects.get(username="customer-reviewer-1")

    decision = review_link_decide(token=token, client=client(), user=reviewer, verdict="approve")

    assert (decision.reviewer, decision.channel) == (reviewer, Channel.EMAIL)


def test_decide__password_of_another_reviewer__refused(change_request):
    """A token decides only for its own reviewer: another person's password does not help."""
    token = issue(change_request)
    intruder = User.objects.get(username="customer-reviewer-2")
    intruder.set_password("intruder-password")
    intruder.save()

    with pytest.raises(WrongPassword):
        review_link_decide(
            token=token,
            client=client(),
            user=ANONYMOUS,
            verdict="approve",
            password="intruder-password",
        )
    assert not Decision.objects.exists()
