"""audit_record() is the only writer of audit events."""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, ChainBreak, ChainLink, first_break
from audit.models import AuditEvent

# One advisory lock orders every writer of the chain; it is held until the transaction ends.
AUDIT_CHAIN_LOCK = 0x5245444C  # "REDL"


def _actor_label(actor) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    return f"user:{actor.get_username()}"


def audit_record(
    *, actor, action: str, tenant: str = "", target: str = "", data: dict | None = None
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    Must run in a transaction so the event commits or rolls back with the change it records.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit_record must run inside the transaction of the change it records")
    # Hash the data as PostgreSQL's jsonb will give it back (it rewrites 1e16 as an integer,
    # for one), so the stored event verifies. The same query takes the chain's lock.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s), %s::jsonb",
            [AUDIT_CHAIN_LOCK, json.dumps(data or {}, cls=DjangoJSONEncoder)],
        )
        stored = cursor.fetchone()[1]
    clean_data = json.loads(stored) if isinstance(stored, str) else stored
    last = AuditEvent.objects.order_by("-sequence").only("sequence", "hash").first()
    link = ChainLink(
        sequence=(last.sequence + 1) if last else 1,
        created_at=timezone.now(),
        actor=_actor_label(actor),
        tenant=tenant,
        action=action,
        target=target,
        data=clean_data,
        prev_hash=last.hash if last else GENESIS_HASH,
    )
    return AuditEvent.objects.create(
        sequence=link.sequence,
        created_at=link.created_at,
        actor=link.actor,
        tenant=link.tenant,
        action=link.action,
        target=link.target,
        data=link.data,
        prev_hash=link.prev_hash,
        hash=link.compute_hash(),
    )


def audit_verify() -> tuple[int, ChainBreak | None]:
    """Verify the whole chain; returns (events checked, first break or None)."""
    checked = 0

    def links():
        nonlocal checked
        with transaction.atomic():
            for event in AuditEvent.objects.order_by("sequence").iterator(chunk_size=2000):
                checked += 1
                yield event.as_link(), event.hash

    broken = first_break(links())
    return checked, broken
