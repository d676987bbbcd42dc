"""DESIGN invariant 7: audit events are append-only and their hash chain verifies end to end."""

import dataclasses
import datetime
import decimal
import itertools
import threading
import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction

from audit.chain import GENESIS_HASH
from audit.models import AuditEvent
from audit.services import audit_record, audit_verify

UPDATE_REFUSED = "audit events are append-only; they can never be updated"
DELETE_REFUSED = "audit events are append-only; they can never be deleted"


def verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def event_rows() -> list[dict]:
    return list(AuditEvent.objects.order_by("sequence").values())


@pytest.fixture
def events(db):
    """Five events of a fresh chain."""
    for number in range(1, 6):
        audit_record(actor=f"user:person-{number}", action="test.event", data={"n": number})
    return event_rows()


def tamper(sql: str, params=()) -> None:
    """Change audit rows behind the trigger's back, as an attacker with table rights could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


# Writing -----------------------------------------------------------------------------------


def test_audit_record__events__chained_from_genesis(events):
    assert [row["sequence"] for row in events] == [1, 2, 3, 4, 5]
    assert events[0]["prev_hash"] == GENESIS_HASH
    for previous, row in itertools.pairwise(events):
        assert row["prev_hash"] == previous["hash"]
    assert len({row["hash"] for row in events}) == 5


@pytest.mark.django_db(transaction=True)
def test_audit_record__outside_a_transaction__runtime_error_and_nothing_written():
    with pytest.raises(RuntimeError) as error:
        audit_record(actor=None, action="test.event")
    assert str(error.value) == (
        "audit_record must run inside the transaction of the change it records"
    )
    assert AuditEvent.objects.count() == 0


def test_audit_record__actor_kinds__labelled(db, make_user):
    audit_record(actor=None, action="a")
    audit_record(actor="service:rollout", action="b")
    audit_record(actor=make_user("alice"), action="c")
    assert list(AuditEvent.objects.values_list("actor", flat=True)) == [
        "system",
        "service:rollout",
        "user:alice",
    ]


def test_audit_record__rich_and_awkward_json__stored_as_hashed_and_verifies(db):
    data = {
        "when": datetime.datetime(2026, 5, 1, 12, 30, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 5, 1),
        "amount": decimal.Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "large_float": 1e16,
        "huge_float": 1.5e300,
        "tiny_float": 1e-7,
        "whole_float": 5.0,
        "negative_zero": -0.0,
        "big_int": 2**70,
        "text": 'Ünïcödé ✓ "quoted" \\ back',
        "nested": {"b": [1, 2.5, None, True], "a": {}},
    }
    event = audit_record(actor=None, action="test.rich", data=data)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.as_link().compute_hash() == stored.hash
    assert audit_verify() == (1, None)


# Ordering under concurrency ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_audit_record__many_writers_at_once__contiguous_sequence_and_chain_verifies():
    writers, per_writer = 6, 15
    barrier = threading.Barrier(writers)
    errors = []

    def write(writer: int) -> None:
        try:
            barrier.wait()
            for number in range(per_writer):
                with transaction.atomic():
                    audit_record(
                        actor=f"user:writer-{writer}",
                        action="test.concurrent",
                        data={"writer": writer, "n": number},
                    )
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = event_rows()
    assert [row["sequence"] for row in rows] == list(range(1, writers * per_writer + 1))
    for writer in range(writers):
        mine = [row["data"]["n"] for row in rows if row["data"]["writer"] == writer]
        assert mine == list(range(per_writer))
    assert verify() == f"audit chain verifies: {writers * per_writer} events\n"


@pytest.mark.django_db(transaction=True)
def test_audit_record__rolled_back_writer__leaves_no_gap():
    with transaction.atomic():
        audit_record(actor=None, action="test.kept")
    with pytest.raises(ValueError, match=r"^abandon$"), transaction.atomic():
        audit_record(actor=None, action="test.abandoned")
        raise ValueError("abandon")
    with transaction.atomic():
        audit_record(actor=None, action="test.kept")
    assert list(AuditEvent.objects.values_list("sequence", "action")) == [
        (1, "test.kept"),
        (2, "test.kept"),
    ]
    assert verify() == "audit chain verifies: 2 events\n"


# verify_audit --------------------------------------------------------------------------------


def test_verify_audit__empty_chain__zero_events(db):
    assert verify() == "audit chain verifies: 0 events\n"


def test_verify_audit__after_seed_demo__verifies_every_event(demo):
    count = AuditEvent.objects.count()
    assert count > 10
    assert verify() == f"audit chain verifies: {count} events\n"


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE audit_auditevent SET data = %s::jsonb WHERE sequence = 3", ['{"n": 33}']),
        ("UPDATE audit_auditevent SET actor = 'user:someone-else' WHERE sequence = 3", []),
        ("UPDATE audit_auditevent SET action = 'test.other' WHERE sequence = 3", []),
        (
            "UPDATE audit_auditevent SET created_at = created_at - interval '1 day'"
            " WHERE sequence = 3",
            [],
        ),
        ("UPDATE audit_auditevent SET tenant = 'acme' WHERE sequence = 3", []),
    ],
    ids=["data", "actor", "action", "time", "tenant"],
)
def test_verify_audit__event_tampered__names_that_event(events, sql, params):
    tamper(sql, params)
    with pytest.raises(CommandError) as error:
        verify()
    assert str(error.value) == (
        "audit chain broken at audit event #3: hash does not match the event's contents "
        "(3 events read)"
    )


def test_verify_audit__tampered_event_given_a_fresh_hash__next_event_named(events):
    row = AuditEvent.objects.get(sequence=3)
    forged = dataclasses.replace(row.as_link(), data={"n": 33})
    tamper(
        "UPDATE audit_auditevent SET data = %s::jsonb, hash = %s WHERE sequence = 3",
        ['{"n": 33}', forged.compute_hash()],
    )
    with pytest.raises(CommandError) as error:
        verify()
    assert str(error.value) == (
        "audit chain broken at audit event #4: previous hash does not match the event before it "
        "(4 events read)"
    )


def test_verify_audit__middle_event_deleted__gap_named(events):
    tamper("DELETE FROM audit_auditevent WHERE sequence = 3")
    with pytest.raises(CommandError) as error:
        verify()
    assert str(error.value) == (
        "audit chain broken at audit event #4: sequence gap: expected #3, found #4 (3 events read)"
    )


def test_verify_audit__first_event_deleted__caught(events):
    tamper("DELETE FROM audit_auditevent WHERE sequence = 1")
    with pytest.raises(CommandError) as error:
        verify()
    assert str(error.value) == (
        "audit chain broken at audit event #2: previous hash does not match the event before it "
        "(1 events read)"
    )


# Append-only guards ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "operation"),
    [
        ("UPDATE audit_auditevent SET data = '{}'::jsonb WHERE sequence = %s", "UPDATE"),
        ("UPDATE audit_auditevent SET hash = prev_hash WHERE sequence = %s", "UPDATE"),
        ("DELETE FROM audit_auditevent WHERE sequence = %s", "DELETE"),
    ],
)
def test_raw_sql__audit_event__refused_by_trigger(events, sql, operation):
    with pytest.raises(IntegrityError) as error, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, [2])
    assert error.value.__cause__.diag.message_primary == (
        f"audit events are append-only: {operation} of event #2 refused"
    )
    assert event_rows() == events


def test_raw_sql__delete_every_event__refused_by_trigger(events):
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
    assert event_rows() == events


def test_audit_event_save__existing__refused(events):
    event = AuditEvent.objects.get(sequence=2)
    event.action = "test.rewritten"
    with pytest.raises(PermissionError) as error:
        event.save()
    assert str(error.value) == UPDATE_REFUSED
    assert event_rows() == events


def test_audit_event_delete__existing__refused(events):
    with pytest.raises(PermissionError) as error:
        AuditEvent.objects.get(sequence=2).delete()
    assert str(error.value) == DELETE_REFUSED
    assert event_rows() == events


def test_audit_event_queryset_update__refused(events):
    with pytest.raises(PermissionError) as error:
        AuditEvent.objects.filter(sequence=2).update(action="test.rewritten")
    assert str(error.value) == UPDATE_REFUSED
    assert event_rows() == events


def test_audit_event_queryset_delete__refused(events):
    with pytest.raises(PermissionError) as error:
        AuditEvent.objects.all().delete()
    assert str(error.value) == DELETE_REFUSED
    assert event_rows() == events


def test_audit_event_queryset_bulk_update__refused(events):
    event = AuditEvent.objects.get(sequence=2)
    event.action = "test.rewritten"
    with pytest.raises(PermissionError) as error:
        AuditEvent.objects.bulk_update([event], ["action"])
    assert str(error.value) == UPDATE_REFUSED
    assert event_rows() == events


def test_audit_event_queryset_bulk_create__refused(events):
    with pytest.raises(PermissionError) as error:
        AuditEvent.objects.bulk_create([AuditEvent(sequence=6, action="x", prev_hash="", hash="")])
    assert str(error.value) == (
        "audit events are written one by one by audit.services.audit_record"
    )
    assert event_rows() == events


def test_audit_event_save__new_instance_reusing_a_pk__refused_by_database(events):
    row = AuditEvent.objects.filter(sequence=2).values().get()
    copy = AuditEvent(**{**row, "action": "test.rewritten"})
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        copy.save()
    assert error.value.__cause__.diag.message_primary == (
        "audit events are append-only: UPDATE of event #2 refused"
    )
    assert event_rows() == events
