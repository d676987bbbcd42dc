"""Audit webhook to a SIEM: signed JSON Lines in order, retried with backoff, never in the way."""

import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from approvals.services import brake_pull
from audit.chain import ChainLink
from audit.models import AuditEvent, AuditWebhookCursor
from audit.webhooks import audit_webhook_forward
from tests.fault.processes import free_port
from tests.unit.approvals.conftest import person
from tests.webhook_receiver import WebhookReceiver
from toggles.signing import jwks, signature_verify


@pytest.fixture
def siem(settings):
    server = WebhookReceiver().start()
    settings.REDLINE_AUDIT_WEBHOOK_URL = server.url("siem")
    settings.REDLINE_AUDIT_WEBHOOK_TIMEOUT_SECONDS = 2
    yield server
    server.stop()


def sequences() -> list[int]:
    return list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))


def received_events(siem) -> list[dict]:
    return [
        json.loads(line)
        for request in siem.received
        if request.answer == 200
        for line in request.body.decode().splitlines()
    ]


def test_forward__every_event__arrives_once_in_order_signed_and_verifiable(siem, demo):
    result = audit_webhook_forward()
    assert result.batches == [(1, sequences()[-1])]
    (request,) = siem.received
    assert signature_verify(request.body, request.signature, jwks())
    assert request.key == f"audit:1-{sequences()[-1]}"
    events = received_events(siem)
    assert [e["sequence"] for e in events] == sequences()
    for event in events:
        link = ChainLink(
            **{k: event[k] for k in ("sequence", "actor", "tenant", "action", "target", "data")},
            created_at=datetime.fromisoformat(event["created_at"]),
            prev_hash=event["prev_hash"],
        )
        assert link.compute_hash() == event["hash"]
    assert audit_webhook_forward().batches == []
    assert len(siem.received) == 1


def test_forward__new_events__only_those_are_sent(siem, demo):
    audit_webhook_forward()
    head = sequences()[-1]
    brake_pull(tenant=demo.tenant, actor=person("vendor-admin"), reason="drill")
    result = audit_webhook_forward()
    assert result.batches == [(head + 1, sequences()[-1])]
    assert [e["sequence"] for e in received_events(siem)] == sequences()


def test_forward__batches__in_order_up_to_the_batch_size(siem, demo, settings):
    settings.REDLINE_AUDIT_WEBHOOK_BATCH = 7
    total = len(sequences())
    result = audit_webhook_forward()
    assert [last - first + 1 for first, last in result.batches] == [7] * (total // 7) + (
        [total % 7] if total % 7 else []
    )
    assert [e["sequence"] for e in received_events(siem)] == sequences()


def test_forward__receiver_fails__cursor_stays_and_the_batch_is_sent_again(siem, demo):
    siem.script("siem", [503])
    now = timezone.now()
    failed = audit_webhook_forward(now=now)
    assert failed.batches == []
    assert failed.error.endswith("HTTP 503: refused 503")
    cursor = AuditWebhookCursor.objects.get()
    assert (cursor.last_sequence, cursor.failures) == (0, 1)
    assert now + timedelta(seconds=1) <= cursor.next_attempt_at <= now + timedelta(seconds=2)
    assert audit_webhook_forward(now=now).waiting_until == cursor.next_attempt_at
    assert len(siem.received) == 1

    later = audit_webhook_forward(now=cursor.next_attempt_at)
    assert later.batches == [(1, sequences()[-1])]
    assert [r.key for r in siem.received] == [f"audit:1-{sequences()[-1]}"] * 2
    assert [e["sequence"] for e in received_events(siem)] == sequences()
    cursor.refresh_from_db()
    assert (cursor.failures, cursor.next_attempt_at, cursor.last_error) == (0, None, "")


def test_forward__siem_down__changes_still_commit_and_arrive_later(demo, settings):
    settings.REDLINE_AUDIT_WEBHOOK_URL = f"http://127.0.0.1:{free_port()}/siem"
    settings.REDLINE_AUDIT_WEBHOOK_TIMEOUT_SECONDS = 1
    brake_pull(tenant=demo.tenant, actor=person("vendor-admin"), reason="drill")
    assert AuditEvent.objects.filter(action="brake.pulled").exists()
    assert audit_webhook_forward().error.startswith("events #1-")
    server = WebhookReceiver().start()
    try:
        AuditWebhookCursor.objects.filter().update(url=server.url("siem"), next_attempt_at=None)
        settings.REDLINE_AUDIT_WEBHOOK_URL = server.url("siem")
        assert audit_webhook_forward().batches == [(1, sequences()[-1])]
    finally:
        server.stop()


def test_forward__no_url__does_nothing(demo, settings):
    settings.REDLINE_AUDIT_WEBHOOK_URL = ""
    assert audit_webhook_forward().batches == []
    assert not AuditWebhookCursor.objects.exists()


def test_metrics__webhook_behind__counts_what_the_siem_has_not_accepted(
    siem, demo, client, settings
):
    settings.METRICS_TOKEN = "t" * 20
    auth = {"HTTP_AUTHORIZATION": "Bearer " + "t" * 20}

    def behind() -> str:
        text = client.get("/metrics", **auth).content.decode()
        return next(line for line in text.splitlines() if line.startswith("redline_audit_webhook"))

    assert behind() == f"redline_audit_webhook_behind_events {float(len(sequences()))}"
    audit_webhook_forward()
    assert behind() == "redline_audit_webhook_behind_events 0.0"
