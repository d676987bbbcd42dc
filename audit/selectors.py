"""Reads of the audit log: filtered, ordered by sequence, streamed in constant memory."""

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from audit.models import AuditEvent

EVENT_FIELDS = (
    "sequence",
    "created_at",
    "actor",
    "tenant",
    "action",
    "target",
    "data",
    "prev_hash",
    "hash",
)
# Rows fetched from PostgreSQL per round trip when streaming (a server-side cursor).
STREAM_CHUNK = 5000


@dataclass(frozen=True)
class EventFilter:
    """Which events: always limited to `tenants`; the rest narrows further when given."""

    tenants: tuple[str, ...]
    action: str = ""
    actor: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after: int = 0


def audit_events(criteria: EventFilter) -> QuerySet[AuditEvent]:
    """Events in sequence order; `since` is inclusive, `until` exclusive, `after` a sequence."""
    events = AuditEvent.objects.filter(tenant__in=criteria.tenants, sequence__gt=criteria.after)
    if criteria.action:
        events = events.filter(action=criteria.action)
    if criteria.actor:
        events = events.filter(actor=criteria.actor)
    if criteria.since is not None:
        events = events.filter(created_at__gte=criteria.since)
    if criteria.until is not None:
        events = events.filter(created_at__lt=criteria.until)
    return events.order_by("sequence")


def event_record(row: tuple) -> dict:
    """One event as exported: every field its hash covers, plus the hash itself."""
    record = dict(zip(EVENT_FIELDS, row, strict=True))
    record["created_at"] = record["created_at"].isoformat()
    return record


def event_line(row: tuple) -> str:
    """One event as a line of JSON Lines, keys sorted."""
    return json.dumps(event_record(row), sort_keys=True, ensure_ascii=False) + "\n"


def event_rows(events: QuerySet[AuditEvent], limit: int | None = None) -> Iterator[tuple]:
    """Field tuples (in EVENT_FIELDS order) from a server-side cursor, never all at once."""
    rows = events.values_list(*EVENT_FIELDS)
    if limit is not None:
        rows = rows[:limit]
    return rows.iterator(chunk_size=STREAM_CHUNK)


def chain_hashes(*, up_to: int) -> Iterator[tuple[int, str]]:
    """(sequence, hash) of every event of the global chain up to a sequence, streamed."""
    rows = AuditEvent.objects.filter(sequence__lte=up_to).order_by("sequence")
    return rows.values_list("sequence", "hash").iterator(chunk_size=STREAM_CHUNK)


def chain_head() -> tuple[int, str] | None:
    """The last event's sequence and hash."""
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()


def event_lines(rows: Iterable[tuple]) -> Iterator[str]:
    for row in rows:
        yield event_line(row)
