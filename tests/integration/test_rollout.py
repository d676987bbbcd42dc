"""Rollout rules against real PostgreSQL and a real HTTP receiver.

Each test does in this process, step by step, what the Celery tasks do (they only call these
functions with ids); tests/fault runs the same through real workers.
"""

import ast
import json

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent
from config.errors import ValidationFailed
from tenants.models import Deployment, Party, Role
from tenants.services import deployment_create, membership_set, tenant_create
from tests.integration.config_api_support import serving_forget
from tests.webhook_receiver import TIMEOUT, WebhookReceiver
from toggles.models import (
    DeploymentDelivery,
    Profile,
    ProfileVersion,
    Rollout,
    RolloutStatus,
    RolloutTarget,
    TargetStatus,
    VersionKind,
    Wave,
)
from toggles.rollout import (
    RolloutNotAllowed,
    RolloutNotResumable,
    rollout_advance,
    rollout_fetch_seen,
    rollout_paused,
    rollout_record_ack,
    rollout_record_fetch,
    rollout_resume,
    rollouts_reconcile,
    targets_deliver,
    version_only_tightens,
)
from toggles.services import profile_create, profile_version_create
from toggles.signing import jwks, signature_verify

OPEN = (TargetStatus.PENDING, TargetStatus.DELIVERING)


@pytest.fixture(autouse=True)
def no_documents_of_other_runs():
    """Profile ids repeat between test databases; documents kept in Redis must not."""
    serving_forget()
    yield
    serving_forget()


@pytest.fixture
def receiver():
    server = WebhookReceiver(hang_seconds=1.5).start()
    yield server
    server.stop()


@pytest.fixture
def fleet(catalog, receiver):
    """Tenant 'fleet': canary 'c1' and 'g1', 'g2' after it, all pushed to the receiver."""
    tenant = tenant_create(slug="fleet", name="Fleet")
    profile_create(tenant=tenant)
    for slug, canary in (("c1", True), ("g1", False), ("g2", False)):
        deployment_create(
            tenant=tenant, slug=slug, webhook_url=receiver.url(slug), is_canary=canary
        )
    return tenant


def write_version(tenant, limit: int):
    """A version raising (loosening) or lowering (tightening) the rate limit from 600."""
    profile = Profile.objects.get(tenant=tenant, name="default")
    return profile_version_create(
        profile=profile,
        changes={"usage.rate_limit_per_minute": limit},
        actor=None,
        reason="test change",
        kind=VersionKind.CHANGE_REQUEST if limit > 600 else VersionKind.TIGHTENING,
    )


def started(tenant, limit: int) -> Rollout:
    version = write_version(tenant, limit)
    rollout = Rollout.objects.get(version=version)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    return rollout


def statuses(rollout) -> dict[str, str]:
    return dict(rollout.targets.values_list("deployment__slug", "status"))


def push_open(rollout) -> None:
    """Push every released, open target once, in one batch as a queued task would."""
    released = rollout.targets.filter(status__in=OPEN, released_at__isnull=False)
    targets_deliver(target_ids=list(released.order_by("pk").values_list("pk", flat=True)))


def queued_fetch_records(*ids: int) -> list[tuple]:
    """Take this deployment's rollout_record_fetch tasks out of the broker's queue."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    found = []
    for raw in broker.lrange("celery", 0, -1):
        headers = json.loads(raw)["headers"]
        args = ast.literal_eval(headers["argsrepr"])
        if headers["task"] == "toggles.tasks.rollout_record_fetch" and args[:2] == ids:
            broker.lrem("celery", 1, raw)
            found.append(args)
    return sorted(found)


def actions(tenant_slug: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(tenant=tenant_slug, action__startswith="rollout")
        .order_by("sequence")
        .values_list("action", flat=True)
    )


def test_version_write__rollout_row_commits_or_rolls_back_with_the_version(fleet):
    profile = Profile.objects.get(tenant=fleet, name="default")
    with pytest.raises(RuntimeError), transaction.atomic():
        write_version(fleet, 700)
        raise RuntimeError("the change fails after the version was written")
    assert Rollout.objects.filter(profile=profile).count() == 1  # version 1 only
    version = write_version(fleet, 700)
    rollout = Rollout.objects.get(version=version)
    assert (rollout.status, rollout.targets.count()) == (RolloutStatus.PENDING, 0)


def test_rollout__canary_first__others_only_after_every_canary_delivered(fleet, receiver):
    rollout = started(fleet, 700)
    assert rollout.status == RolloutStatus.ACTIVE
    assert rollout.wave == Wave.CANARY
    assert statuses(rollout) == {"c1": "pending", "g1": "pending", "g2": "pending"}
    general = rollout.targets.get(deployment__slug="g1")
    assert general.released_at is None

    targets_deliver(target_ids=[general.pk])  # a task for a target whose wave is not open
    assert receiver.received == []
    targets_deliver(target_ids=[rollout.targets.get(deployment__slug="c1").pk])
    assert [(r.path, r.version) for r in receiver.received] == [("c1", 2)]

    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.GENERAL
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED
    assert statuses(rollout) == {"c1": "delivered", "g1": "delivered", "g2": "delivered"}
    assert sorted(receiver.applied.items()) == [("c1", [2]), ("g1", [2]), ("g2", [2])]
    assert actions("fleet") == [
        "rollout.superseded",  # version 1's, never started in this test
        "rollout.started",
        "rollout_targets.delivered",
        "rollout.wave_opened",
        "rollout_targets.delivered",
        "rollout.completed",
    ]
    delivered = AuditEvent.objects.filter(action="rollout_targets.delivered").order_by("sequence")
    assert [event.data for event in delivered] == [
        {"rollout": rollout.pk, "version": 2, "via": "push", "deployments": {"c1": 1}},
        {"rollout": rollout.pk, "version": 2, "via": "push", "deployments": {"g1": 1, "g2": 1}},
    ]


def test_push__signed_document_with_version_and_stable_idempotency_key(fleet, receiver):
    rollout = started(fleet, 700)
    receiver.script("c1", [503])
    target = rollout.targets.get(deployment__slug="c1")
    targets_deliver(target_ids=[target.pk])
    targets_deliver(target_ids=[target.pk])
    first, second = receiver.received
    assert first.key == second.key == "fleet/c1:default:2"
    assert first.body == second.body
    assert signature_verify(first.body, first.signature, jwks())
    assert not signature_verify(first.body.replace(b"700", b"600"), first.signature, jwks())
    assert first.version == 2
    assert b'"usage.rate_limit_per_minute":700' in first.body


@pytest.mark.parametrize("answer", [503, 408, TIMEOUT])
@override_settings(REDLINE_ROLLOUT_TIMEOUT_SECONDS=0.5, REDLINE_ROLLOUT_BACKOFF_SECONDS=10)
def test_push__transient_answer__retried_later_then_delivered(fleet, receiver, answer):
    rollout = started(fleet, 700)
    target = rollout.targets.get(deployment__slug="c1")
    receiver.script("c1", [answer])
    before = timezone.now()
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert (target.status, target.attempts) == (TargetStatus.DELIVERING, 1)
    expected = "ReadTimeoutError" if answer == TIMEOUT else f"HTTP {answer}"
    assert target.last_error.startswith(f"attempt 1: {expected}")
    waited = (target.next_attempt_at - before).total_seconds()
    assert 5 <= waited <= 11  # base 10 s, equal jitter: between 5 and 10 s (+ the attempt)
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert (target.status, target.attempts) == (TargetStatus.DELIVERED, 2)
    assert receiver.applied["c1"] == [2]


@override_settings(REDLINE_ROLLOUT_BACKOFF_SECONDS=1, REDLINE_ROLLOUT_BACKOFF_MAX_SECONDS=60)
def test_push__429_with_retry_after__waits_at_least_that_long(fleet, receiver):
    rollout = started(fleet, 700)
    target = rollout.targets.get(deployment__slug="c1")
    receiver.script("c1", [429])
    before = timezone.now()
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert target.status == TargetStatus.DELIVERING
    assert target.last_error == "attempt 1: HTTP 429: refused 429"
    assert 30 <= (target.next_attempt_at - before).total_seconds() <= 31


@pytest.mark.parametrize("answer", [400, 404, 410])
def test_push__client_error__fails_at_once_with_the_reason(fleet, receiver, answer):
    rollout = started(fleet, 700)
    receiver.script("c1", [answer])
    target = rollout.targets.get(deployment__slug="c1")
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert (target.status, target.attempts) == (TargetStatus.FAILED, 1)
    assert target.last_error == f"HTTP {answer}: refused {answer}"
    assert len(receiver.received) == 1


@override_settings(REDLINE_ROLLOUT_MAX_ATTEMPTS=3)
def test_push__down_through_every_attempt__failed_naming_the_error(fleet, receiver):
    receiver.down("g2")
    rollout = started(fleet, 700)
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    target = rollout.targets.get(deployment__slug="g2")
    for _ in range(5):
        targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert target.status == TargetStatus.FAILED
    assert target.attempts == 3
    assert target.last_error == "HTTP 500: refused 500 (gave up after 3 attempts)"
    assert [r.answer for r in receiver.received if r.path == "g2"] == [500, 500, 500]
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert (rollout.status, rollout.status_reason) == (
        RolloutStatus.FAILED,
        "1 of 3 deployments failed",
    )


@override_settings(REDLINE_ROLLOUT_MAX_ATTEMPTS=1)
def test_canary_failure__pauses_rollout_and_announces_it(
    fleet, receiver, django_capture_on_commit_callbacks
):
    told = []

    def listener(rollout, event_id, **kwargs):
        told.append((rollout.pk, event_id))

    rollout_paused.connect(listener)
    receiver.down("c1")
    rollout = started(fleet, 700)
    push_open(rollout)
    with django_capture_on_commit_callbacks(execute=True):
        rollout_advance(rollout_id=rollout.pk)
    rollout_paused.disconnect(listener)
    rollout.refresh_from_db()
    paused = AuditEvent.objects.get(action="rollout.paused")
    assert told == [(rollout.pk, paused.pk)]
    assert rollout.status == RolloutStatus.PAUSED
    assert rollout.status_reason.startswith("canary c1 failed: HTTP 500: refused 500")
    assert statuses(rollout) == {"c1": "failed", "g1": "pending", "g2": "pending"}
    assert not rollout.targets.filter(wave=Wave.GENERAL, released_at__isnull=False).exists()
    assert paused.data["canary"] == "c1"
    assert paused.data["error"] == "HTTP 500: refused 500 (gave up after 1 attempt)"


@override_settings(REDLINE_ROLLOUT_MAX_ATTEMPTS=1)
def test_resume__admin_retries_failed_canary_and_releases_everyone(fleet, receiver, make_user):
    for name, party, role in (
        ("fleet-customer-admin", Party.CUSTOMER, Role.ADMIN),
        ("fleet-vendor-reviewer-1", Party.VENDOR, Role.REVIEWER),
    ):
        membership_set(tenant=fleet, user=make_user(name), party=party, role=role)
    receiver.down("c1")
    rollout = started(fleet, 700)
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    users = get_user_model().objects
    with pytest.raises(RolloutNotAllowed):
        rollout_resume(
            rollout_id=rollout.pk, actor=users.get(username="fleet-vendor-reviewer-1"), reason="x"
        )
    with pytest.raises(RolloutNotAllowed):
        rollout_resume(rollout_id=rollout.pk, actor=make_user("outsider"), reason="x")
    admin = users.get(username="fleet-customer-admin")
    with pytest.raises(ValidationFailed):
        rollout_resume(rollout_id=rollout.pk, actor=admin, reason="  ")
    receiver.up("c1")
    rollout_resume(rollout_id=rollout.pk, actor=admin, reason="canary host was rebooted")
    rollout.refresh_from_db()
    assert (rollout.status, rollout.wave) == (RolloutStatus.ACTIVE, Wave.GENERAL)
    assert statuses(rollout) == {"c1": "pending", "g1": "pending", "g2": "pending"}
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED
    resumed = AuditEvent.objects.get(action="rollout.resumed")
    assert (resumed.actor, resumed.data["retried"]) == ("user:fleet-customer-admin", 1)
    with pytest.raises(RolloutNotResumable):
        rollout_resume(rollout_id=rollout.pk, actor=admin, reason="again")


@override_settings(REDLINE_ROLLOUT_SOAK_SECONDS=600)
def test_soak__general_wave_waits_for_the_soak_time(fleet, receiver):
    rollout = started(fleet, 700)
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.CANARY
    assert 590 <= (rollout.soak_until - timezone.now()).total_seconds() <= 600
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.CANARY
    Rollout.objects.filter(pk=rollout.pk).update(soak_until=timezone.now())
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.GENERAL


def test_newer_version__supersedes_older_rollout__only_newest_is_sent(fleet, receiver):
    older = started(fleet, 700)
    newer = started(fleet, 800)
    older.refresh_from_db()
    assert (older.status, older.superseded_by_id) == (RolloutStatus.SUPERSEDED, newer.pk)
    assert set(statuses(older).values()) == {"superseded"}
    push_open(older)
    assert receiver.received == []
    push_open(newer)
    rollout_advance(rollout_id=newer.pk)
    push_open(newer)
    assert sorted(receiver.applied.items()) == [("c1", [3]), ("g1", [3]), ("g2", [3])]


def test_newer_version_written_before_older_started__older_never_starts(fleet, receiver):
    first = Rollout.objects.get(version=write_version(fleet, 700))
    second = Rollout.objects.get(version=write_version(fleet, 800))
    rollout_advance(rollout_id=second.pk)
    rollout_advance(rollout_id=first.pk)
    first.refresh_from_db()
    assert (first.status, first.targets.count()) == (RolloutStatus.SUPERSEDED, 0)


def test_high_water_mark__older_version_than_one_sent__never_sent(fleet, receiver):
    rollout = started(fleet, 700)
    c1 = Deployment.objects.get(tenant=fleet, slug="c1")
    DeploymentDelivery.objects.create(deployment=c1, profile=rollout.profile, sent_version=7)
    target = rollout.targets.get(deployment=c1)
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert (target.status, target.last_error) == (
        TargetStatus.SUPERSEDED,
        "version 7 was already sent",
    )
    assert receiver.received == []


def test_push_in_flight_to_a_deployment__a_second_push_waits(fleet, receiver):
    rollout = started(fleet, 700)
    c1 = Deployment.objects.get(tenant=fleet, slug="c1")
    DeploymentDelivery.objects.create(
        deployment=c1,
        profile=rollout.profile,
        inflight_version=1,
        inflight_until=timezone.now() + timezone.timedelta(seconds=30),
    )
    target = rollout.targets.get(deployment=c1)
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert (target.status, target.attempts, receiver.received) == (TargetStatus.PENDING, 0, [])
    DeploymentDelivery.objects.filter(deployment=c1).update(inflight_until=timezone.now())
    targets_deliver(target_ids=[target.pk])
    target.refresh_from_db()
    assert target.status == TargetStatus.DELIVERED


def test_pull__delivered_when_fetched_or_acked(demo):
    rollout = started(demo.tenant, 700)
    assert statuses(rollout) == {
        "analyst-unclass": "pending",
        "analyst-classified": "pending",
        "cyber-defence": "pending",
    }
    assert set(rollout.targets.values_list("mode", flat=True)) == {"pull"}
    canary = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    rollout_record_fetch(deployment_id=canary.pk, profile_id=rollout.profile_id, version=1)
    assert statuses(rollout)["analyst-unclass"] == "pending"
    rollout_record_fetch(deployment_id=canary.pk, profile_id=rollout.profile_id, version=2)
    assert statuses(rollout)["analyst-unclass"] == "delivered"
    rollout_advance(rollout_id=rollout.pk)
    for slug in ("analyst-classified", "cyber-defence"):
        rollout_record_ack(
            deployment=Deployment.objects.get(tenant=demo.tenant, slug=slug), version=2
        )
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED
    acked = dict(rollout.targets.values_list("deployment__slug", "acked_version"))
    assert acked == {"analyst-unclass": None, "analyst-classified": 2, "cyber-defence": 2}
    events = AuditEvent.objects.filter(action="rollout_targets.delivered").order_by("sequence")
    assert [(e.data["via"], list(e.data["deployments"])) for e in events] == [
        ("fetch", ["analyst-unclass"]),
        ("ack", ["analyst-classified"]),
        ("ack", ["cyber-defence"]),
    ]


def test_fetch_seen__hot_path__no_query_and_one_task_per_new_version(
    demo, django_assert_num_queries
):
    canary = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    seen = {"deployment_id": canary.pk, "profile_id": profile.pk}
    with django_assert_num_queries(0):
        for version in (1, 1, 1, 2, 2, 1, 2):
            rollout_fetch_seen(**seen, version=version)
    assert queued_fetch_records(canary.pk, profile.pk) == [
        (canary.pk, profile.pk, 1),
        (canary.pk, profile.pk, 2),
    ]


def test_pull__fetched_before_the_rollout_started__delivered_when_planned(demo):
    version = write_version(demo.tenant, 700)
    canary = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    rollout_record_fetch(deployment_id=canary.pk, profile_id=version.profile_id, version=2)
    rollout = Rollout.objects.get(version=version)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert statuses(rollout)["analyst-unclass"] == "delivered"
    assert rollout.wave == Wave.GENERAL


@override_settings(REDLINE_ROLLOUT_PULL_DEADLINE_SECONDS=3600)
def test_reconcile__pull_canary_silent_past_deadline__fails_and_pauses(demo):
    rollout = started(demo.tenant, 700)
    rollouts_reconcile()
    assert statuses(rollout)["analyst-unclass"] == "pending"
    later = timezone.now() + timezone.timedelta(seconds=3601)
    result = rollouts_reconcile(now=later)
    assert result["timed_out"] == 1
    rollout.refresh_from_db()
    canary = rollout.targets.get(deployment__slug="analyst-unclass")
    assert canary.status == TargetStatus.FAILED
    assert canary.last_error == (
        "did not fetch or acknowledge version 2 within 1 h of its wave opening"
    )
    assert rollout.status == RolloutStatus.PAUSED


def test_reconcile__report_that_raced_the_start__settles_target(demo):
    rollout = started(demo.tenant, 700)
    canary = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    DeploymentDelivery.objects.create(
        deployment=canary, profile=rollout.profile, reported_version=2
    )
    assert rollouts_reconcile()["reported"] == 1
    assert statuses(rollout)["analyst-unclass"] == "delivered"


def test_rollout__no_deployment_follows_the_profile__completes_at_once(make_tenant):
    tenant = make_tenant("empty")
    rollout = started(tenant, 700)
    assert (rollout.status, rollout.targets.count()) == (RolloutStatus.COMPLETED, 0)


def test_targets__one_per_deployment_following_the_profile(fleet, receiver):
    deployment_create(tenant=fleet, slug="other", profile_name="other")
    rollout = started(fleet, 700)
    assert sorted(statuses(rollout)) == ["c1", "g1", "g2"]
    assert RolloutTarget.objects.filter(rollout=rollout, wave=Wave.CANARY).count() == 1


def test_reconcile__push_deployment_added_after_completion__joins_and_gets_the_version(
    fleet, receiver
):
    rollout = started(fleet, 700)
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.COMPLETED
    deployment_create(tenant=fleet, slug="late", webhook_url=receiver.url("late"))
    deployment_create(tenant=fleet, slug="elsewhere", profile_name="other")

    assert rollouts_reconcile()["joined"] == 1
    rollout.refresh_from_db()
    late = rollout.targets.get(deployment__slug="late")
    assert (rollout.status, rollout.finished_at) == (RolloutStatus.ACTIVE, None)
    assert (late.status, late.mode, late.wave) == (TargetStatus.PENDING, "push", Wave.GENERAL)
    assert late.released_at is not None
    joined = AuditEvent.objects.get(action="rollout.deployment_joined")
    assert joined.data == {
        "rollout": rollout.pk,
        "version": 2,
        "deployment": "late",
        "mode": "push",
        "already_delivered": False,
        "reopened": True,
    }
    assert rollouts_reconcile()["joined"] == 0

    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert receiver.applied["late"] == [2]
    assert rollout.status == RolloutStatus.COMPLETED
    assert statuses(rollout)["late"] == TargetStatus.DELIVERED
    assert actions("fleet")[-3:] == [
        "rollout.deployment_joined",
        "rollout_targets.delivered",
        "rollout.completed",
    ]


def test_reconcile__pull_deployment_that_already_has_the_version__joins_delivered(demo):
    rollout = started(demo.tenant, 700)
    late = deployment_create(tenant=demo.tenant, slug="late-pull")
    rollout_record_fetch(deployment_id=late.pk, profile_id=rollout.profile_id, version=2)

    assert rollouts_reconcile()["joined"] == 1
    target = rollout.targets.get(deployment=late)
    assert (target.status, target.mode) == (TargetStatus.DELIVERED, "pull")
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.ACTIVE  # the canary has not fetched yet
    assert AuditEvent.objects.get(action="rollout.deployment_joined").data["reopened"] is False


def test_reconcile__canary_added_during_the_canary_wave__general_wave_waits_for_it(fleet, receiver):
    rollout = started(fleet, 700)
    deployment_create(tenant=fleet, slug="c2", webhook_url=receiver.url("c2"), is_canary=True)
    assert rollouts_reconcile()["joined"] == 1
    c2 = rollout.targets.get(deployment__slug="c2")
    assert (c2.wave, c2.released_at is not None) == (Wave.CANARY, True)

    targets_deliver(target_ids=[rollout.targets.get(deployment__slug="c1").pk])
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.CANARY
    targets_deliver(target_ids=[c2.pk])
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.GENERAL


@override_settings(REDLINE_ROLLOUT_MAX_ATTEMPTS=1)
@pytest.mark.parametrize("kind", [VersionKind.BRAKE, VersionKind.TIGHTENING])
def test_tightening_only_version__every_deployment_at_once__a_failed_canary_holds_nothing(
    fleet, receiver, kind
):
    receiver.down("c1")
    profile = Profile.objects.get(tenant=fleet, name="default")
    version = profile_version_create(
        profile=profile,
        changes={"usage.rate_limit_per_minute": 1, "usage.tool_access": "none"},
        actor=None,
        reason="stop now",
        kind=kind,
    )
    rollout = Rollout.objects.get(version=version)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.GENERAL
    assert not rollout.targets.filter(released_at__isnull=True).exists()
    started_event = AuditEvent.objects.get(action="rollout.started")
    assert (started_event.data["canaries"], started_event.data["canary_first"]) == (1, False)

    push_open(rollout)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert statuses(rollout) == {"c1": "failed", "g1": "delivered", "g2": "delivered"}
    assert (rollout.status, rollout.status_reason) == (
        RolloutStatus.FAILED,
        "1 of 3 deployments failed",
    )
    assert not AuditEvent.objects.filter(action="rollout.paused").exists()


@pytest.mark.parametrize(
    ("changes", "only_tightens"),
    [
        ({"usage.rate_limit_per_minute": 500}, True),
        ({"usage.rate_limit_per_minute": 500, "logging.retention_days": 3650}, True),
        ({"usage.rate_limit_per_minute": 700}, False),
        ({"usage.rate_limit_per_minute": 500, "usage.tool_access": "networked"}, False),
    ],
    ids=["one-tighter", "all-tighter", "looser", "one-tighter-one-looser"],
)
def test_version_only_tightens__judged_on_every_change(fleet, changes, only_tightens):
    profile = Profile.objects.get(tenant=fleet, name="default")
    first = ProfileVersion.objects.get(profile=profile, number=1)
    assert version_only_tightens(first) is False  # nothing before it to compare with
    version = profile_version_create(
        profile=profile,
        changes=changes,
        actor=None,
        reason="compare",
        kind=VersionKind.CHANGE_REQUEST,
    )
    assert version_only_tightens(version) is only_tightens


def test_first_version__canary_already_following_the_name__everyone_at_once(catalog, receiver):
    tenant = tenant_create(slug="early", name="Early")
    deployment_create(tenant=tenant, slug="c1", webhook_url=receiver.url("c1"), is_canary=True)
    deployment_create(tenant=tenant, slug="g1", webhook_url=receiver.url("g1"))
    profile = profile_create(tenant=tenant)
    assert (profile.current_version, Profile.objects.get(pk=profile.pk).released_version) == (1, 1)

    rollout = Rollout.objects.get(profile=profile, version__number=1)
    rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    assert rollout.wave == Wave.GENERAL
    assert not rollout.targets.filter(released_at__isnull=True).exists()
    assert AuditEvent.objects.get(action="rollout.started").data["canary_first"] is False
