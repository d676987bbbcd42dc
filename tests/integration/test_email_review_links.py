"""/review/<token>/ over HTTP: a GET only shows, a POST decides, and every bad use is refused
with its own status and message, revealing nothing about any request.

Clients enforce CSRF like a browser, and each test comes from its own address, because
failed attempts are counted per client in the (real) Redis cache.
"""

import hashlib
import re
import secrets
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from approvals.models import Channel, Decision, RequestStatus, ReviewLink
from approvals.review_links import review_link_issue, review_link_sign
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
)
from tenants.models import Membership, Role
from tenants.services import membership_remove, membership_set
from tests.conftest import DEMO_PASSWORD
from toggles.models import Profile

User = get_user_model()

PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
JUSTIFICATION = "analysts need full assistance for the exercise"
NOTHING_DECIDED = "Nothing was decided."


def address() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def browser(user=None, ip: str | None = None) -> Client:
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip or address())
    if user is not None:
        client.force_login(User.objects.get(username=user))
    return client


def csrf_token(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)[1]


def submit(demo, changes=None, requester="vendor-admin"):
    return change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=User.objects.get(username=requester),
        changes=changes or {"intel.foreign_analysis": "full"},
        justification=JUSTIFICATION,
        base_version=1,
    )


def link_for(cr, username="customer-reviewer-1") -> str:
    membership = Membership.objects.get(user__username=username, tenant=cr.tenant)
    return f"/review/{review_link_issue(change_request=cr, membership=membership)}/"


def decide(
    client: Client, url: str, verdict="approve", password=DEMO_PASSWORD, comment="", headers=None
):
    page = client.get(url)
    assert page.status_code == 200, page.text
    form = {
        "csrfmiddlewaretoken": csrf_token(page),
        "verdict": verdict,
        "password": password,
        "comment": comment,
    }
    return client.post(url, form, headers=headers)


def assert_refused(response, status: int, title: str, message: str) -> None:
    assert response.status_code == status
    assert f"<h1>{title}</h1>" in response.text
    assert f"<p>{message}</p>" in response.text
    assert NOTHING_DECIDED in response.text
    for header, value in PRIVATE_HEADERS.items():
        assert response.headers[header] == value
    for secret in (JUSTIFICATION, "Department of Example", "intel.foreign_analysis", "Approve"):
        assert secret not in response.text.split("<main")[1]


@pytest.fixture
def cr(demo):
    return submit(demo)


# Showing ---------------------------------------------------------------------------------------


def test_get__valid_link__confirmation_page_and_nothing_changes(cr):
    url = link_for(cr)

    response = browser().get(url)

    assert response.status_code == 200
    for header, value in PRIVATE_HEADERS.items():
        assert response.headers[header] == value
    assert "Content-Security-Policy" in response.headers
    text = response.text
    assert "Approve or reject: loosen 1 safety setting of Department of Example" in text
    assert "Vera Vendor-Admin (vendor-admin)" in text
    assert JUSTIFICATION in text
    assert "Foreign-intelligence analysis assistance" in text
    assert '<span class="direction loosening">loosening</span>, high risk' in text
    assert "Quorum: vendor 0 of 2, customer 0 of 2." in text
    assert "No one has decided yet." in text
    assert "You decide as <strong>Chris Customer-Reviewer (customer-reviewer-1)</strong>" in text
    assert 'name="verdict" value="approve"' in text
    assert 'name="verdict" value="reject"' in text
    assert 'type="password" name="password"' in text
    assert "<style" not in text
    assert "style=" not in text
    assert "<script" not in text
    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING
    assert not Decision.objects.exists()
    assert ReviewLink.objects.get().used_at is None


def test_get__decisions_so_far__listed_with_party_and_comment(cr):
    change_request_decide(
        change_request_id=cr.pk,
        actor=User.objects.get(username="vendor-reviewer-1"),
        verdict="approve",
        channel=Channel.CONSOLE,
        comment="fine for the exercise",
    )

    text = browser().get(link_for(cr)).text

    assert "Quorum: vendor 1 of 2, customer 0 of 2." in text
    assert (
        '<span class="verdict approve">approve</span> Victor Vendor-Reviewer '
        "(vendor-reviewer-1) (vendor): “fine for the exercise”"
    ) in text


def test_head_and_options__headers_only__nothing_changes(cr):
    url = link_for(cr)
    client = browser()

    head = client.head(url)
    options = client.options(url)

    assert (head.status_code, head.content) == (200, b"")
    assert options.status_code == 200
    assert options.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    for response in (head, options):
        for header, value in PRIVATE_HEADERS.items():
            assert response.headers[header] == value
    assert ReviewLink.objects.get().used_at is None
    assert not Decision.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_other_methods__refused_and_nothing_changes(cr, method):
    url = link_for(cr)
    client = browser()
    token = csrf_token(client.get(url))

    without_token = getattr(client, method)(url)
    with_token = getattr(client, method)(url, headers={"X-CSRFToken": token})

    assert (without_token.status_code, with_token.status_code) == (403, 405)
    assert ReviewLink.objects.get().used_at is None
    assert not Decision.objects.exists()


# Deciding --------------------------------------------------------------------------------------


def test_post__approve_with_password__recorded_through_email_channel(cr):
    url = link_for(cr)

    response = decide(browser(), url, comment="agreed for the exercise")

    assert response.status_code == 200
    assert "<h1>Your approval is recorded</h1>" in response.text
    assert "The request stays open until the quorum is met or it expires." in response.text
    assert "Quorum: vendor 0 of 2, customer 1 of 2." in response.text
    for header, value in PRIVATE_HEADERS.items():
        assert response.headers[header] == value
    decision = Decision.objects.get()
    assert (decision.reviewer.username, decision.party, decision.verdict) == (
        "customer-reviewer-1",
        "customer",
        "approve",
    )
    assert (decision.channel, decision.comment, decision.request_digest) == (
        "email",
        "agreed for the exercise",
        cr.digest,
    )


def test_post__reject__request_rejected_with_comment(cr):
    response = decide(browser(), link_for(cr), verdict="reject", comment="not now")

    assert "<h1>Your rejection is recorded</h1>" in response.text
    assert "The request is rejected." in response.text
    cr.refresh_from_db()
    assert cr.status == RequestStatus.REJECTED
    assert cr.status_reason == "rejected by customer-reviewer-1 (customer): not now"


def test_post__final_approval__applies_and_says_so(demo):
    tightening = submit(demo, {"intel.foreign_analysis": "open_source_only"})

    response = decide(browser(), link_for(tightening))

    assert (
        "That completed the quorum: the request is applied and profile “default” is now at "
        "version 2."
    ) in response.text
    tightening.refresh_from_db()
    assert (tightening.status, tightening.applied_version) == (RequestStatus.APPLIED, 2)


def test_post__wrong_password__403_form_again_and_nothing_decided(cr):
    url = link_for(cr)

    response = decide(browser(), url, password="not-the-password", comment="keep me")

    assert response.status_code == 403
    assert (
        '<p class="error" role="alert">That is not the password of customer-reviewer-1. '
        "Nothing was decided.</p>"
    ) in response.text
    assert ">keep me</textarea>" in response.text
    assert not Decision.objects.exists()
    assert decide(browser(), url).status_code == 200


def test_post__signed_in_as_the_reviewer__no_password_asked(cr):
    url = link_for(cr)
    client = browser(user="customer-reviewer-1")

    page = client.get(url)
    response = client.post(url, {"csrfmiddlewaretoken": csrf_token(page), "verdict": "approve"})

    assert 'type="password"' not in page.text
    assert response.status_code == 200
    assert Decision.objects.get().channel == Channel.EMAIL


def test_post__no_verdict__400_and_nothing_decided(cr):
    response = decide(browser(), link_for(cr), verdict="maybe")

    assert response.status_code == 400
    assert '<p class="error" role="alert">Choose Approve or Reject.</p>' in response.text
    assert not Decision.objects.exists()


# CSRF ------------------------------------------------------------------------------------------


def test_post__origin_null_from_no_referrer_page__accepted(cr):
    """Browsers send `Origin: null` with a form on a no-referrer page."""
    url = link_for(cr)

    response = decide(browser(), url, headers={"Origin": "null"})

    assert response.status_code == 200
    assert Decision.objects.get().channel == Channel.EMAIL


def test_post__foreign_origin__403_csrf_and_nothing_decided(cr):
    response = decide(browser(), link_for(cr), headers={"Origin": "https://evil.example"})

    assert response.status_code == 403
    assert "CSRF verification failed" in response.text
    assert not Decision.objects.exists()


def test_post__without_csrf_token__403_and_nothing_decided(cr):
    url = link_for(cr)

    response = browser().post(url, {"verdict": "approve", "password": DEMO_PASSWORD})

    assert response.status_code == 403
    assert "CSRF verification failed" in response.text
    assert not Decision.objects.exists()
    assert ReviewLink.objects.get().used_at is None


# Refusals --------------------------------------------------------------------------------------


def test_replay__used_link__410_used(cr):
    url = link_for(cr)
    client = browser()
    page = client.get(url)
    form = {"csrfmiddlewaretoken": csrf_token(page), "verdict": "approve"}
    form["password"] = DEMO_PASSWORD
    assert client.post(url, form).status_code == 200

    replayed = client.post(url, form | {"verdict": "reject"})

    used = (
        "This review link has already been used. Each link records one decision and then "
        "stops working."
    )
    assert_refused(replayed, 410, "This link has been used", used)
    assert_refused(browser().get(url), 410, "This link has been used", used)
    assert list(Decision.objects.values_list("verdict", flat=True)) == ["approve"]


def test_foreign_link__signed_in_as_another_reviewer__403_and_nothing_decided(cr):
    """A link decides only for the reviewer it was sent to, even for a signed-in colleague."""
    url = link_for(cr, "customer-reviewer-1")
    colleague = browser(user="customer-reviewer-2")
    own_page = colleague.get(link_for(cr, "customer-reviewer-2"))

    shown = colleague.get(url)
    form = {"csrfmiddlewaretoken": csrf_token(own_page), "verdict": "approve"}
    posted = colleague.post(url, form)

    message = (
        "This review link was sent to another reviewer, and you are signed in as "
        "customer-reviewer-2. A link only ever decides for the person it was sent to; to "
        "decide yourself, use the link in your own email or the console."
    )
    assert_refused(shown, 403, "This link is someone else&#x27;s", message)
    assert_refused(posted, 403, "This link is someone else&#x27;s", message)
    assert not Decision.objects.exists()


def test_foreign_link__forwarded_to_someone_signed_out__needs_the_reviewers_password(cr):
    url = link_for(cr, "customer-reviewer-1")
    forwardee = User.objects.get(username="vendor-reviewer-2")
    forwardee.set_password("forwardee-password")
    forwardee.save()

    response = decide(browser(), url, password="forwardee-password")

    assert response.status_code == 403
    assert "That is not the password of customer-reviewer-1." in response.text
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        lambda token: token.upper(),
        lambda token: "x" * len(token),
    ],
    ids=["signature", "case", "garbage"],
)
def test_tampered_token__404_unknown(cr, tamper):
    token = link_for(cr).split("/")[2]

    response = browser().get(f"/review/{tamper(token)}/")

    if response.status_code == 404 and "<h1>" not in response.text:
        pytest.fail("a tampered token must reach the review page, not the router's 404")
    assert_refused(
        response,
        404,
        "This link does not work",
        "This review link is not valid. Open it again from the email, and make sure the whole "
        "link was copied: review links are long.",
    )


def test_expired__time_travel_past_expiry__410_expired(cr):
    url = link_for(cr)

    with time_machine.travel(cr.expires_at + timedelta(minutes=1), tick=False):
        response = browser().get(url)

    assert_refused(
        response,
        410,
        "This link has expired",
        "This review link has expired: the request was not decided in time.",
    )


def test_expired__post_just_past_expiry__410_and_nothing_decided(cr):
    url = link_for(cr)
    client = browser()
    form = {"csrfmiddlewaretoken": csrf_token(client.get(url)), "verdict": "approve"}

    with time_machine.travel(cr.expires_at + timedelta(seconds=1), tick=False):
        response = client.post(url, form | {"password": DEMO_PASSWORD})

    assert_refused(
        response,
        410,
        "This link has expired",
        "This review link has expired: the request was not decided in time.",
    )
    assert not Decision.objects.exists()


def test_after_withdraw__410_withdrawn(cr):
    url = link_for(cr)
    change_request_withdraw(change_request_id=cr.pk, actor=cr.requester, reason="changed plan")

    assert_refused(
        browser().get(url),
        410,
        "The request was withdrawn",
        "The requester withdrew this request, so there is nothing left to decide.",
    )


def test_after_applied__410_applied(demo):
    tightening = submit(demo, {"intel.foreign_analysis": "open_source_only"})
    url = link_for(tightening, "customer-reviewer-2")
    change_request_decide(
        change_request_id=tightening.pk,
        actor=User.objects.get(username="vendor-reviewer-1"),
        verdict="approve",
        channel=Channel.API,
    )

    assert_refused(
        browser().get(url),
        410,
        "The request is already applied",
        "This request has already been approved and applied; there is nothing left to decide.",
    )


def test_after_rejected__410_rejected(cr):
    url = link_for(cr)
    change_request_decide(
        change_request_id=cr.pk,
        actor=User.objects.get(username="vendor-reviewer-2"),
        verdict="reject",
        channel=Channel.CONSOLE,
    )

    assert_refused(
        browser().get(url),
        410,
        "The request was rejected",
        "This request has already been rejected; there is nothing left to decide.",
    )


def test_after_brake__stale_request__410_out_of_date(demo, cr):
    url = link_for(cr)
    brake_pull(
        tenant=demo.tenant, actor=User.objects.get(username="customer-admin"), reason="incident"
    )

    assert_refused(
        browser().get(url),
        410,
        "The request is out of date",
        "The settings changed before this request was decided, so it can no longer be applied; "
        "there is nothing left to decide.",
    )


def test_already_decided_in_console__410_decided(cr):
    url = link_for(cr)
    change_request_decide(
        change_request_id=cr.pk,
        actor=User.objects.get(username="customer-reviewer-1"),
        verdict="approve",
        channel=Channel.CONSOLE,
    )

    assert_refused(
        browser().get(url),
        410,
        "You have already decided",
        "You have already decided on this request, in the console or through the API. "
        "A decision cannot be changed.",
    )


MEMBERSHIP_CHANGED = (
    "Your membership or role has changed since this link was sent, so the link no longer "
    "works. If you still review for this tenant, decide in the console."
)


def test_after_membership_lost__403_membership(demo, cr):
    url = link_for(cr)
    client = browser()
    form = {"csrfmiddlewaretoken": csrf_token(client.get(url)), "verdict": "approve"}
    membership_remove(tenant=demo.tenant, user=User.objects.get(username="customer-reviewer-1"))

    posted = client.post(url, form | {"password": DEMO_PASSWORD})

    assert_refused(posted, 403, "Your membership has changed", MEMBERSHIP_CHANGED)
    assert_refused(browser().get(url), 403, "Your membership has changed", MEMBERSHIP_CHANGED)
    assert not Decision.objects.exists()


def test_after_membership_removed_and_added_again__403_membership(demo, cr):
    url = link_for(cr)
    reviewer = User.objects.get(username="customer-reviewer-1")
    membership_remove(tenant=demo.tenant, user=reviewer)
    membership_set(tenant=demo.tenant, user=reviewer, party="customer", role=Role.REVIEWER)

    assert_refused(browser().get(url), 403, "Your membership has changed", MEMBERSHIP_CHANGED)


def test_after_role_changed__403_membership(demo, cr):
    url = link_for(cr)
    membership_set(
        tenant=demo.tenant,
        user=User.objects.get(username="customer-reviewer-1"),
        party="customer",
        role=Role.VIEWER,
    )

    assert_refused(browser().get(url), 403, "Your membership has changed", MEMBERSHIP_CHANGED)


def test_after_user_deactivated__403_membership(cr):
    url = link_for(cr)
    User.objects.filter(username="customer-reviewer-1").update(is_active=False)

    assert_refused(browser().get(url), 403, "Your membership has changed", MEMBERSHIP_CHANGED)


def test_requester__forged_link__403_requester(demo):
    """The requester never gets a link; one forged with the secret key and a database write
    is still refused."""
    cr = submit(demo, requester="vendor-reviewer-1")
    membership = Membership.objects.get(user__username="vendor-reviewer-1", tenant=demo.tenant)
    link = ReviewLink.objects.create(
        change_request=cr,
        reviewer=membership.user,
        membership_id=membership.pk,
        party=membership.party,
        role=membership.role,
        digest=cr.digest,
        selector_hash=hashlib.sha256(b"S" * 22).hexdigest(),
        created_at=cr.created_at,
        expires_at=cr.expires_at,
    )
    url = f"/review/{review_link_sign(link, 'S' * 22)}/"
    client = browser()
    form = {"csrfmiddlewaretoken": csrf_token(client.get(link_for(cr))), "verdict": "approve"}

    shown = client.get(url)
    posted = client.post(url, form | {"password": DEMO_PASSWORD})

    message = (
        "This link names the person who requested the change. The requester never decides on "
        "their own request."
    )
    assert_refused(shown, 403, "The requester does not decide", message)
    assert_refused(posted, 403, "The requester does not decide", message)
    assert not Decision.objects.exists()


# Scanners and guessing -------------------------------------------------------------------------


def test_link_scanner__many_gets_and_heads_from_many_clients__request_still_pending(cr):
    url = link_for(cr)
    scanners = [browser(ip=f"203.0.113.{n}") for n in range(1, 7)]

    for _ in range(5):
        for scanner in scanners:
            assert scanner.get(url).status_code == 200
            assert scanner.head(url).status_code == 200
            assert scanner.options(url).status_code == 200

    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING
    assert not Decision.objects.exists()
    assert ReviewLink.objects.get().used_at is None
    assert decide(browser(), url).status_code == 200
    assert Decision.objects.get().channel == Channel.EMAIL


@override_settings(REDLINE_REVIEW_FAILURE_LIMIT=3)
def test_guessing__failed_attempts_per_client__429_then_even_good_links(cr):
    url = link_for(cr)
    guesser = browser()
    bystander = browser()

    statuses = [guesser.get(f"/review/{secrets.token_urlsafe(48)}/").status_code for _ in range(3)]

    assert statuses == [404, 404, 404]
    assert_refused(
        guesser.get(url),
        429,
        "Too many failed attempts",
        "Too many review links that do not work were opened from your network. Wait 15 "
        "minutes, then open the link from your email again.",
    )
    assert bystander.get(url).status_code == 200


@override_settings(REDLINE_REVIEW_PASSWORD_LIMIT=2)
def test_guessing__wrong_passwords_per_reviewer__429_from_any_client(cr):
    url = link_for(cr)

    assert decide(browser(), url, password="guess-1").status_code == 403
    assert decide(browser(), url, password="guess-2").status_code == 403
    blocked = decide(browser(), url, password=DEMO_PASSWORD)

    assert_refused(
        blocked,
        429,
        "Too many wrong passwords",
        "Too many wrong passwords were entered for this reviewer. Nothing was decided. Wait 15 "
        "minutes and try again.",
    )
    assert not Decision.objects.exists()


@override_settings(REDLINE_CLIENT_IP_META="HTTP_X_REAL_IP", REDLINE_REVIEW_FAILURE_LIMIT=1)
def test_guessing__behind_a_proxy__counted_per_forwarded_client(cr):
    url = link_for(cr)
    proxy, guesser, reviewer = address(), address(), address()

    guess = browser(ip=proxy).get("/review/nope/", headers={"X-Real-IP": guesser})
    assert guess.status_code == 404
    blocked = browser(ip=proxy).get(url, headers={"X-Real-IP": guesser})
    other = browser(ip=proxy).get(url, headers={"X-Real-IP": reviewer})

    assert (blocked.status_code, other.status_code) == (429, 200)
