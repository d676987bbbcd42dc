"""Rollout of a new profile version to every deployment that follows the profile.

A Rollout row is written with its version, in the same transaction (rollout_create), so a
crash cannot lose it; after commit it starts (rollout_advance): it supersedes the rollouts
of older versions and plans one RolloutTarget per deployment.

* Push deployments (with a webhook URL) get the signed document by POST (targets_deliver),
  retried with exponential backoff and jitter up to REDLINE_ROLLOUT_MAX_ATTEMPTS. A
  per-deployment mark (DeploymentDelivery) keeps one push in flight per deployment and
  never lets a version older than the newest one sent go out.
* Pull deployments are delivered when they fetch or acknowledge the version
  (rollout_fetch_seen from the config hot path, rollout_record_ack from the ack view). The
  config API serves a canary the profile's current version and every other deployment its
  released version (Profile.released_version), which moves up when the general wave opens.
* Waves: canaries first; every other deployment once every canary is delivered and the
  soak time (REDLINE_ROLLOUT_SOAK_SECONDS) has passed. A version that only tightens goes
  to every deployment at once (version_only_tightens). A failed canary pauses the rollout
  and announces it (audit event, log warning, and the rollout_paused signal for whoever
  mails the parties); an admin of either party resumes it (rollout_resume), or the parties
  roll back with a change request that restores an earlier version
  (approvals.rollback.rollback_request_submit).
* rollouts_reconcile (Celery beat) re-queues what a crashed worker or a lost broker
  message left behind, so nothing hangs, and lets deployments added after a rollout
  started join the rollout of their profile's current version.

No row lock is held across an HTTP request. Lock order: a profile's rollouts (ascending),
then targets, then delivery marks; every row lock before the first audit event.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.dispatch import Signal
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from audit.models import AuditEvent
from audit.services import audit_record
from config.errors import Conflict, DomainError, ValidationFailed
from tenants.models import Deployment
from tenants.permissions import MANAGE_DEPLOYMENTS
from tenants.selectors import membership_allowing
from toggles.delivery import Outcome, PushResult, backoff_delay, push
from toggles.documents import catalog_current, document_load
from toggles.effective import effective_values
from toggles.models import (
    DeliveryMode,
    DeploymentDelivery,
    Profile,
    ProfileVersion,
    Rollout,
    RolloutStatus,
    RolloutTarget,
    TargetStatus,
    Wave,
)
from toggles.selectors import catalog_specs
from toggles.serving import REDIS_ERRORS, config_cache, config_changed, document_key
from toggles.signing import SIGNATURE_HEADER
from toggles.values import Direction, change_direction

log = logging.getLogger(__name__)

OPEN_ROLLOUTS = (RolloutStatus.PENDING, RolloutStatus.ACTIVE, RolloutStatus.PAUSED)
WAVE_NAMES = {Wave.CANARY: "canary", Wave.GENERAL: "general"}
RESUMABLE = (RolloutStatus.PAUSED, RolloutStatus.FAILED)
OPEN_TARGETS = (TargetStatus.PENDING, TargetStatus.DELIVERING)
# How long a push may stay in flight before another attempt may take over: the HTTP
# timeout plus this margin (a worker that died mid-request never clears its mark).
IN_FLIGHT_MARGIN = timedelta(seconds=2)
# A push that finds another version in flight to the same deployment looks again after this.
BUSY_RETRY_SECONDS = 1.0
# Targets pushed by one task, their requests sent together (one thread each).
DELIVERY_BATCH = 50

# How long a process reuses a version's signed document for pushes, and how many it keeps.
DOCUMENT_REUSE = timedelta(seconds=60)
DOCUMENTS_KEPT = 64
_documents: dict[tuple[int, int], tuple[float, bytes, str]] = {}

# Sent after commit when a failed canary pauses a rollout, for whoever tells the parties:
# rollout=<Rollout>, event_id=<the rollout.paused AuditEvent>.
rollout_paused = Signal()


class RolloutNotAllowed(DomainError):
    status_code = 403
    code = "permission_denied"


class RolloutNotResumable(Conflict):
    code = "not_resumable"


def _setting(name: str):
    return getattr(settings, f"REDLINE_ROLLOUT_{name}")


@dataclass
class _Changes:
    """What one transaction settled: audit events, written once the last row lock is held
    (deliveries of one rollout as one event), and the rollouts to look at again after
    commit, as they may move on."""

    events: list[tuple] = field(default_factory=list)
    delivered: dict[tuple[int, str], list[RolloutTarget]] = field(default_factory=dict)
    rollouts: dict[int, tuple[int, bool]] = field(default_factory=dict)

    def audit(self, action: str, *, tenant: str, target: str, data: dict, actor=None) -> None:
        self.events.append((actor, action, tenant, target, data))

    def deliver(self, target: RolloutTarget, via: str) -> None:
        self.delivered.setdefault((target.rollout_id, via), []).append(target)

    def settled(self, target: RolloutTarget, status: str) -> None:
        wave, failed_canary = self.rollouts.get(target.rollout_id, (Wave.GENERAL, False))
        self.rollouts[target.rollout_id] = (
            min(wave, target.wave),
            failed_canary or (status == TargetStatus.FAILED and target.wave == Wave.CANARY),
        )

    def finish(self) -> None:
        for (_, via), targets in self.delivered.items():
            rollout = targets[0].rollout
            self.audit(
                "rollout_targets.delivered",
                tenant=targets[0].deployment.tenant.slug,
                target=f"profile:{rollout.profile}",
                data={
                    "rollout": rollout.pk,
                    "version": rollout.version.number,
                    "via": via,
                    "deployments": {t.deployment.slug: t.attempts for t in targets},
                },
            )
        for actor, action, tenant, target, data in self.events:
            audit_record(actor=actor, action=action, tenant=tenant, target=target, data=data)
        for rollout_id, (wave, failed_canary) in self.rollouts.items():
            _after_commit(_maybe_advance, rollout_id, wave, failed_canary)


# Queueing (after commit) ---------------------------------------------------------------


def _queue(task_name: str, *args, countdown: float | None = None, retry: bool = True) -> bool:
    """Send a task; with the broker down, log and leave it to the reconciler."""
    from toggles import tasks

    try:
        getattr(tasks, task_name).apply_async(args, countdown=countdown, retry=retry)
    except BrokerUnavailable as error:
        log.warning("rollout: could not queue %s%s (%s); reconcile will", task_name, args, error)
        return False
    return True


def _queue_deliveries(target_ids: list[int], countdown: float | None = None) -> None:
    """One task per DELIVERY_BATCH targets."""
    for start in range(0, len(target_ids), DELIVERY_BATCH):
        batch = target_ids[start : start + DELIVERY_BATCH]
        if not _queue("rollout_targets_deliver", batch, countdown=countdown):
            return


def _after_commit(function, *args, **kwargs) -> None:
    transaction.on_commit(lambda: function(*args, **kwargs))


# Create and start ----------------------------------------------------------------------


def rollout_create(*, version: ProfileVersion) -> Rollout:
    """The rollout of a new version, written in the version's own transaction.

    A version that needs no canary wave is released to every deployment with it; older
    rollouts are superseded and targets planned when the rollout starts.
    """
    rollout = Rollout.objects.create(profile=version.profile, version=version)
    profile = version.profile
    has_canary = Deployment.objects.filter(
        tenant_id=profile.tenant_id, profile_name=profile.name, is_canary=True
    ).exists()
    if not canary_first(version, has_canary=has_canary):
        _release(version.profile_id, version.number)
    _after_commit(_queue, "rollout_advance", rollout.pk)
    return rollout


def canary_first(version: ProfileVersion, *, has_canary: bool) -> bool:
    """Whether the version goes to canary deployments before any other: when a canary
    follows its profile and the version loosens anything. A profile's first version goes
    to every deployment: there is nothing older to keep serving."""
    return has_canary and version.parent_id is not None and not version_only_tightens(version)


def _release(profile_id: int, number: int) -> None:
    """Serve version `number` to every deployment of the profile, not only its canaries.

    Only ever moves forward; the serving processes hear of it after commit."""
    moved = Profile.objects.filter(pk=profile_id, released_version__lt=number).update(
        released_version=number
    )
    if moved:
        _after_commit(config_changed)


def rollout_advance(*, rollout_id: int) -> None:
    """Move a rollout on as far as its targets allow: start it, open the next wave, pause
    it on a failed canary, or finish it. Safe to repeat."""
    with transaction.atomic():
        row = Rollout.objects.filter(pk=rollout_id).values("profile_id", "status").first()
        if row is None or row["status"] not in OPEN_ROLLOUTS:
            return
        if row["status"] == RolloutStatus.PENDING:
            _start(rollout_id, row["profile_id"])
            return
        rollout = _locked(rollout_id)
        if rollout.status != RolloutStatus.ACTIVE:
            return
        changes = _Changes()
        _evaluate(rollout, changes)
        changes.finish()


def _locked(rollout_id: int) -> Rollout:
    return (
        Rollout.objects.select_for_update(of=("self",))
        .select_related("profile__tenant", "version")
        .get(pk=rollout_id)
    )


def _start(rollout_id: int, profile_id: int) -> None:
    locked = list(
        Rollout.objects.select_for_update(of=("self",))
        .select_related("profile__tenant", "version")
        .filter(profile_id=profile_id, pk__lte=rollout_id, status__in=OPEN_ROLLOUTS)
        .order_by("pk")
    )
    if not locked or locked[-1].pk != rollout_id or locked[-1].status != RolloutStatus.PENDING:
        return
    rollout = locked[-1]
    profile = rollout.profile
    changes = _Changes()
    number = rollout.version.number
    newer = (
        Rollout.objects.filter(profile=profile, version__number__gt=number)
        .order_by("version__number")
        .first()
    )
    for older in locked[:-1]:
        _supersede(older, by=rollout, changes=changes)
    if newer is not None:
        _supersede(rollout, by=newer, changes=changes)
        changes.finish()
        return
    now = timezone.now()
    deployments = list(
        Deployment.objects.filter(tenant=profile.tenant, profile_name=profile.name).order_by("pk")
    )
    reported = dict(
        DeploymentDelivery.objects.filter(profile=profile, deployment__in=deployments).values_list(
            "deployment_id", "reported_version"
        )
    )
    first = canary_first(rollout.version, has_canary=any(d.is_canary for d in deployments))
    rollout.wave = Wave.CANARY if first else Wave.GENERAL
    if not first:
        _release(profile.pk, number)
    targets = [
        _target(rollout, deployment, reported=reported.get(deployment.pk, 0), now=now)
        for deployment in deployments
    ]
    RolloutTarget.objects.bulk_create(targets)
    rollout.status = RolloutStatus.ACTIVE
    rollout.started_at = now
    rollout.save(update_fields=["status", "wave", "started_at"])
    changes.audit(
        "rollout.started",
        tenant=profile.tenant.slug,
        target=f"profile:{profile}",
        data={
            "rollout": rollout.pk,
            "version": number,
            "deployments": len(targets),
            "canaries": sum(t.wave == Wave.CANARY for t in targets),
            "canary_first": first,
            "push": sum(t.mode == DeliveryMode.PUSH for t in targets),
            "already_delivered": sum(t.status == TargetStatus.DELIVERED for t in targets),
        },
    )
    _after_commit(
        _queue_deliveries,
        [
            t.pk
            for t in targets
            if t.released_at and t.mode == DeliveryMode.PUSH and t.status == TargetStatus.PENDING
        ],
    )
    _evaluate(rollout, changes)
    changes.finish()


def _target(rollout: Rollout, deployment: Deployment, *, reported: int, now) -> RolloutTarget:
    """A deployment's part in a rollout (unsaved): delivered if it reported the version,
    released if its wave is open, due at once if it is pushed."""
    wave = Wave.CANARY if deployment.is_canary else Wave.GENERAL
    mode = DeliveryMode.PUSH if deployment.webhook_url else DeliveryMode.PULL
    has_it = reported >= rollout.version.number
    released = wave <= rollout.wave
    return RolloutTarget(
        rollout=rollout,
        deployment=deployment,
        wave=wave,
        mode=mode,
        status=TargetStatus.DELIVERED if has_it else TargetStatus.PENDING,
        settled_at=now if has_it else None,
        released_at=now if released else None,
        next_attempt_at=now if released and mode == DeliveryMode.PUSH else None,
    )


def version_only_tightens(version: ProfileVersion) -> bool:
    """Whether every setting the version changes moves to its safer side (a brake, a
    grant's end, a tightening). Such a version goes to every deployment at once: a canary
    guards against what loosens, and holding a tightening back would only delay safety."""
    parent = version.parent
    if parent is None:
        return False
    specs = catalog_specs()
    before = effective_values(specs, parent.values)
    after = effective_values(specs, version.values)
    return all(
        change_direction(spec, before[spec.key], after[spec.key]) != Direction.LOOSENING
        for spec in specs
    )


def _supersede(rollout: Rollout, *, by: Rollout, changes: _Changes) -> None:
    now = timezone.now()
    skipped = rollout.targets.filter(status__in=OPEN_TARGETS).update(
        status=TargetStatus.SUPERSEDED,
        settled_at=now,
        last_error=f"superseded by version {by.version.number}",
        updated_at=now,
    )
    previous = rollout.status
    rollout.status = RolloutStatus.SUPERSEDED
    rollout.superseded_by = by
    rollout.finished_at = now
    rollout.status_reason = f"version {by.version.number} superseded it"
    rollout.save(update_fields=["status", "superseded_by", "finished_at", "status_reason"])
    changes.audit(
        "rollout.superseded",
        tenant=rollout.profile.tenant.slug,
        target=f"profile:{rollout.profile}",
        data={
            "rollout": rollout.pk,
            "version": rollout.version.number,
            "by_version": by.version.number,
            "was": previous,
            "targets_skipped": skipped,
        },
    )


# Waves -----------------------------------------------------------------------------------


def _counts(rollout: Rollout) -> dict[tuple[int, str], int]:
    rows = rollout.targets.values_list("wave", "status").annotate(n=Count("pk"))
    return {(wave, status): n for wave, status, n in rows}


def _evaluate(rollout: Rollout, changes: _Changes) -> None:
    """With the rollout locked and active: pause, open the general wave, or finish."""
    counts = _counts(rollout)
    tenant = rollout.profile.tenant.slug
    label = f"profile:{rollout.profile}"
    number = rollout.version.number
    now = timezone.now()

    def open_in(wave: int) -> int:
        return sum(counts.get((wave, status), 0) for status in OPEN_TARGETS)

    if rollout.wave == Wave.CANARY:
        failed = (
            rollout.targets.filter(wave=Wave.CANARY, status=TargetStatus.FAILED)
            .select_related("deployment")
            .order_by("deployment__slug")
            .first()
        )
        if failed is not None:
            rollout.status = RolloutStatus.PAUSED
            rollout.status_reason = (
                f"canary {failed.deployment.slug} failed: {failed.last_error}; "
                "resume the rollout or roll back to an earlier version"
            )
            rollout.save(update_fields=["status", "status_reason"])
            changes.audit(
                "rollout.paused",
                tenant=tenant,
                target=label,
                data={
                    "rollout": rollout.pk,
                    "version": number,
                    "canary": failed.deployment.slug,
                    "error": failed.last_error,
                },
            )
            _after_commit(_announce_pause, rollout.pk)
            return
        if open_in(Wave.CANARY):
            return
        soak = _setting("SOAK_SECONDS")
        if soak > 0:
            if rollout.soak_until is None:
                rollout.soak_until = now + timedelta(seconds=soak)
                rollout.save(update_fields=["soak_until"])
                _after_commit(_queue, "rollout_advance", rollout.pk, countdown=soak)
                return
            if now < rollout.soak_until:
                return
        _after_commit(_queue_deliveries, _open_general_wave(rollout, changes, now=now))
        counts = _counts(rollout)
    if open_in(Wave.CANARY) or open_in(Wave.GENERAL):
        return
    failed_count = sum(n for (_, status), n in counts.items() if status == TargetStatus.FAILED)
    delivered = sum(n for (_, status), n in counts.items() if status == TargetStatus.DELIVERED)
    rollout.status = RolloutStatus.FAILED if failed_count else RolloutStatus.COMPLETED
    rollout.finished_at = now
    rollout.status_reason = (
        f"{failed_count} of {sum(counts.values())} deployments failed" if failed_count else ""
    )
    rollout.save(update_fields=["status", "finished_at", "status_reason"])
    changes.audit(
        f"rollout.{rollout.status}",
        tenant=tenant,
        target=label,
        data={
            "rollout": rollout.pk,
            "version": number,
            "delivered": delivered,
            "failed": failed_count,
        },
    )


def _open_general_wave(rollout: Rollout, changes: _Changes, *, now: datetime) -> list[int]:
    """Release every other deployment; returns the push targets to queue."""
    rollout.wave = Wave.GENERAL
    rollout.save(update_fields=["wave"])
    _release(rollout.profile_id, rollout.version.number)
    waiting = rollout.targets.filter(wave=Wave.GENERAL, released_at__isnull=True)
    waiting.update(released_at=now, updated_at=now)
    push_ids = list(
        rollout.targets.filter(
            wave=Wave.GENERAL, status=TargetStatus.PENDING, mode=DeliveryMode.PUSH
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    rollout.targets.filter(pk__in=push_ids).update(next_attempt_at=now)
    changes.audit(
        "rollout.wave_opened",
        tenant=rollout.profile.tenant.slug,
        target=f"profile:{rollout.profile}",
        data={"rollout": rollout.pk, "version": rollout.version.number, "wave": "general"},
    )
    return push_ids


def _announce_pause(rollout_id: int) -> None:
    rollout = Rollout.objects.select_related("profile__tenant", "version").get(pk=rollout_id)
    log.warning(
        "rollout of %s v%s paused: %s",
        rollout.profile,
        rollout.version.number,
        rollout.status_reason,
    )
    event = (
        AuditEvent.objects.filter(action="rollout.paused", data__rollout=rollout.pk)
        .order_by("-sequence")
        .first()
    )
    rollout_paused.send(sender=Rollout, rollout=rollout, event_id=event.pk)


def _maybe_advance(rollout_id: int, wave: int, failed_canary: bool) -> None:
    """After targets settled: queue an advance if the rollout may now move on.

    Checked after commit, so of two targets settling together the later one sees both.
    """
    still_open = RolloutTarget.objects.filter(rollout_id=rollout_id, status__in=OPEN_TARGETS)
    if wave == Wave.CANARY:
        still_open = still_open.filter(wave=Wave.CANARY)
    if failed_canary or not still_open.exists():
        _queue("rollout_advance", rollout_id)


# Push --------------------------------------------------------------------------------------


def idempotency_key(target: RolloutTarget) -> str:
    """The same for every attempt to send one version to one deployment."""
    deployment = target.deployment
    return (
        f"{deployment.tenant.slug}/{deployment.slug}:"
        f"{target.rollout.profile.name}:{target.rollout.version.number}"
    )


def signed_document(version: ProfileVersion) -> tuple[bytes, str]:
    """The bytes a deployment fetching `version` gets, and their Config-Signature: the
    document kept in Redis when the version was published, else built from PostgreSQL.

    A rollout sends one document to many deployments, so this process keeps it for a
    little while (DOCUMENT_REUSE) rather than asking for it once per push.
    """
    key = (version.profile_id, version.number)
    now = time.monotonic()
    kept = _documents.get(key)
    if kept is not None and kept[0] > now:
        return kept[1], kept[2]
    body, signature = _document_fetch(version)
    if len(_documents) >= DOCUMENTS_KEPT:
        _documents.clear()
    _documents[key] = (now + DOCUMENT_REUSE.total_seconds(), body, signature)
    return body, signature


def _document_fetch(version: ProfileVersion) -> tuple[bytes, str]:
    catalog = catalog_current()
    key = document_key(
        profile_id=version.profile_id, version=version.number, catalog=catalog.fingerprint
    )
    try:
        document = cache.get(key)
    except REDIS_ERRORS:
        document = None
    if document is None:
        document = document_load(
            catalog=catalog, profile_id=version.profile_id, version=version.number
        )
    return document.body, document.signature


def _targets_locked(*, skip_locked: bool = False):
    return (
        RolloutTarget.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .select_related("rollout__version", "rollout__profile__tenant", "deployment__tenant")
        .order_by("pk")
    )


def _marks_locked(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], DeploymentDelivery]:
    """The delivery marks of these (deployment, profile) pairs, made if missing, locked in
    deployment order (a mark made here is locked after the others)."""

    def locked(wanted: set[tuple[int, int]]):
        query = reduce(or_, (Q(deployment_id=d, profile_id=p) for d, p in wanted))
        marks = DeploymentDelivery.objects.select_for_update().filter(query)
        return {(m.deployment_id, m.profile_id): m for m in marks.order_by("deployment_id")}

    found = locked(pairs)
    if missing := pairs - found.keys():
        DeploymentDelivery.objects.bulk_create(
            [DeploymentDelivery(deployment_id=d, profile_id=p) for d, p in sorted(missing)],
            ignore_conflicts=True,
        )
        found |= locked(missing)
    return found


def _mark_of(target: RolloutTarget) -> tuple[int, int]:
    return (target.deployment_id, target.rollout.profile_id)


@dataclass(frozen=True)
class _Attempt:
    target_id: int
    number: int
    url: str
    body: bytes
    headers: dict[str, str]


def targets_deliver(*, target_ids: list[int]) -> None:
    """One push attempt to each of these deployments, sent together; failed ones are queued
    again with backoff. Idempotent: settled targets, targets whose wave is not open and
    pushes already in flight are left alone."""
    attempts = _attempts_begin(target_ids)
    if not attempts:
        return
    timeout = _setting("TIMEOUT_SECONDS")

    def send(attempt: _Attempt) -> PushResult:
        return push(url=attempt.url, body=attempt.body, headers=attempt.headers, timeout=timeout)

    if len(attempts) == 1:
        results = [send(attempts[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(attempts), thread_name_prefix="push") as pool:
            results = list(pool.map(send, attempts))
    _attempts_end(list(zip(attempts, results, strict=True)))


def _attempts_begin(target_ids: list[int]) -> list[_Attempt]:
    """Claim the targets that may be pushed now; one push in flight per deployment."""
    with transaction.atomic():
        targets = [
            target
            for target in _targets_locked(skip_locked=True).filter(
                pk__in=target_ids, status__in=OPEN_TARGETS, mode=DeliveryMode.PUSH
            )
            if target.rollout.status == RolloutStatus.ACTIVE and target.wave <= target.rollout.wave
        ]
        if not targets:
            return []
        marks = _marks_locked({_mark_of(target) for target in targets})
        now = timezone.now()
        lease = now + timedelta(seconds=_setting("TIMEOUT_SECONDS")) + IN_FLIGHT_MARGIN
        changes = _Changes()
        sending, settled, busy = [], [], []
        for target in targets:
            mark = marks[_mark_of(target)]
            number = target.rollout.version.number
            if mark.sent_version >= number:
                newer = mark.sent_version > number
                _settle(
                    target,
                    TargetStatus.SUPERSEDED if newer else TargetStatus.DELIVERED,
                    f"version {mark.sent_version} was already sent" if newer else target.last_error,
                    changes=changes,
                    now=now,
                )
                settled.append(target)
            elif mark.inflight_until and mark.inflight_until > now:
                if mark.inflight_version != number:
                    busy.append(target.pk)
            else:
                mark.inflight_version, mark.inflight_until = number, lease
                target.status = TargetStatus.DELIVERING
                target.attempts += 1
                target.next_attempt_at = lease
                target.updated_at = now
                sending.append(target)
        _save_grouped(
            [marks[_mark_of(target)] for target in sending], ["inflight_version", "inflight_until"]
        )
        _save_grouped(sending, ["status", "attempts", "next_attempt_at", "updated_at"])
        _save_grouped(settled, SETTLE_FIELDS)
        changes.finish()
        if busy:
            _after_commit(_queue_deliveries, busy, countdown=BUSY_RETRY_SECONDS)
        attempts = []
        for target in sending:
            body, signature = signed_document(target.rollout.version)
            attempts.append(
                _Attempt(
                    target_id=target.pk,
                    number=target.attempts,
                    url=target.deployment.webhook_url,
                    body=body,
                    headers={
                        SIGNATURE_HEADER: signature,
                        "Config-Version": str(target.rollout.version.number),
                        "Idempotency-Key": idempotency_key(target),
                    },
                )
            )
        return attempts


def _attempts_end(outcomes: list[tuple[_Attempt, PushResult]]) -> None:
    """Record what each push got: delivered, failed with the reason, or another attempt
    after backoff (with jitter, and no sooner than a Retry-After asks)."""
    with transaction.atomic():
        targets = {
            target.pk: target
            for target in _targets_locked().filter(pk__in=[a.target_id for a, _ in outcomes])
        }
        marks = _marks_locked({_mark_of(target) for target in targets.values()})
        now = timezone.now()
        changes = _Changes()
        recorded, retries = [], []
        for attempt, result in outcomes:
            target = targets[attempt.target_id]
            mark = marks[_mark_of(target)]
            number = target.rollout.version.number
            if mark.inflight_version == number:
                mark.inflight_version, mark.inflight_until = None, None
            if result.outcome == Outcome.DELIVERED and number > mark.sent_version:
                mark.sent_version, mark.sent_at = number, now
            if target.status != TargetStatus.DELIVERING or target.attempts != attempt.number:
                continue  # settled meanwhile (an ack, a supersede) or taken over after a lease
            recorded.append(target)
            if result.outcome == Outcome.DELIVERED:
                _settle(target, TargetStatus.DELIVERED, target.last_error, changes=changes, now=now)
            elif result.outcome == Outcome.FAIL or target.attempts >= _setting("MAX_ATTEMPTS"):
                reason = result.detail
                if result.outcome == Outcome.RETRY:
                    plural = "s" if target.attempts > 1 else ""
                    reason += f" (gave up after {target.attempts} attempt{plural})"
                _settle(target, TargetStatus.FAILED, reason, changes=changes, now=now)
            else:
                delay = max(
                    backoff_delay(
                        target.attempts,
                        base=_setting("BACKOFF_SECONDS"),
                        cap=_setting("BACKOFF_MAX_SECONDS"),
                    ),
                    min(result.retry_after or 0, _setting("BACKOFF_MAX_SECONDS")),
                )
                target.last_error = f"attempt {target.attempts}: {result.detail}"
                target.next_attempt_at = now + timedelta(seconds=delay)
                target.updated_at = now
                retries.append((target.pk, delay))
        _save_grouped(
            list(marks.values()), ["inflight_version", "inflight_until", "sent_version", "sent_at"]
        )
        _save_grouped(recorded, SETTLE_FIELDS)
        changes.finish()
        for target_id, delay in retries:
            _after_commit(_queue_deliveries, [target_id], countdown=delay)


SETTLE_FIELDS = ["status", "last_error", "settled_at", "next_attempt_at", "updated_at"]


def _save_grouped(rows: list, fields: list[str]) -> None:
    """Save `fields` of rows of one model with one UPDATE per distinct set of values: a
    batch mostly ends the same way, and bulk_update's CASE per row costs more to build."""
    groups: dict[tuple, list[int]] = {}
    for row in rows:
        groups.setdefault(tuple(getattr(row, name) for name in fields), []).append(row.pk)
    for values, pks in groups.items():
        type(rows[0]).objects.filter(pk__in=pks).update(**dict(zip(fields, values, strict=True)))


def _settle(
    target: RolloutTarget, status: str, reason: str, *, changes: _Changes, now, via="push"
) -> None:
    """Settle a locked target in memory (the caller saves SETTLE_FIELDS) and audit it."""
    target.status = status
    target.last_error = reason
    target.settled_at = now
    target.next_attempt_at = None
    target.updated_at = now
    rollout = target.rollout
    if status == TargetStatus.DELIVERED:
        changes.deliver(target, via)
    elif status == TargetStatus.FAILED:
        changes.audit(
            "rollout_target.failed",
            tenant=target.deployment.tenant.slug,
            target=f"deployment:{target.deployment.tenant.slug}/{target.deployment.slug}",
            data={
                "rollout": rollout.pk,
                "profile": rollout.profile.name,
                "version": rollout.version.number,
                "attempts": target.attempts,
                "error": reason,
            },
        )
    changes.settled(target, status)


# Pull: fetches and acks ------------------------------------------------------------------

# (deployment id, profile id) -> newest version this process has passed on as fetched.
_fetched: dict[tuple[int, int], int] = {}


def rollout_fetch_seen(*, deployment_id: int, profile_id: int, version: int) -> None:
    """A deployment was served `version` (the config hot path calls this on every request).

    No database work here: the first time this process serves a deployment a newer version,
    a task records it (rollout_record_fetch). While Redis is down nothing is queued, and
    the next request tries again.
    """
    key = (deployment_id, profile_id)
    if _fetched.get(key, 0) >= version or not config_cache.redis_up:
        return
    if _queue("rollout_record_fetch", deployment_id, profile_id, version, retry=False):
        _fetched[key] = version


def rollout_record_fetch(*, deployment_id: int, profile_id: int, version: int) -> None:
    """A deployment fetched `version` of a profile: its target for that version is delivered."""
    _record_report(deployment_id=deployment_id, profile_id=profile_id, version=version)


def rollout_record_ack(*, deployment: Deployment, version: int) -> None:
    """A deployment acknowledged applying `version` of the profile it follows."""
    profile = Profile.objects.filter(
        tenant_id=deployment.tenant_id, name=deployment.profile_name
    ).first()
    if profile is not None:
        _record_report(
            deployment_id=deployment.pk, profile_id=profile.pk, version=version, acked=True
        )


def _record_report(*, deployment_id: int, profile_id: int, version: int, acked=False) -> None:
    with transaction.atomic():
        targets = list(
            _targets_locked().filter(
                deployment_id=deployment_id,
                rollout__profile_id=profile_id,
                rollout__version__number=version,
            )
        )
        mark = _marks_locked({(deployment_id, profile_id)})[(deployment_id, profile_id)]
        now = timezone.now()
        if version > mark.reported_version:
            mark.reported_version = version
            mark.reported_at = now
            mark.save(update_fields=["reported_version", "reported_at"])
        changes = _Changes()
        for target in targets:
            if acked and target.acked_version != version:
                target.acked_version = version
                target.save(update_fields=["acked_version", "updated_at"])
            if target.status in OPEN_TARGETS:
                via = "ack" if acked else "fetch"
                _settle(
                    target,
                    TargetStatus.DELIVERED,
                    target.last_error,
                    changes=changes,
                    now=now,
                    via=via,
                )
                target.save(update_fields=SETTLE_FIELDS)
        changes.finish()


# Resume --------------------------------------------------------------------------------------


@transaction.atomic
def rollout_resume(*, rollout_id: int, actor, reason: str) -> Rollout:
    """An admin lets a paused (or finished-with-failures) rollout go on: failed targets get
    a fresh set of attempts and the general wave opens, whatever the canaries did."""
    rollout = _locked(rollout_id)
    tenant = rollout.profile.tenant
    if membership_allowing(user=actor, tenant=tenant, perm=MANAGE_DEPLOYMENTS) is None:
        raise RolloutNotAllowed(f"only admins of {tenant.slug} may resume a rollout")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("a reason is required to resume a rollout")
    if rollout.status not in RESUMABLE:
        raise RolloutNotResumable(
            f"the rollout of version {rollout.version.number} is {rollout.status}; "
            "only paused or failed rollouts can be resumed"
        )
    now = timezone.now()
    retried = list(
        rollout.targets.select_for_update(of=("self",))
        .filter(status=TargetStatus.FAILED)
        .values_list("pk", flat=True)
    )
    rollout.targets.filter(pk__in=retried).update(
        status=TargetStatus.PENDING,
        attempts=0,
        settled_at=None,
        released_at=now,
        next_attempt_at=now,
        updated_at=now,
    )
    previous = rollout.status
    rollout.status = RolloutStatus.ACTIVE
    rollout.status_reason = ""
    rollout.finished_at = None
    rollout.save(update_fields=["status", "status_reason", "finished_at"])
    changes = _Changes()
    changes.audit(
        "rollout.resumed",
        tenant=tenant.slug,
        target=f"profile:{rollout.profile}",
        data={
            "rollout": rollout.pk,
            "version": rollout.version.number,
            "was": previous,
            "reason": reason.strip(),
            "retried": len(retried),
        },
        actor=actor,
    )
    if rollout.wave == Wave.CANARY:
        _open_general_wave(rollout, changes, now=now)
    # Pushes that found the rollout paused stopped where they were: queue every open one.
    waiting = rollout.targets.filter(
        status__in=OPEN_TARGETS, mode=DeliveryMode.PUSH, released_at__isnull=False
    )
    _after_commit(_queue_deliveries, list(waiting.order_by("pk").values_list("pk", flat=True)))
    _evaluate(rollout, changes)
    changes.finish()
    return rollout


# Reconcile -----------------------------------------------------------------------------------


def rollouts_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue what is stuck, settle pull targets that reported or ran out of time, and
    advance every open rollout. Run by Celery beat; safe to run at any time, any number."""
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=_setting("STUCK_SECONDS"))
    result = {"started": 0, "joined": 0, "requeued": 0, "reported": 0, "timed_out": 0}
    for rollout_id in Rollout.objects.filter(
        status=RolloutStatus.PENDING, created_at__lt=stuck_before
    ).values_list("pk", flat=True):
        rollout_advance(rollout_id=rollout_id)
        result["started"] += 1
    result["joined"] = _join_late_deployments(now)
    result["reported"], result["timed_out"] = _reconcile_reports(now)
    with transaction.atomic():
        stuck = list(
            RolloutTarget.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(
                status__in=OPEN_TARGETS,
                mode=DeliveryMode.PUSH,
                rollout__status=RolloutStatus.ACTIVE,
                released_at__isnull=False,
                next_attempt_at__lt=stuck_before,
            )
            .values_list("pk", flat=True)
        )
        RolloutTarget.objects.filter(pk__in=stuck).update(next_attempt_at=now, updated_at=now)
    _queue_deliveries(stuck)
    result["requeued"] = len(stuck)
    for rollout_id in Rollout.objects.filter(status=RolloutStatus.ACTIVE).values_list(
        "pk", flat=True
    ):
        rollout_advance(rollout_id=rollout_id)
    if any(result.values()):
        log.info("rollout reconcile: %s", result)
    return result


def _join_late_deployments(now: datetime) -> int:
    """Deployments that follow a profile but have no part in the rollout of its current
    version (added, or pointed at the profile, after that rollout started) join it, so
    every deployment ends up running the current version."""
    current = (
        Rollout.objects.filter(
            profile__tenant_id=OuterRef("tenant_id"), profile__name=OuterRef("profile_name")
        )
        .order_by("-version__number")
        .values("pk")[:1]
    )
    has_target = RolloutTarget.objects.filter(
        rollout_id=OuterRef("current_rollout"), deployment_id=OuterRef("pk")
    )
    late = (
        Deployment.objects.annotate(current_rollout=Subquery(current))
        .filter(current_rollout__isnull=False)
        .exclude(Exists(has_target))
        .order_by("pk")
        .values_list("current_rollout", "pk")
    )
    return sum(_join(rollout_id, deployment_id, now=now) for rollout_id, deployment_id in late)


def _join(rollout_id: int, deployment_id: int, *, now: datetime) -> bool:
    with transaction.atomic():
        rollout = _locked(rollout_id)
        deployment = Deployment.objects.select_related("tenant").get(pk=deployment_id)
        if (
            rollout.status in (RolloutStatus.PENDING, RolloutStatus.SUPERSEDED)
            or deployment.profile_name != rollout.profile.name
            or rollout.targets.filter(deployment=deployment).exists()
        ):
            return False  # its start plans it, a newer rollout takes it, or it moved on
        number = rollout.version.number
        reported = (
            DeploymentDelivery.objects.filter(deployment=deployment, profile=rollout.profile)
            .values_list("reported_version", flat=True)
            .first()
        )
        target = _target(rollout, deployment, reported=reported or 0, now=now)
        target.save()
        has_it = target.status == TargetStatus.DELIVERED
        mode = target.mode
        released = target.released_at is not None
        reopened = not has_it and rollout.status in (
            RolloutStatus.COMPLETED,
            RolloutStatus.FAILED,
        )
        if reopened:
            rollout.status = RolloutStatus.ACTIVE
            rollout.finished_at = None
            rollout.status_reason = ""
            rollout.save(update_fields=["status", "finished_at", "status_reason"])
        changes = _Changes()
        changes.audit(
            "rollout.deployment_joined",
            tenant=deployment.tenant.slug,
            target=f"profile:{rollout.profile}",
            data={
                "rollout": rollout.pk,
                "version": number,
                "deployment": deployment.slug,
                "mode": mode,
                "already_delivered": has_it,
                "reopened": reopened,
            },
        )
        changes.finish()
        if released and mode == DeliveryMode.PUSH and not has_it:
            _after_commit(_queue_deliveries, [target.pk])
    return True


def _reconcile_reports(now: datetime) -> tuple[int, int]:
    """Open targets whose deployment reported the version (a report can race the start),
    and pull targets past REDLINE_ROLLOUT_PULL_DEADLINE_SECONDS since their wave opened."""
    deadline = now - timedelta(seconds=_setting("PULL_DEADLINE_SECONDS"))
    reported = DeploymentDelivery.objects.filter(
        deployment_id=OuterRef("deployment_id"),
        profile_id=OuterRef("rollout__profile_id"),
        reported_version__gte=OuterRef("rollout__version__number"),
    )
    has_it = list(
        RolloutTarget.objects.filter(
            Exists(reported), status__in=OPEN_TARGETS, rollout__status=RolloutStatus.ACTIVE
        ).values_list("pk", flat=True)
    )
    overdue = list(
        RolloutTarget.objects.filter(
            status=TargetStatus.PENDING,
            mode=DeliveryMode.PULL,
            rollout__status=RolloutStatus.ACTIVE,
            released_at__lt=deadline,
        )
        .exclude(pk__in=has_it)
        .values_list("pk", flat=True)
    )
    for pk in has_it + overdue:
        _settle_unreported(pk, delivered=pk in has_it, now=now)
    return len(has_it), len(overdue)


def _settle_unreported(target_id: int, *, delivered: bool, now: datetime) -> None:
    with transaction.atomic():
        target = (
            _targets_locked(skip_locked=True).filter(pk=target_id, status__in=OPEN_TARGETS).first()
        )
        if target is None:
            return
        changes = _Changes()
        if delivered:
            reason = target.last_error
            _settle(target, TargetStatus.DELIVERED, reason, changes=changes, now=now, via="report")
        else:
            hours = _setting("PULL_DEADLINE_SECONDS") / 3600
            _settle(
                target,
                TargetStatus.FAILED,
                f"did not fetch or acknowledge version {target.rollout.version.number} "
                f"within {hours:g} h of its wave opening",
                changes=changes,
                now=now,
            )
        target.save(update_fields=SETTLE_FIELDS)
        changes.finish()


# Reads -----------------------------------------------------------------------------------------


def rollouts_with_counts(queryset):
    """Rollouts, newest first, with their targets counted per status (one query)."""
    counts = {
        f"n_{status}": Count("targets", filter=Q(targets__status=status))
        for status in TargetStatus.values
    }
    return (
        queryset.select_related("profile", "version")
        .annotate(**counts)
        .order_by("-created_at", "-pk")
    )


def rollout_progress(rollout: Rollout) -> dict:
    """Counts per status and per wave, ready for the API and the console."""
    by_wave = {name: dict.fromkeys(TargetStatus.values, 0) for name in WAVE_NAMES.values()}
    by_status = dict.fromkeys(TargetStatus.values, 0)
    for (wave, status), n in _counts(rollout).items():
        by_wave[WAVE_NAMES[wave]][status] = n
        by_status[status] += n
    return {"by_status": by_status, "by_wave": by_wave, "total": sum(by_status.values())}
