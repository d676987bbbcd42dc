"""The JSON management API: tenant scoping, the approval flow, errors as clear 4xx."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from approvals.models import ChangeRequest, Decision, RequestStatus
from tenants.models import Party, Role
from tenants.services import membership_set
from toggles.models import Profile, ProfileVersion

User = get_user_model()
BASE = "/api/v1/tenants/demo"


@pytest.fixture
def as_user(demo):
    def login(username: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(User.objects.get(username=username))
        return client

    return login


def submit(client, **overrides):
    body = {
        "base_version": 1,
        "changes": {"intel.foreign_analysis": "full"},
        "justification": "analysts need full assistance for the exercise",
    } | overrides
    return client.post(f"{BASE}/change-requests/", body, format="json")


def test_change_request__loosening_through_api__needs_both_parties_then_applies(as_user):
    created = submit(as_user("vendor-admin"))
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["progress"]["summary"] == "vendor 0 of 2, customer 0 of 2"
    assert body["directions"] == {"intel.foreign_analysis": "loosening"}
    url = f"{BASE}/change-requests/{body['id']}/decide"
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1"):
        response = as_user(name).post(url, {"verdict": "approve"}, format="json")
        assert response.status_code == 200
    assert response.json()["progress"]["summary"] == "vendor 2 of 2, customer 1 of 2"
    assert response.json()["status"] == "pending"
    final = as_user("customer-reviewer-2").post(
        url, {"verdict": "approve", "comment": "agreed", "digest": body["digest"]}, format="json"
    )
    assert final.status_code == 200
    assert (final.json()["status"], final.json()["applied_version"]) == ("applied", 2)
    assert [d["channel"] for d in final.json()["decisions"]] == ["api"] * 4
    versions = as_user("auditor").get(f"{BASE}/profiles/default/versions/").json()
    assert [v["number"] for v in versions] == [2, 1]
    assert versions[0]["values"] == {"intel.foreign_analysis": "full"}
    diff = as_user("auditor").get(f"{BASE}/profiles/default/diff?from=1&to=2").json()
    assert diff["changes"] == [
        {"key": "intel.foreign_analysis", "from": "with_human_review", "to": "full"}
    ]


def test_decide__requester_approves_own_request__403_and_nothing_recorded(as_user, demo):
    requester = User.objects.get(username="vendor-reviewer-1")
    cr_id = submit(as_user("vendor-reviewer-1")).json()["id"]
    requester.is_superuser = True
    requester.save()
    response = as_user("vendor-reviewer-1").post(
        f"{BASE}/change-requests/{cr_id}/decide", {"verdict": "approve"}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": "self_approval",
        "detail": "you requested this change; the requester never decides on their own request",
    }
    assert Decision.objects.count() == 0


def test_submit__red_line_key__403_naming_the_red_line(as_user):
    response = submit(as_user("vendor-admin"), changes={"redline.mass_domestic_surveillance": True})
    assert response.status_code == 403
    assert response.json() == {
        "error": "red_line",
        "detail": "'redline.mass_domestic_surveillance' is a red line: "
        "it can never be changed or removed",
    }
    assert ChangeRequest.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "status", "detail"),
    [
        (
            {"changes": {"no.such.key": 1}},
            400,
            "unknown capability 'no.such.key'; GET /api/v1/capabilities lists the catalog",
        ),
        (
            {"changes": {"logging.retention_days": "long"}},
            400,
            "'logging.retention_days' takes a whole number, not 'long'",
        ),
        (
            {"changes": {"intel.foreign_analysis": "with_human_review"}},
            400,
            "'intel.foreign_analysis' is already 'with_human_review' in version 1; "
            "leave it out of the request",
        ),
        (
            {"base_version": 7},
            409,
            "demo/default is at version 1, not 7; rebuild the change on the current version",
        ),
        ({"justification": ""}, 400, "justification: This field may not be blank."),
    ],
)
def test_submit__bad_input__clear_4xx(as_user, overrides, status, detail):
    response = submit(as_user("vendor-admin"), **overrides)
    assert response.status_code == status
    assert response.json()["detail"] == detail
    assert ChangeRequest.objects.count() == 0


def test_tenant_scoping__other_tenants_objects__404(as_user, make_tenant, make_user):
    other = make_tenant("other-agency")
    outsider = User.objects.get(username="other-agency-vendor-admin")
    cr_id = submit(as_user("vendor-admin")).json()["id"]
    client = APIClient()
    client.force_authenticate(outsider)
    for url in (
        f"{BASE}/change-requests/",
        f"{BASE}/change-requests/{cr_id}/",
        f"{BASE}/profiles/default/versions/",
        f"{BASE}/policy",
    ):
        assert client.get(url).status_code == 404, url
    response = client.post(
        f"{BASE}/change-requests/{cr_id}/decide", {"verdict": "approve"}, format="json"
    )
    assert response.status_code == 404
    assert Decision.objects.count() == 0
    mine = client.get("/api/v1/tenants/").json()
    assert mine == [{"slug": other.slug, "name": other.name}]


def test_tenant_scoping__superuser_without_membership__sees_nothing(demo):
    root = User.objects.create_superuser("root", "root@example.test", "pw")
    client = APIClient()
    client.force_authenticate(root)
    assert client.get("/api/v1/tenants/").json() == []
    assert client.get(f"{BASE}/change-requests/").status_code == 404


def test_policy__lowering_threshold__opens_loosening_request_needing_both(as_user):
    policy = as_user("customer-admin").get(f"{BASE}/policy").json()
    assert policy["values"]["vendor.high"] == 2
    response = as_user("customer-admin").post(
        f"{BASE}/policy",
        {
            "base_version": policy["version"],
            "changes": {"vendor.high": 1},
            "justification": "fewer vendor reviewers on duty",
        },
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["directions"], body["status"]) == (
        "policy",
        {"vendor.high": "loosening"},
        "pending",
    )
    assert body["progress"]["summary"] == "vendor 0 of 2, customer 0 of 2"
    assert as_user("auditor").get(f"{BASE}/policy").json()["values"]["vendor.high"] == 2


def test_brake__reviewer_pulls_all__tightens_at_once_and_stales_pending(as_user, demo):
    pending_id = submit(as_user("vendor-admin")).json()["id"]
    response = as_user("customer-reviewer-1").post(
        f"{BASE}/brake", {"capabilities": "all", "reason": "suspected misuse"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {"versions": {"default": 2}, "unchanged": []}
    version = ProfileVersion.objects.get(profile__name="default", number=2)
    assert version.kind == "brake"
    assert version.values["intel.foreign_analysis"] == "off"
    assert ChangeRequest.objects.get(pk=pending_id).status == RequestStatus.STALE


def test_brake__viewer__403_and_no_version(as_user, demo, make_user):
    membership_set(
        tenant=demo.tenant, user=make_user("watcher"), party=Party.CUSTOMER, role=Role.VIEWER
    )
    response = as_user("watcher").post(
        f"{BASE}/brake", {"capabilities": "all", "reason": "x"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "only admins and reviewers of demo may pull the brake"
    assert Profile.objects.get(name="default").current_version == 1


def test_api_token__bearer_personal_token__authenticates(demo, capsys):
    call_command("issue_api_token", "customer-reviewer-1")
    token = capsys.readouterr().out.strip()
    client = APIClient()
    assert client.get("/api/v1/tenants/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/tenants/").json() == [
        {"slug": "demo", "name": "Department of Example"}
    ]
