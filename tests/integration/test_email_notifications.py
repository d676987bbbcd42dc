"""Who is told what: the mail tasks queued on commit, and what each mail says.

The task bodies run here in-process against Django's locmem mailer; the real worker and
SMTP server are in test_email_smtp_celery.py.
"""

import re
from datetime import timedelta
from smtplib import SMTPException

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from approvals.emails import (
    brake_pulled_send,
    request_closed_send,
    review_request_send,
)
from approvals.models import Channel, ReviewLink
from approvals.notifications import outcome_recipients, review_recipients
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
    change_requests_sweep,
)
from approvals.tasks import send_brake_pulled, send_request_closed, send_review_request
from audit.models import AuditEvent
from config.errors import ValidationFailed
from toggles.models import Profile

User = get_user_model()
LINK = re.compile(r"http://127\.0\.0\.1:8000(/review/[A-Za-z0-9_.-]+/)")
EVERY_MEMBER = [
    "auditor",
    "customer-admin",
    "customer-reviewer-1",
    "customer-reviewer-2",
    "vendor-admin",
    "vendor-reviewer-1",
    "vendor-reviewer-2",
]


def user(username: str):
    return User.objects.get(username=username)


def submit(demo, changes=None, requester="vendor-admin"):
    return change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=user(requester),
        changes=changes or {"intel.foreign_analysis": "full"},
        justification="analysts need full assistance for the exercise",
        base_version=1,
    )


def queued(callbacks) -> list[tuple]:
    """(task name, args) of each mail task queued on commit; other on-commit work left out."""
    tasks = []
    for callback in callbacks:
        task = getattr(getattr(callback, "func", None), "__self__", None)
        if getattr(task, "name", "").startswith("approvals.tasks.send_"):
            tasks.append((task.name, callback.args))
    return tasks


def mail_to(username: str):
    address = user(username).email
    return [message for message in mail.outbox if message.to == [address]]


# Who ----------------------------------------------------------------------------------------------


def test_submit__loosening__every_reviewer_of_both_parties_queued_on_commit(
    demo, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        cr = submit(demo)

    reviewers = [
        "customer-reviewer-1",
        "customer-reviewer-2",
        "vendor-reviewer-1",
        "vendor-reviewer-2",
    ]
    assert queued(callbacks) == [
        ("approvals.tasks.send_review_request", (cr.pk, user(name).pk)) for name in reviewers
    ]


def test_submit__tightening_by_a_reviewer__either_party_but_never_the_requester(demo):
    cr = submit(demo, {"intel.foreign_analysis": "open_source_only"}, requester="vendor-reviewer-1")

    names = [m.user.username for m in review_recipients(cr)]

    assert (cr.required_any, cr.required_vendor, cr.required_customer) == (1, 0, 0)
    assert names == ["customer-reviewer-1", "customer-reviewer-2", "vendor-reviewer-2"]


def test_submit__rolled_back__nothing_queued(demo, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationFailed):
        submit(demo, {"intel.foreign_analysis": "not-a-choice"})

    assert callbacks == []


def test_outcome_recipients__both_parties_and_requester__inactive_and_addressless_left_out(demo):
    User.objects.filter(username="vendor-reviewer-2").update(is_active=False)
    User.objects.filter(username="auditor").update(email="")

    names = [u.username for u in outcome_recipients(demo.tenant)]

    assert names == [n for n in EVERY_MEMBER if n not in ("vendor-reviewer-2", "auditor")]


# Review requests -----------------------------------------------------------------------------


def test_review_request__mail__says_what_is_asked_with_a_working_personal_link(demo):
    cr = submit(demo)

    assert review_request_send(change_request_id=cr.pk, reviewer_id=user("customer-reviewer-1").pk)

    [message] = mail.outbox
    assert message.to == ["customer-reviewer-1@customer.example"]
    assert message.from_email == "Redline <redline@localhost>"
    assert message.subject == (
        f"Approve or reject: loosen 1 safety setting of Department of Example (request #{cr.pk})"
    )
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
    text = message.body
    assert "Hello Chris Customer-Reviewer (customer-reviewer-1)," in text
    assert (
        "Vera Vendor-Admin (vendor-admin) (vendor party) asks to loosen 1 safety setting of "
        'Department of Example (profile "default", built on version 1).'
    ) in text
    assert "Your decision counts for the customer party." in text
    assert "  analysts need full assistance for the exercise" in text
    assert (
        "  - Foreign-intelligence analysis assistance (intel.foreign_analysis): "
        "with_human_review -> full  [loosening, high risk]"
    ) in text
    assert "Quorum so far: vendor 0 of 2, customer 0 of 2. 1 rejection vetoes the request." in text
    assert f"Expires: {cr.expires_at:%Y-%m-%d %H:%M} UTC." in text
    [html, mimetype] = message.alternatives[0]
    assert mimetype == "text/html"
    assert "<strong>loosen 1 safety setting</strong>" in html
    [path] = LINK.findall(text)
    assert LINK.findall(html) == [path]
    assert Client().get(path).status_code == 200


def test_review_request__html__escapes_what_people_wrote(demo):
    cr = change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=user("vendor-admin"),
        changes={"intel.foreign_analysis": "full"},
        justification='<a href="https://evil.example">click</a>',
        base_version=1,
    )

    review_request_send(change_request_id=cr.pk, reviewer_id=user("vendor-reviewer-1").pk)

    [message] = mail.outbox
    assert '<a href="https://evil.example">click</a>' in message.body
    assert (
        "&lt;a href=&quot;https://evil.example&quot;&gt;click&lt;/a&gt;"
        in (message.alternatives[0][0])
    )


def test_review_request__sent_twice__one_mail_one_link(demo):
    cr = submit(demo)
    reviewer = user("vendor-reviewer-1").pk

    first = review_request_send(change_request_id=cr.pk, reviewer_id=reviewer)
    second = review_request_send(change_request_id=cr.pk, reviewer_id=reviewer)

    assert (first, second) == (True, False)
    assert len(mail.outbox) == 1
    assert ReviewLink.objects.count() == 1


def test_review_request__request_closed_before_the_worker_ran__no_mail(demo):
    cr = submit(demo)
    change_request_withdraw(change_request_id=cr.pk, actor=cr.requester)

    assert not review_request_send(
        change_request_id=cr.pk, reviewer_id=user("vendor-reviewer-1").pk
    )
    assert mail.outbox == []
    assert not ReviewLink.objects.exists()


def test_review_request__requester_or_someone_no_longer_reviewing__no_mail(demo):
    cr = submit(demo, requester="vendor-reviewer-1")
    User.objects.filter(username="customer-reviewer-2").update(is_active=False)

    for name in ("vendor-reviewer-1", "customer-reviewer-2", "customer-admin"):
        assert not review_request_send(change_request_id=cr.pk, reviewer_id=user(name).pk)

    assert mail.outbox == []
    assert not ReviewLink.objects.exists()


def test_review_request__mail_server_down__no_link_kept_so_a_retry_sends_a_fresh_one(
    demo, settings
):
    cr = submit(demo)
    reviewer = user("vendor-reviewer-1").pk
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": 9, "timeout": 2},
        }
    }

    with pytest.raises(OSError):
        review_request_send(change_request_id=cr.pk, reviewer_id=reviewer)

    assert not ReviewLink.objects.exists()
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    assert review_request_send(change_request_id=cr.pk, reviewer_id=reviewer)
    assert ReviewLink.objects.count() == 1


def test_tasks__retry_on_mail_errors_with_backoff():
    for task in (send_review_request, send_request_closed, send_brake_pulled):
        assert task.autoretry_for == (SMTPException, OSError)
        assert (task.retry_backoff, task.max_retries, task.acks_late) == (5, 10, True)


# Outcomes ------------------------------------------------------------------------------------


def close_and_send(callbacks, cr):
    """Run what the close queued: the task bodies, in-process."""
    for name, args in queued(callbacks):
        assert name == "approvals.tasks.send_request_closed"
        assert args[0] == cr.pk
        request_closed_send(change_request_id=args[0], recipient_id=args[1])


def test_applied__requester_and_both_parties_told_with_the_new_version(
    demo, django_capture_on_commit_callbacks
):
    cr = submit(demo, {"intel.foreign_analysis": "open_source_only"})
    with django_capture_on_commit_callbacks() as callbacks:
        change_request_decide(
            change_request_id=cr.pk,
            actor=user("customer-reviewer-1"),
            verdict="approve",
            channel=Channel.EMAIL,
            comment="safer is fine",
        )

    close_and_send(callbacks, cr)

    assert sorted(m.to[0].split("@")[0] for m in mail.outbox) == EVERY_MEMBER
    [message] = mail_to("vendor-admin")
    assert message.subject == (
        f"Applied: request #{cr.pk} to tighten 1 safety setting of Department of Example"
    )
    assert (
        f"Request #{cr.pk} by Vera Vendor-Admin (vendor-admin) to tighten 1 safety setting of "
        'Department of Example was approved and applied: profile "default" is now at version 2.'
    ) in message.body
    assert (
        '  - Chris Customer-Reviewer (customer-reviewer-1) (customer): approve: "safer is fine"'
    ) in message.body


def test_rejected__told_by_whom_and_why(demo, django_capture_on_commit_callbacks):
    cr = submit(demo)
    with django_capture_on_commit_callbacks() as callbacks:
        change_request_decide(
            change_request_id=cr.pk,
            actor=user("customer-reviewer-2"),
            verdict="reject",
            channel=Channel.CONSOLE,
            comment="not during the election period",
        )

    close_and_send(callbacks, cr)

    [message] = mail_to("vendor-admin")
    assert message.subject == (
        f"Rejected: request #{cr.pk} to loosen 1 safety setting of Department of Example"
    )
    assert (
        "was rejected by Casey Customer-Reviewer (customer-reviewer-2) (customer).\n"
        'Casey Customer-Reviewer (customer-reviewer-2) wrote: "not during the election period"'
    ) in message.body
    assert len(mail.outbox) == len(EVERY_MEMBER)


def test_expired__told_when_the_sweep_expires_it(demo, django_capture_on_commit_callbacks):
    cr = submit(demo)
    with (
        time_machine.travel(cr.expires_at + timedelta(minutes=1), tick=False),
        django_capture_on_commit_callbacks() as callbacks,
    ):
        assert change_requests_sweep().expired == [cr.pk]

    close_and_send(callbacks, cr)

    [message] = mail_to("customer-reviewer-1")
    assert message.subject.startswith(f"Expired: request #{cr.pk} to loosen")
    assert f"expired: no quorum before {cr.expires_at.isoformat()}." in message.body


def test_withdrawn__told(demo, django_capture_on_commit_callbacks):
    cr = submit(demo)
    with django_capture_on_commit_callbacks() as callbacks:
        change_request_withdraw(change_request_id=cr.pk, actor=cr.requester, reason="wrong value")

    close_and_send(callbacks, cr)

    [message] = mail_to("vendor-reviewer-1")
    assert message.subject.startswith(f"Withdrawn: request #{cr.pk}")
    assert "was withdrawn by the requester: wrong value." in message.body


def test_brake__both_parties_told_and_open_requests_go_stale_with_their_own_mail(
    demo, django_capture_on_commit_callbacks
):
    cr = submit(demo)
    with django_capture_on_commit_callbacks() as callbacks:
        brake_pull(tenant=demo.tenant, actor=user("customer-admin"), reason="suspected misuse")

    tasks = queued(callbacks)
    stale = [args for name, args in tasks if name == "approvals.tasks.send_request_closed"]
    brake = [args for name, args in tasks if name == "approvals.tasks.send_brake_pulled"]
    assert len(stale) == len(brake) == len(EVERY_MEMBER)
    event = AuditEvent.objects.get(action="brake.pulled")
    assert {args[0] for args in brake} == {event.pk}
    for event_id, recipient in brake:
        brake_pulled_send(event_id=event_id, recipient_id=recipient)
    for request_id, recipient in stale:
        request_closed_send(change_request_id=request_id, recipient_id=recipient)

    brake_mail, stale_mail = sorted(mail_to("vendor-reviewer-2"), key=lambda m: m.subject)
    assert brake_mail.subject == (
        "Emergency brake pulled for Department of Example by customer-admin (customer)"
    )
    assert (
        "Carmen Customer-Admin (customer-admin) (customer party) pulled the emergency brake "
        "for Department of Example"
    ) in brake_mail.body
    assert "  suspected misuse" in brake_mail.body
    assert "Every adjustable setting was set to its safest value." in brake_mail.body
    assert '  - profile "default" is now at version 2' in brake_mail.body
    assert stale_mail.subject.startswith(f"Out of date: request #{cr.pk}")
    assert (
        "is out of date and was not applied: demo/default moved to version 2 before the "
        "request (built on version 1) was applied."
    ) in stale_mail.body
