"""The rollout API (progress, resume) and roll back through a change request."""

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient

from approvals.models import ChangeRequest
from tenants.models import Party, Role
from tenants.services import deployment_create, membership_set
from tests.integration.config_api_support import serving_forget
from tests.webhook_receiver import WebhookReceiver
from toggles.models import Profile, Rollout, VersionKind
from toggles.rollout import rollout_advance, targets_deliver
from toggles.services import profile_version_create

User = get_user_model()
BASE = "/api/v1/tenants/demo"


@pytest.fixture(autouse=True)
def no_documents_of_other_runs():
    serving_forget()
    yield
    serving_forget()


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def as_user(demo):
    def login(username: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(User.objects.get(username=username))
        return client

    return login


def new_version(tenant, limit: int) -> Rollout:
    """A version lowering (tightening) or raising (loosening) the rate limit from 600,
    and its rollout started."""
    profile = Profile.objects.get(tenant=tenant, name="default")
    version = profile_version_create(
        profile=profile,
        changes={"usage.rate_limit_per_minute": limit},
        actor=None,
        reason="another rate limit",
        kind=VersionKind.TIGHTENING if limit < 600 else VersionKind.CHANGE_REQUEST,
    )
    rollout = Rollout.objects.get(version=version)
    rollout_advance(rollout_id=rollout.pk)
    return rollout


@pytest.fixture
def paused(demo, receiver):
    """Version 2 of demo/default (a loosening, so canaries go first) paused: its one push
    canary answered 410."""
    deployment_create(
        tenant=demo.tenant, slug="edge-canary", webhook_url=receiver.url("edge"), is_canary=True
    )
    receiver.script("edge", [410])
    rollout = new_version(demo.tenant, 700)
    push = rollout.targets.filter(deployment__slug="edge-canary")
    targets_deliver(target_ids=list(push.values_list("pk", flat=True)))
    rollout_advance(rollout_id=rollout.pk)
    return rollout


def test_list__counts_per_status__newest_first(as_user, paused):
    response = as_user("auditor").get(f"{BASE}/rollouts/")
    assert response.status_code == 200
    first, second = response.json()
    assert (first["version"], first["status"], first["wave"]) == (2, "paused", "canary")
    assert first["counts"] == {
        "pending": 3,
        "delivering": 0,
        "delivered": 0,
        "failed": 1,
        "superseded": 0,
    }
    assert (second["version"], second["status"], second["superseded_by_version"]) == (
        1,
        "superseded",
        2,
    )
    only_paused = as_user("auditor").get(f"{BASE}/rollouts/?status=paused").json()
    assert [r["version"] for r in only_paused] == [2]


def test_detail__progress_per_wave_and_every_target(as_user, paused):
    body = as_user("auditor").get(f"{BASE}/rollouts/{paused.pk}/").json()
    assert body["status_reason"] == (
        "canary edge-canary failed: HTTP 410: refused 410; "
        "resume the rollout or roll back to an earlier version"
    )
    assert body["progress"]["total"] == 4
    assert body["progress"]["by_wave"]["canary"] == {
        "pending": 1,
        "delivering": 0,
        "delivered": 0,
        "failed": 1,
        "superseded": 0,
    }
    assert body["progress"]["by_wave"]["general"]["pending"] == 2
    targets = {t["deployment"]: t for t in body["targets"]}
    assert set(targets) == {"edge-canary", "analyst-unclass", "analyst-classified", "cyber-defence"}
    edge = targets["edge-canary"]
    assert (edge["wave"], edge["mode"], edge["status"], edge["attempts"]) == (
        "canary",
        "push",
        "failed",
        1,
    )
    assert edge["last_error"] == "HTTP 410: refused 410"
    assert (targets["cyber-defence"]["mode"], targets["cyber-defence"]["released_at"]) == (
        "pull",
        None,
    )


def test_other_tenant__404_for_list_detail_and_resume(make_tenant, paused):
    make_tenant("other")
    outsider = APIClient()
    outsider.force_authenticate(User.objects.get(username="other-vendor-admin"))
    assert outsider.get(f"{BASE}/rollouts/").status_code == 404
    assert outsider.get(f"{BASE}/rollouts/{paused.pk}/").status_code == 404
    response = outsider.post(f"{BASE}/rollouts/{paused.pk}/resume", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert Rollout.objects.get(pk=paused.pk).status == "paused"


def test_resume__admin__rollout_active_and_everyone_released(as_user, paused, receiver):
    response = as_user("customer-admin").post(
        f"{BASE}/rollouts/{paused.pk}/resume", {"reason": "edge fixed"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["wave"], body["counts"]["pending"]) == ("active", "general", 4)


@pytest.mark.parametrize(
    ("username", "status", "error"),
    [("vendor-reviewer-1", 403, "permission_denied"), ("auditor", 403, "permission_denied")],
)
def test_resume__not_an_admin__403(as_user, paused, username, status, error):
    response = as_user(username).post(
        f"{BASE}/rollouts/{paused.pk}/resume", {"reason": "go"}, format="json"
    )
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert Rollout.objects.get(pk=paused.pk).status == "paused"


def test_resume__rollout_not_paused__409(as_user, demo):
    rollout = new_version(demo.tenant, 500)
    response = as_user("vendor-admin").post(
        f"{BASE}/rollouts/{rollout.pk}/resume", {"reason": "go"}, format="json"
    )
    assert response.status_code == 409
    assert response.json() == {
        "error": "not_resumable",
        "detail": "the rollout of version 2 is active; only paused or failed rollouts "
        "can be resumed",
    }


@override_settings(REDLINE_ROLLOUT_MAX_ATTEMPTS=1)
def test_rollback__restores_earlier_values_as_a_classified_change_request(as_user, demo):
    new_version(demo.tenant, 500)
    response = as_user("vendor-admin").post(
        f"{BASE}/profiles/default/rollback",
        {"to_version": 1, "justification": "the canary misbehaved"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["base_version"] == 2
    assert body["changes"] == {"usage.rate_limit_per_minute": 600}
    assert body["directions"] == {"usage.rate_limit_per_minute": "loosening"}
    assert body["justification"] == "roll back to version 1: the canary misbehaved"
    assert body["progress"]["summary"].startswith("vendor 0 of ")
    assert ChangeRequest.objects.get(pk=body["id"]).is_loosening


@pytest.mark.parametrize(
    ("to_version", "detail"),
    [
        (2, "demo/default is at version 2; roll back to a version from 1 to 1"),
        (5, "demo/default is at version 2; roll back to a version from 1 to 1"),
    ],
)
def test_rollback__not_an_earlier_version__400(as_user, demo, to_version, detail):
    new_version(demo.tenant, 500)
    response = as_user("vendor-admin").post(
        f"{BASE}/profiles/default/rollback",
        {"to_version": to_version, "justification": "undo"},
        format="json",
    )
    assert (response.status_code, response.json()["detail"]) == (400, detail)
    assert not ChangeRequest.objects.exists()


def test_rollback__viewer_may_not_propose__403(as_user, demo, make_user):
    new_version(demo.tenant, 500)
    viewer = make_user("demo-viewer")
    membership_set(tenant=demo.tenant, user=viewer, party=Party.VENDOR, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(viewer)
    response = client.post(
        f"{BASE}/profiles/default/rollback",
        {"to_version": 1, "justification": "undo"},
        format="json",
    )
    assert response.status_code == 403
    assert not ChangeRequest.objects.exists()
