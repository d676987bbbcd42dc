"""The whole story in a real browser, with a real Celery worker and a real SMTP server.

The vendor admin proposes a loosening change and sees it needs vendor 2 and customer 2;
two vendor reviewers approve in the console; two customer reviewers approve from the
links in their email; the new version appears; the rollout view reaches 100%.
"""

import re
import time
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
import urllib3
from aiosmtpd.controller import Controller
from django.conf import settings

from approvals.models import ChangeRequest, Decision
from config.celery import app as celery_app
from tests.browser.conftest import screenshot
from tests.conftest import DEMO_PASSWORD
from tests.fault.processes import Worker, app_environment, free_port, wait_until
from toggles.models import Profile, Rollout

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LINK = re.compile(r"https?://\S+?/review/[^/\s]+/")


class Inbox:
    """An aiosmtpd handler keeping every message it is given, by recipient."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def links_for(self, address: str) -> list[str]:
        links = []
        for recipients, message in self.messages:
            if address in recipients:
                text = message.get_body(preferencelist=("plain",)).get_content()
                links += LINK.findall(text)
        return links


@pytest.fixture
def smtp_inbox():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def worker(live_server, smtp_inbox, tmp_path):
    _, port = smtp_inbox
    celery_app.control.purge()
    env = app_environment(
        settings.CELERY_BROKER_URL,
        EMAIL_URL=f"smtp://127.0.0.1:{port}",
        SITE_URL=live_server.url,
    )
    process = Worker(env, tmp_path / "worker.log", concurrency=2, beat=False).start()
    process.wait_ready(60)
    yield process
    process.stop()


def approve_in_console(page_for, live_server, username: str, cr_id: int) -> None:
    page = page_for(username)
    page.goto(f"{live_server.url}/t/demo/requests/{cr_id}/")
    page.fill("#comment", f"{username} agrees")
    page.click("button[value=approve]")
    page.wait_for_selector(".message.success")


def test_story__loosening_change__both_parties_approve__version_rolls_out(
    demo, page_for, live_server, smtp_inbox, worker, browser
):
    inbox, _ = smtp_inbox
    admin = page_for("vendor-admin")
    admin.goto(f"{live_server.url}/t/demo/propose/")
    admin.select_option("#f-intel\\.foreign_analysis", "full")
    admin.wait_for_selector("[data-testid=needs]")
    assert admin.inner_text("[data-testid=needs]") == (
        "Loosening (high risk): needs vendor 2 and customer 2."
    )
    admin.fill("#justification", "the exercise needs full foreign-intelligence assistance")
    screenshot(admin, "story-1-propose")
    admin.click("text=Submit for approval")
    admin.wait_for_selector("[data-testid=status]")
    cr = ChangeRequest.objects.get()
    assert admin.inner_text("[data-testid=quorum]") == "vendor 0 of 2, customer 0 of 2"

    for username in ("vendor-reviewer-1", "vendor-reviewer-2"):
        approve_in_console(page_for, live_server, username, cr.pk)
    admin.reload()
    assert admin.inner_text("[data-testid=quorum]") == "vendor 2 of 2, customer 0 of 2"
    screenshot(admin, "story-2-vendor-approved")

    for username in ("customer-reviewer-1", "customer-reviewer-2"):
        address = f"{username}@customer.example"
        wait_until(lambda a=address: inbox.links_for(a), timeout=30, what=f"mail to {address}")
        (link,) = inbox.links_for(address)
        context = browser.new_context()
        page = context.new_page()
        page.goto(link)
        assert ChangeRequest.objects.get().status == "pending"
        screenshot(page, f"story-3-review-link-{username}")
        if page.locator("#password").count():
            page.fill("#password", DEMO_PASSWORD)
        page.click("button[value=approve]")
        page.wait_for_load_state()
        screenshot(page, f"story-4-decided-{username}")
        context.close()

    cr.refresh_from_db()
    assert (cr.status, cr.applied_version) == ("applied", 2)
    channels = sorted(Decision.objects.values_list("channel", flat=True))
    assert channels == ["console", "console", "email", "email"]
    admin.goto(f"{live_server.url}/t/demo/")
    assert admin.inner_text("[data-testid=current-version]") == "2"
    assert admin.inner_text("[data-testid='value-intel.foreign_analysis']") == "full"
    screenshot(admin, "story-5-overview-v2")

    rollout = Rollout.objects.get(version__number=2)
    tokens = demo.new_tokens
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for token in tokens.values():
            response = urllib3.request(
                "GET",
                f"{live_server.url}/api/v1/config",
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            assert response.status == 200
        rollout.refresh_from_db()
        if rollout.status == "completed":
            break
        time.sleep(0.5)
    assert rollout.status == "completed"
    admin.goto(f"{live_server.url}/t/demo/rollouts/{rollout.pk}/")
    assert admin.inner_text("[data-testid=rollout-percent]") == "100%"
    screenshot(admin, "story-6-rollout-complete")
    assert Profile.objects.get().current_version == 2
