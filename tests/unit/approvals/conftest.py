"""Helpers for the approval engine's tests: the demo's people, submit/decide, a frozen clock."""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from approvals.models import ChangeRequest, Channel, Decision, QuorumPolicy
from approvals.services import change_request_decide, change_request_submit, quorum_policy_for
from audit.models import AuditEvent
from toggles.models import Profile, ProfileVersion
from toggles.selectors import effective_config

User = get_user_model()

HIGH_ENUM = "intel.foreign_analysis"  # high tier; off < open_source_only < with_human_review < full
HIGH_BOOL = "intel.domestic_pii_redaction"  # high tier; safe = True, default True
CRITICAL_BOOL = "targeting.target_nomination"  # critical tier; safe = False, default False
CRITICAL_ENUM = "targeting.weapons_technical_detail"  # critical; default public_reference
LOW_TEXT = "classified.banner_text"  # low tier text: any change loosens
HIGH_INT = "intel.bulk_ingestion_cap_records"  # high tier; safer lower, default 100000
SURVEILLANCE = "redline.mass_domestic_surveillance"
WEAPONS = "redline.fully_autonomous_weapons"


@dataclass
class Clock:
    now: datetime

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@contextmanager
def frozen_clock(at: datetime | None = None):
    """Stop the wall clock at `at` (now by default); advance it by hand."""
    clock = Clock(at or timezone.now())
    with mock.patch("django.utils.timezone.now", side_effect=lambda: clock.now):
        yield clock


def person(username: str):
    return User.objects.get(username=username)


def submit(tenant, profile, actor, changes, *, justification="mission need", **extra):
    profile.refresh_from_db()
    return change_request_submit(
        tenant=tenant,
        profile=profile,
        actor=person(actor) if isinstance(actor, str) else actor,
        changes=changes,
        justification=justification,
        base_version=extra.pop("base_version", profile.current_version),
        **extra,
    )


def submit_policy(tenant, actor, changes, *, justification="policy review", base_version=None):
    if base_version is None:
        base_version = quorum_policy_for(tenant).version
    return change_request_submit(
        tenant=tenant,
        actor=person(actor) if isinstance(actor, str) else actor,
        changes=changes,
        justification=justification,
        base_version=base_version,
    )


def decide(cr, actor, verdict="approve", *, comment="", channel=Channel.CONSOLE, **extra):
    result = change_request_decide(
        change_request_id=cr.pk,
        actor=person(actor) if isinstance(actor, str) else actor,
        verdict=verdict,
        channel=channel,
        comment=comment,
        **extra,
    )
    cr.refresh_from_db()
    return result


def approve_all(cr, *names):
    for name in names:
        decide(cr, name)
    return cr


def values_of(profile) -> dict:
    profile.refresh_from_db()
    return effective_config(profile=profile)["values"]


def db_state(profile=None) -> dict:
    """Everything a refused call must leave exactly as it was."""
    state = {
        "requests": list(ChangeRequest.objects.order_by("pk").values_list("pk", "status")),
        "decisions": Decision.objects.count(),
        "versions": ProfileVersion.objects.count(),
        "audit": AuditEvent.objects.count(),
        "policies": list(QuorumPolicy.objects.order_by("pk").values()),
    }
    if profile is not None:
        state["current_version"] = Profile.objects.get(pk=profile.pk).current_version
    return state


def audit_actions(target: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(target=target)
        .order_by("sequence")
        .values_list("action", flat=True)
    )


def trigger_refusal(sql: str, params=()) -> str:
    """Run one statement in a savepoint; return the message the database refused it with."""
    with pytest.raises(IntegrityError) as error, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, params)
    assert error.value.__cause__.sqlstate == "23001"
    return error.value.__cause__.diag.message_primary


@pytest.fixture
def tenant(demo):
    return demo.tenant


@pytest.fixture
def profile(demo):
    return Profile.objects.get(tenant=demo.tenant, name="default")
