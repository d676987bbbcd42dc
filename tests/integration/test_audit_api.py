"""GET /api/v1/audit/events: role-based access, sequence cursor, filters, JSON Lines."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from audit.chain import ChainLink
from audit.models import AuditEvent
from tenants.models import Party, Role
from tenants.services import deployment_create, membership_set

User = get_user_model()
URL = "/api/v1/audit/events"


@pytest.fixture
def as_user(demo):
    def login(username: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(User.objects.get(username=username))
        return client

    return login


def demo_sequences(**filters) -> list[int]:
    return list(
        AuditEvent.objects.filter(tenant="demo", **filters)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )


def test_audit_events__auditor_pages_by_sequence__sees_every_demo_event_once(as_user, make_tenant):
    make_tenant("other")
    client = as_user("auditor")
    url, seen, pages = f"{URL}?tenant=demo&limit=7", [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["events"]) <= 7
        seen += [event["sequence"] for event in body["events"]]
        url, pages = body["next"], pages + 1
    assert seen == demo_sequences()
    assert pages == len(seen) // 7 + 1
    assert {e["tenant"] for e in client.get(URL).json()["events"]} == {"demo"}


def test_audit_events__page__carries_every_hashed_field_and_verifies(as_user):
    event = as_user("customer-admin").get(f"{URL}?limit=1").json()["events"][0]
    stored = AuditEvent.objects.get(sequence=event["sequence"])
    assert event == {
        "sequence": stored.sequence,
        "created_at": stored.created_at.isoformat(),
        "actor": stored.actor,
        "tenant": "demo",
        "action": stored.action,
        "target": stored.target,
        "data": stored.data,
        "prev_hash": stored.prev_hash,
        "hash": stored.hash,
    }
    link = ChainLink(
        **{k: event[k] for k in ("sequence", "actor", "tenant", "action", "target", "data")},
        created_at=datetime.fromisoformat(event["created_at"]),
        prev_hash=event["prev_hash"],
    )
    assert link.compute_hash() == event["hash"]


def test_audit_events__filters__action_actor_and_time(as_user):
    tenant = User.objects.get(username="vendor-admin").memberships.get().tenant
    deployment_create(tenant=tenant, slug="extra", actor=User.objects.get(username="vendor-admin"))
    client = as_user("auditor")
    issued = client.get(f"{URL}?action=deployment_token.issued").json()["events"]
    assert [e["sequence"] for e in issued] == demo_sequences(action="deployment_token.issued")
    assert len(issued) == 3
    mine = client.get(f"{URL}?actor=user:vendor-admin").json()["events"]
    assert [(e["action"], e["target"]) for e in mine] == [
        ("deployment.created", "deployment:demo/extra")
    ]
    last = AuditEvent.objects.get(sequence=mine[0]["sequence"])
    since = client.get(URL, {"since": last.created_at.isoformat()}).json()["events"]
    assert [e["sequence"] for e in since] == [last.sequence]
    until = client.get(URL, {"until": last.created_at.isoformat()}).json()["events"]
    assert [e["sequence"] for e in until] == demo_sequences()[:-1]
    later = client.get(URL, {"since": (last.created_at + timedelta(seconds=1)).isoformat()})
    assert later.json() == {"events": [], "next": None}


def test_audit_events__ndjson__streams_every_event_as_a_line(as_user):
    response = as_user("auditor").get(URL, HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in events] == demo_sequences()
    limited = as_user("auditor").get(
        f"{URL}?after={events[1]['sequence']}&limit=2", HTTP_ACCEPT="application/x-ndjson"
    )
    streamed = b"".join(limited.streaming_content).splitlines()
    assert [json.loads(line)["sequence"] for line in streamed] == [
        e["sequence"] for e in events[2:4]
    ]


def test_audit_events__viewer_role__is_403_and_stranger_is_404(as_user, make_user, demo):
    membership_set(
        tenant=demo.tenant, user=make_user("watcher"), party=Party.CUSTOMER, role=Role.VIEWER
    )
    watcher = as_user("watcher")
    response = watcher.get(f"{URL}?tenant=demo")
    assert response.status_code == 403
    assert response.json() == {
        "error": "permission_denied",
        "detail": "your role may not read the audit log of demo",
    }
    assert watcher.get(URL).json()["detail"] == "your roles let you read no tenant's audit log"
    make_user("stranger")
    stranger = as_user("stranger")
    assert stranger.get(f"{URL}?tenant=demo").status_code == 404
    assert stranger.get(f"{URL}?tenant=nowhere").status_code == 404


def test_audit_events__superuser_without_membership__gets_nothing(as_user, make_user):
    make_user("root", is_superuser=True, is_staff=True)
    response = as_user("root").get(f"{URL}?tenant=demo")
    assert response.status_code == 404
    assert as_user("root").get(URL).status_code == 403


def test_audit_events__anonymous__is_refused(demo):
    assert APIClient().get(URL).status_code in (401, 403)


def test_audit_events__bad_parameters__are_400_naming_the_field(as_user):
    response = as_user("auditor").get(f"{URL}?limit=5000")
    assert response.status_code == 400
    assert response.json()["detail"] == "limit: Ensure this value is less than or equal to 1000."
    assert as_user("auditor").get(f"{URL}?since=yesterday").status_code == 400


def test_audit_events__ndjson_line__is_the_page_record_even_on_a_whole_second(as_user, demo):
    from django.db import transaction

    from audit.services import audit_record
    from tests.unit.approvals.conftest import frozen_clock

    whole_second = datetime(2026, 11, 27, 1, 2, 3, tzinfo=UTC)
    with frozen_clock(whole_second), transaction.atomic():
        audit_record(actor="system", action="test.whole_second", tenant="demo", data={"x": 1.5})
    page = as_user("auditor").get(f"{URL}?action=test.whole_second").json()["events"]
    streamed = as_user("auditor").get(
        f"{URL}?action=test.whole_second", HTTP_ACCEPT="application/x-ndjson"
    )
    (line,) = b"".join(streamed.streaming_content).splitlines()
    assert json.loads(line) == page[0]
    assert page[0]["created_at"] == "2026-11-27T01:02:03+00:00"
