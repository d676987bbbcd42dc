"""The console, server side: pages render, actions go through services, forgeries fail."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from approvals.models import ChangeRequest, Decision, RequestStatus
from audit.models import AuditEvent
from tenants.models import Deployment, DeploymentToken
from toggles.models import Profile, ProfileVersion, Rollout
from toggles.rollout import rollout_advance
from toggles.signing import jwks, signature_verify

User = get_user_model()
T = "/t/demo"


@pytest.fixture
def as_user(demo):
    def login(username: str) -> Client:
        client = Client()
        client.force_login(User.objects.get(username=username))
        return client

    return login


def propose(client, **fields):
    data = {
        "profile": "default",
        "base_version": "1",
        "justification": "exercise needs it",
    } | fields
    return client.post(f"{T}/propose/", data)


def test_overview__red_lines__shown_locked_with_why(as_user):
    response = as_user("auditor").get(f"{T}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-key="redline.mass_domestic_surveillance"' in html
    assert "A red line: fixed forever." in html
    policy = set(response.headers["Content-Security-Policy"].split("; "))
    assert {"default-src 'self'", "script-src 'self'", "style-src 'self'"} <= policy


def test_overview__anonymous__redirected_to_login(demo):
    response = Client().get(f"{T}/")
    assert (response.status_code, response.headers["Location"]) == (302, f"/login/?next={T}/")


def test_overview__other_tenant_member__404(as_user, make_tenant):
    make_tenant("other-agency")
    client = Client()
    client.force_login(User.objects.get(username="other-agency-vendor-admin"))
    assert client.get(f"{T}/").status_code == 404
    assert client.get(f"{T}/requests/").status_code == 404


def test_propose__loosening__preview_names_quorum_then_submits(as_user):
    client = as_user("vendor-admin")
    page = client.get(f"{T}/propose/").content.decode()
    assert 'name="cap:intel.foreign_analysis"' in page
    assert 'name="cap:redline.mass_domestic_surveillance"' not in page
    preview = client.post(
        f"{T}/propose/preview", {"profile": "default", "cap:intel.foreign_analysis": "full"}
    ).content.decode()
    assert "loosening" in preview
    assert "needs vendor 2 and customer 2" in preview
    response = propose(client, **{"cap:intel.foreign_analysis": "full"})
    cr = ChangeRequest.objects.get()
    assert (response.status_code, response.headers["Location"]) == (302, f"{T}/requests/{cr.pk}/")
    assert cr.changes == {"intel.foreign_analysis": "full"}


def test_propose__forged_red_line_field__refused_with_message(as_user):
    response = propose(as_user("vendor-admin"), **{"cap:redline.fully_autonomous_weapons": "true"})
    assert response.status_code == 403
    assert (
        "&#x27;redline.fully_autonomous_weapons&#x27; is a red line: it can never be changed "
        "or removed"
    ) in response.content.decode()
    assert ChangeRequest.objects.count() == 0


def test_propose__viewer_role__403(as_user):
    assert as_user("auditor").get(f"{T}/propose/").status_code == 403
    assert propose(as_user("auditor"), **{"cap:intel.foreign_analysis": "full"}).status_code == 403
    assert ChangeRequest.objects.count() == 0


def test_request__requester__sees_no_approve_and_forged_post_refused(as_user):
    propose(as_user("vendor-reviewer-1"), **{"cap:intel.foreign_analysis": "full"})
    cr = ChangeRequest.objects.get()
    page = as_user("vendor-reviewer-1").get(f"{T}/requests/{cr.pk}/").content.decode()
    assert 'value="approve"' not in page
    assert "You requested this change, so you cannot decide on it." in page
    forged = as_user("vendor-reviewer-1").post(
        f"{T}/requests/{cr.pk}/decide", {"verdict": "approve"}
    )
    assert forged.status_code == 403
    assert "the requester never decides on their own request" in forged.content.decode()
    assert Decision.objects.count() == 0


def test_request__reviewer_approves_in_console__decision_channel_console(as_user):
    propose(as_user("vendor-admin"), **{"cap:intel.foreign_analysis": "full"})
    cr = ChangeRequest.objects.get()
    page = as_user("customer-reviewer-1").get(f"{T}/requests/{cr.pk}/").content.decode()
    assert 'value="approve"' in page
    assert "vendor 0 of 2, customer 0 of 2" in page
    response = as_user("customer-reviewer-1").post(
        f"{T}/requests/{cr.pk}/decide", {"verdict": "approve", "digest": cr.digest}
    )
    assert response.status_code == 302
    decision = Decision.objects.get()
    assert (decision.channel, decision.party) == ("console", "customer")
    after = as_user("customer-reviewer-1").get(f"{T}/requests/{cr.pk}/").content.decode()
    assert "vendor 0 of 2, customer 1 of 2" in after
    assert 'value="approve"' not in after


def test_brake__two_steps__confirm_page_then_tightens(as_user):
    client = as_user("customer-reviewer-2")
    confirm = client.post(
        f"{T}/brake/", {"profile": "default", "scope": "all", "reason": "incident"}
    )
    assert confirm.status_code == 200
    assert "Confirm the emergency brake" in confirm.content.decode()
    assert Profile.objects.get().current_version == 1
    done = client.post(
        f"{T}/brake/",
        {"profile": "default", "scope": "all", "reason": "incident", "confirmed": "yes"},
    )
    assert done.status_code == 302
    version = ProfileVersion.objects.get(number=2)
    assert (version.kind, version.values["intel.foreign_analysis"]) == ("brake", "off")


def test_brake__auditor__403_and_nothing_changes(as_user):
    response = as_user("auditor").post(
        f"{T}/brake/", {"scope": "all", "reason": "x", "confirmed": "yes"}
    )
    assert response.status_code == 403
    assert Profile.objects.get().current_version == 1


def test_deployments__admin_issues_token_shown_once(as_user):
    before = DeploymentToken.objects.count()
    response = as_user("customer-admin").post(f"{T}/deployments/cyber-defence/tokens")
    html = response.content.decode()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = DeploymentToken.objects.order_by("-pk").first()
    assert DeploymentToken.objects.count() == before + 1
    assert f'data-testid="new-token">{token.prefix}' in html
    listing = as_user("customer-admin").get(f"{T}/deployments/").content.decode()
    assert token.prefix in listing and html.split('new-token">')[1][:40] not in listing


def test_deployments__reviewer_forges_token_issue__403(as_user):
    before = DeploymentToken.objects.count()
    assert (
        as_user("vendor-reviewer-1").post(f"{T}/deployments/cyber-defence/tokens").status_code
        == 403
    )
    assert DeploymentToken.objects.count() == before


def test_audit__auditor_exports_json_lines_that_chain(as_user):
    response = as_user("auditor").get(f"{T}/audit/export.jsonl")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert len(lines) == AuditEvent.objects.filter(tenant="demo").count()
    assert all(line["tenant"] == "demo" for line in lines)
    page = as_user("auditor").get(f"{T}/audit/").content.decode()
    assert "The audit chain verifies end to end" in page


def test_audit__reviewer__403(as_user):
    assert as_user("vendor-reviewer-1").get(f"{T}/audit/").status_code == 403


def test_versions__diff_between_two(as_user):
    as_user("vendor-reviewer-1").post(
        f"{T}/brake/",
        {
            "profile": "default",
            "scope": "chosen",
            "capability": ["intel.foreign_analysis"],
            "reason": "r",
            "confirmed": "yes",
        },
    )
    page = as_user("auditor").get(f"{T}/versions/?from=1&to=2").content.decode()
    assert "<code>intel.foreign_analysis</code>: with_human_review → <strong>off</strong>" in page


def test_policy__lowering_threshold_in_console__opens_request(as_user):
    response = as_user("customer-admin").post(
        f"{T}/policy/", {"base_version": "1", "vendor.high": "1", "justification": "staffing"}
    )
    cr = ChangeRequest.objects.get()
    assert response.status_code == 302
    assert (cr.kind, cr.changes, cr.status) == ("policy", {"vendor.high": 1}, RequestStatus.PENDING)


def test_login__repeated_failures__locked_out(demo):
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "vendor-admin", "password": "wrong"})
    locked = client.post(
        "/login/", {"username": "vendor-admin", "password": "demo-password-for-tests"}
    )
    assert locked.status_code == 429
    assert "Too many failed log-ins" in locked.content.decode()


def test_rollout__after_brake__page_shows_targets_and_polls_while_live(as_user):
    as_user("customer-reviewer-2").post(
        f"{T}/brake/", {"profile": "default", "scope": "all", "reason": "r", "confirmed": "yes"}
    )
    rollout = Rollout.objects.get(version__number=2)
    rollout_advance(rollout_id=rollout.pk)
    page = as_user("auditor").get(f"{T}/rollouts/{rollout.pk}/").content.decode()
    assert 'data-deployment="analyst-unclass"' in page
    assert 'data-deployment="cyber-defence"' in page
    partial = as_user("auditor").get(f"{T}/rollouts/{rollout.pk}/", HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert body.lstrip().startswith('<section id="rollout-progress"')
    assert 'hx-trigger="every 2s"' in body
    overview = as_user("auditor").get(f"{T}/").content.decode()
    assert 'data-testid="overview-rollout-status"' in overview


def test_rollout__rollback_proposed__opens_change_request(as_user):
    as_user("customer-reviewer-2").post(
        f"{T}/brake/", {"profile": "default", "scope": "all", "reason": "r", "confirmed": "yes"}
    )
    rollout = Rollout.objects.get(version__number=2)
    response = as_user("vendor-admin").post(
        f"{T}/rollouts/{rollout.pk}/rollback", {"to_version": "1", "justification": "undo"}
    )
    cr = ChangeRequest.objects.get()
    assert response.status_code == 302
    assert (cr.is_loosening, cr.changes["intel.foreign_analysis"]) == (True, "with_human_review")


def test_rollout__reviewer_forges_resume__403(as_user):
    as_user("customer-reviewer-2").post(
        f"{T}/brake/", {"profile": "default", "scope": "all", "reason": "r", "confirmed": "yes"}
    )
    rollout = Rollout.objects.get(version__number=2)
    response = as_user("vendor-reviewer-1").post(
        f"{T}/rollouts/{rollout.pk}/resume", {"reason": "x"}
    )
    assert response.status_code == 403
    assert "only admins of demo may resume a rollout" in response.content.decode()


def test_deployments__webhook_saved_and_test_ping_signed(as_user):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/redline"
    client = as_user("vendor-admin")
    try:
        saved = client.post(f"{T}/deployments/cyber-defence/webhook", {"webhook_url": url})
        assert saved.status_code == 302
        assert Deployment.objects.get(slug="cyber-defence").webhook_url == url
        pinged = client.post(f"{T}/deployments/cyber-defence/webhook/test", follow=True)
    finally:
        server.shutdown()
    assert "Ping to cyber-defence answered" in pinged.content.decode()
    (path, headers, body) = received[0]
    assert (path, headers["Redline-Event"], json.loads(body)["type"]) == (
        "/redline",
        "ping",
        "ping",
    )
    assert signature_verify(body, headers["Config-Signature"], jwks())
    assert AuditEvent.objects.filter(action="deployment.webhook_changed").count() == 1


def test_deployments__invalid_webhook_url__400_and_unchanged(as_user):
    response = as_user("vendor-admin").post(
        f"{T}/deployments/cyber-defence/webhook", {"webhook_url": "ftp://files.example.com/x"}
    )
    assert response.status_code == 400
    assert "is not a valid http(s) URL" in response.content.decode()
    assert Deployment.objects.get(slug="cyber-defence").webhook_url == ""
