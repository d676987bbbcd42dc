"""Audit webhook: the audit chain, as it grows, POSTed to a SIEM (REDLINE_AUDIT_WEBHOOK_URL).

The audit table itself is the outbox: a Celery beat task (audit.tasks) sends the events after
the receiver's cursor, oldest first, in batches of JSON Lines (every field and both hashes,
so the receiver holds an independent copy of the chain it can verify and compare). The
cursor moves only when the receiver answers 2xx, so a failed batch is sent again, with
exponential backoff. Nothing here runs inside the change an event records: a SIEM that is
slow or down never delays or fails a change.

Each request is signed like a rollout webhook: the `Config-Signature` header carries an
Ed25519 signature of the exact body by the key published at GET /api/v1/signing-keys.
`Idempotency-Key` names the batch (first and last sequence) for receivers that deduplicate.

One forwarder at a time: the cursor row is locked (SKIP LOCKED) for the batch's round trip;
another worker that finds it locked leaves the work to it.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, AuditWebhookCursor
from audit.selectors import event_json_blocks
from toggles.delivery import Outcome, backoff_delay, push
from toggles.signing import SIGNATURE_HEADER, keyring

CONTENT_TYPE = "application/x-ndjson"


@dataclass
class Forwarded:
    batches: list[tuple[int, int]] = field(default_factory=list)
    error: str = ""
    waiting_until: datetime | None = None


def _setting(name: str):
    return getattr(settings, f"REDLINE_AUDIT_WEBHOOK_{name}")


def audit_webhook_forward(*, now: datetime | None = None, max_batches: int = 20) -> Forwarded:
    """Send what the receiver has not had yet, batch after batch, until caught up, a
    failure, or `max_batches`. Safe to run at any time and from any number of workers."""
    result = Forwarded()
    url = _setting("URL")
    if not url:
        return result
    AuditWebhookCursor.objects.get_or_create(url=url)
    for _ in range(max_batches):
        sent = _forward_batch(url, now or timezone.now(), result)
        if not sent:
            break
    return result


def _forward_batch(url: str, now: datetime, result: Forwarded) -> bool:
    """One batch in one transaction that holds the cursor; True when it was delivered."""
    with transaction.atomic():
        cursor = (
            AuditWebhookCursor.objects.select_for_update(skip_locked=True).filter(url=url).first()
        )
        if cursor is None:
            return False
        if cursor.next_attempt_at and cursor.next_attempt_at > now:
            result.waiting_until = cursor.next_attempt_at
            return False
        events = AuditEvent.objects.filter(sequence__gt=cursor.last_sequence).order_by("sequence")
        bounds = list(events.values_list("sequence", flat=True)[: _setting("BATCH")])
        if not bounds:
            return False
        first, last = bounds[0], bounds[-1]
        body = "".join(event_json_blocks(events.filter(sequence__lte=last))).encode()
        answer = push(
            url=url,
            body=body,
            headers={
                "Content-Type": CONTENT_TYPE,
                SIGNATURE_HEADER: keyring().sign(body),
                "Idempotency-Key": f"audit:{first}-{last}",
                "Audit-First-Sequence": str(first),
                "Audit-Last-Sequence": str(last),
            },
            timeout=_setting("TIMEOUT_SECONDS"),
        )
        if answer.outcome == Outcome.DELIVERED:
            cursor.last_sequence = last
            cursor.last_sent_at = now
            cursor.failures = 0
            cursor.next_attempt_at = None
            cursor.last_error = ""
            result.batches.append((first, last))
        else:
            cursor.failures += 1
            delay = backoff_delay(
                cursor.failures,
                base=_setting("BACKOFF_SECONDS"),
                cap=_setting("BACKOFF_MAX_SECONDS"),
            )
            cursor.next_attempt_at = now + timedelta(seconds=delay)
            cursor.last_error = f"events #{first}-#{last}: {answer.detail}"
            result.error = cursor.last_error
            result.waiting_until = cursor.next_attempt_at
        cursor.save()
        return answer.outcome == Outcome.DELIVERED
