"""The whole mail path with real parts: a Celery worker process sends through Django's SMTP
backend to a real SMTP server (aiosmtpd, with the development catcher's handler), and the
link read out of the received message decides through the review page."""

import re

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from approvals.devmail import MailboxHandler, mailbox_list
from approvals.models import Decision, RequestStatus
from approvals.services import change_request_submit
from config.celery import app as celery_app
from tests.conftest import DEMO_PASSWORD
from tests.fault.processes import Worker, app_environment, free_port, wait_until
from toggles.models import Profile

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

User = get_user_model()
LINK = re.compile(r"http://testserver(/review/[A-Za-z0-9_.-]+/)")
REVIEWERS = [
    "customer-reviewer-1@customer.example",
    "customer-reviewer-2@customer.example",
    "vendor-reviewer-1@vendor.example",
    "vendor-reviewer-2@vendor.example",
]


@pytest.fixture
def mailbox(tmp_path):
    directory = tmp_path / "mail"
    controller = Controller(MailboxHandler(directory), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield directory, controller.port
    controller.stop()


@pytest.fixture
def worker(mailbox, tmp_path):
    _, port = mailbox
    celery_app.control.purge()
    env = app_environment(
        settings.CELERY_BROKER_URL,
        EMAIL_URL=f"smtp://127.0.0.1:{port}",
        SITE_URL="http://testserver",
        SECRET_KEY=settings.SECRET_KEY,
    )
    process = Worker(env, tmp_path / "worker.log", concurrency=1, beat=False).start()
    process.wait_ready(60)
    yield process
    process.stop()


def received(directory, count: int, subject: str = ""):
    """Wait for `count` messages whose subject starts with `subject`."""

    def arrived():
        mails = [m for m in mailbox_list(directory) if m.subject.startswith(subject)]
        return mails if len(mails) >= count else None

    return wait_until(arrived, timeout=60, interval=0.2, what=f"{count} mails '{subject}…'")


def submit(demo, changes):
    return change_request_submit(
        tenant=demo.tenant,
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        actor=User.objects.get(username="vendor-admin"),
        changes=changes,
        justification="analysts need full assistance for the exercise",
        base_version=1,
    )


def approve_from(mail) -> Client:
    path = LINK.search(mail.text)[1]
    client = Client(enforce_csrf_checks=True)
    page = client.get(path)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    response = client.post(
        path,
        {"csrfmiddlewaretoken": token, "verdict": "approve", "password": DEMO_PASSWORD},
        headers={"Origin": "null"},
    )
    assert response.status_code == 200, response.text
    return response


def test_submit__worker_mails_each_reviewer__link_shows_then_decides_by_email(
    demo, mailbox, worker
):
    directory, _ = mailbox
    cr = submit(demo, {"intel.foreign_analysis": "full"})

    mails = received(directory, 4, "Approve or reject:")

    assert sorted(m.to for m in mails) == REVIEWERS
    mail = next(m for m in mails if m.to == "customer-reviewer-1@customer.example")
    assert mail.subject == (
        f"Approve or reject: loosen 1 safety setting of Department of Example (request #{cr.pk})"
    )
    assert mail.sender == "Redline <redline@localhost>"
    assert "with_human_review -> full  [loosening, high risk]" in mail.text
    assert LINK.findall(mail.html) == LINK.findall(mail.text)
    path = LINK.search(mail.text)[1]

    shown = Client().get(path)

    assert shown.status_code == 200
    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING
    assert not Decision.objects.exists()

    decided = approve_from(mail)

    assert "<h1>Your approval is recorded</h1>" in decided.text
    decision = Decision.objects.get()
    assert (decision.reviewer.username, decision.channel, decision.verdict) == (
        "customer-reviewer-1",
        "email",
        "approve",
    )
    cr.refresh_from_db()
    assert cr.status == RequestStatus.PENDING


def test_tightening_approved_from_mail__worker_tells_requester_and_both_parties(
    demo, mailbox, worker
):
    directory, _ = mailbox
    cr = submit(demo, {"intel.foreign_analysis": "open_source_only"})
    review_mail = next(
        m
        for m in received(directory, 4, "Approve or reject:")
        if m.to == "vendor-reviewer-2@vendor.example"
    )

    approve_from(review_mail)

    applied = received(directory, 7, "Applied:")
    assert len({m.to for m in applied}) == 7
    requester_mail = next(m for m in applied if m.to == "vendor-admin@vendor.example")
    assert requester_mail.subject == (
        f"Applied: request #{cr.pk} to tighten 1 safety setting of Department of Example"
    )
    assert 'profile "default" is now at version 2.' in requester_mail.text
