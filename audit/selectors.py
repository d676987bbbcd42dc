"""Reads of the audit log: filtered, ordered by sequence, streamed in constant memory."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

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
# Lines joined into one block of about this many characters before it is handed on.
BLOCK_SIZE = 1 << 16
_COLUMN = '"audit_auditevent"."{}"'.format
# One event as a line of JSON, built by PostgreSQL: the fields as event_record gives them,
# created_at in Python's isoformat (no fraction when it is zero), data as stored.
_LINE_SQL = f"""json_build_object(
    'sequence', {_COLUMN("sequence")},
    'created_at', to_char({_COLUMN("created_at")} AT TIME ZONE 'UTC',
        CASE WHEN mod(date_part('microseconds', {_COLUMN("created_at")})::int, 1000000) = 0
        THEN 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'
        ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"' END),
    'actor', {_COLUMN("actor")},
    'tenant', {_COLUMN("tenant")},
    'action', {_COLUMN("action")},
    'target', {_COLUMN("target")},
    'data', {_COLUMN("data")},
    'prev_hash', {_COLUMN("prev_hash")},
    'hash', {_COLUMN("hash")})::text"""


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


def event_rows(events: QuerySet[AuditEvent], limit: int | None = None) -> Iterator[tuple]:
    """Field tuples (in EVENT_FIELDS order) from a server-side cursor, never all at once."""
    rows = events.values_list(*EVENT_FIELDS)
    if limit is not None:
        rows = rows[:limit]
    return rows.iterator(chunk_size=STREAM_CHUNK)


def event_json_blocks(events: QuerySet[AuditEvent], limit: int | None = None) -> Iterator[str]:
    """The events as JSON Lines, in blocks of whole lines, from a server-side cursor.

    Read in a transaction of its own, so the cursor is not declared WITH HOLD (which would
    make PostgreSQL copy the whole result before the first row) and all rows come from one
    snapshot.
    """
    line = RawSQL(_LINE_SQL, ())  # noqa: S611 (constant SQL, no input in it)
    lines = events.annotate(line=line).values_list("line", flat=True)
    if limit is not None:
        lines = lines[:limit]
    with transaction.atomic():
        yield from _blocks(lines.iterator(chunk_size=STREAM_CHUNK))


def chain_blocks(*, up_to: int) -> Iterator[str]:
    """ "<sequence> <hash>" lines for every event of the global chain up to a sequence."""
    line = RawSQL(f"{_COLUMN('sequence')}::text || ' ' || {_COLUMN('hash')}", ())  # noqa: S611
    lines = (
        AuditEvent.objects.filter(sequence__lte=up_to)
        .order_by("sequence")
        .annotate(line=line)
        .values_list("line", flat=True)
    )
    return _blocks(lines.iterator(chunk_size=STREAM_CHUNK))


def _blocks(lines: Iterable[str]) -> Iterator[str]:
    """Join lines into blocks of about BLOCK_SIZE characters: one write each, not one per line."""
    block, size = [], 0
    for line in lines:
        block.append(line)
        size += len(line) + 1
        if size >= BLOCK_SIZE:
            block.append("")
            yield "\n".join(block)
            block, size = [], 0
    if block:
        block.append("")
        yield "\n".join(block)


def chain_head() -> tuple[int, str] | None:
    """The last event's sequence and hash."""
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()
