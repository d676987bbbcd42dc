"""Rollout of a new profile version to every deployment that follows the profile.

A Rollout row is written with its version, in the same transaction (rollout_create), so a
crash cannot lose it; after commit it starts (rollout_advance): it supersedes the rollouts
of older versions and plans one RolloutTarget per deployment.

* Push deployments (with a webhook URL) get the signed document by POST (target_deliver),
  retried with exponential backoff and jitter up to REDLINE_ROLLOUT_MAX_ATTEMPTS. A
  per-deployment mark (DeploymentDelivery) keeps one push in flight per deployment and
  never lets a version older than the newest one sent go out.
* Pull deployments are delivered when they fetch or acknowledge the version
  (rollout_fetch_seen from the config hot path, rollout_record_ack from the ack view).
* Waves: canaries first; every other deployment once every canary is delivered and the
  soak time (REDLINE_ROLLOUT_SOAK_SECONDS) has passed. A failed canary pauses the rollout
  and tells both parties (audit event, log, and the rollout_paused signal); an admin of
  either party resumes it (rollout_resume), or both roll back with a change request that
  restores an earlier version (approvals.services.rollback_request_submit).
* rollouts_reconcile (Celery beat) re-queues what a crashed worker or a lost broker
  message left behind, so nothing hangs.

No row lock is held across an HTTP request. Lock order: a profile's rollouts (ascending),
then targets, then delivery marks; every row lock before the first audit event.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.dispatch import Signal
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from audit.services import audit_record
from config.errors import Conflict, DomainError, ValidationFailed
from tenants.models import Deployment
from tenants.permissions import MANAGE_DEPLOYMENTS
from tenants.selectors import membership_allowing
from toggles.delivery import Outcome, backoff_delay, push
from toggles.documents import catalog_current, document_load
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
from toggles.serving import REDIS_ERRORS, config_cache, document_key
from toggles.signing import SIGNATURE_HEADER

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

# Sent after commit when a failed canary pauses a rollout: rollout=<Rollout>.
rollout_paused = Signal()


class RolloutNotAllowed(DomainError):
    status_code = 403
    code = "permission_denied"


class RolloutNotResumable(Conflict):
    code = "not_resumable"


def _setting(name: str):
    return getattr(settings, f"REDLINE_ROLLOUT_{name}")


@dataclass
class _AuditLater:
    """Audit events gathered while rows are locked, written once the last lock is held."""

    tenant: str
    events: list[tuple] = field(default_factory=list)

    def add(self, action: str, target: str, data: dict, actor=None) -> None:
        self.events.append((actor, action, target, data))

    def write(self) -> None:
        for actor, action, target, data in self.events:
            audit_record(actor=actor, action=action, tenant=self.tenant, target=target, data=data)


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
    for target_id in target_ids:
        if not _queue("rollout_target_deliver", target_id, countdown=countdown):
            return


def _after_commit(function, *args, **kwargs) -> None:
    transaction.on_commit(lambda: function(*args, **kwargs))


# Create and start ----------------------------------------------------------------------


def rollout_create(*, version: ProfileVersion) -> Rollout:
    """The rollout of a new version, written in the version's own transaction.

    Only an insert: older rollouts are superseded and targets planned when it starts.
    """
    rollout = Rollout.objects.create(profile=version.profile, version=version)
    _after_commit(_queue, "rollout_advance", rollout.pk)
    return rollout


def _target_label(target: RolloutTarget) -> str:
    return f"deployment:{target.deployment.tenant.slug}/{target.deployment.slug}"


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
        audit = _AuditLater(rollout.profile.tenant.slug)
        _evaluate(rollout, audit)
        audit.write()


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
    audit = _AuditLater(profile.tenant.slug)
    target_label = f"profile:{profile}"
    number = rollout.version.number
    newer = (
        Rollout.objects.filter(profile=profile, version__number__gt=number)
        .order_by("version__number")
        .first()
    )
    for older in locked[:-1]:
        _supersede(older, by=rollout, audit=audit)
    if newer is not None:
        _supersede(rollout, by=newer, audit=audit)
        audit.write()
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
    rollout.wave = Wave.CANARY if any(d.is_canary for d in deployments) else Wave.GENERAL
    targets = []
    for deployment in deployments:
        wave = Wave.CANARY if deployment.is_canary else Wave.GENERAL
        mode = DeliveryMode.PUSH if deployment.webhook_url else DeliveryMode.PULL
        has_it = reported.get(deployment.pk, 0) >= number
        released = wave <= rollout.wave
        targets.append(
            RolloutTarget(
                rollout=rollout,
                deployment=deployment,
                wave=wave,
                mode=mode,
                status=TargetStatus.DELIVERED if has_it else TargetStatus.PENDING,
                settled_at=now if has_it else None,
                released_at=now if released else None,
                next_attempt_at=now if released and mode == DeliveryMode.PUSH else None,
            )
        )
    RolloutTarget.objects.bulk_create(targets)
    rollout.status = RolloutStatus.ACTIVE
    rollout.started_at = now
    rollout.save(update_fields=["status", "wave", "started_at"])
    audit.add(
        "rollout.started",
        target_label,
        {
            "rollout": rollout.pk,
            "version": number,
            "deployments": len(targets),
            "canaries": sum(t.wave == Wave.CANARY for t in targets),
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
    _evaluate(rollout, audit)
    audit.write()


def _supersede(rollout: Rollout, *, by: Rollout, audit: _AuditLater) -> None:
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
    audit.add(
        "rollout.superseded",
        f"profile:{rollout.profile}",
        {
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


def _evaluate(rollout: Rollout, audit: _AuditLater) -> None:
    """With the rollout locked and active: pause, open the general wave, or finish."""
    counts = _counts(rollout)
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
            audit.add(
                "rollout.paused",
                label,
                {
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
        _after_commit(_queue_deliveries, _open_general_wave(rollout, audit, now=now))
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
    audit.add(
        f"rollout.{rollout.status}",
        label,
        {
            "rollout": rollout.pk,
            "version": number,
            "delivered": delivered,
            "failed": failed_count,
        },
    )


def _open_general_wave(rollout: Rollout, audit: _AuditLater, *, now: datetime) -> list[int]:
    """Release every other deployment; returns the push targets to queue."""
    rollout.wave = Wave.GENERAL
    rollout.save(update_fields=["wave"])
    waiting = rollout.targets.filter(wave=Wave.GENERAL, released_at__isnull=True)
    waiting.update(released_at=now, updated_at=now)
    push_ids = list(
        rollout.targets.filter(
            wave=Wave.GENERAL, status=TargetStatus.PENDING, mode=DeliveryMode.PUSH
        ).values_list("pk", flat=True)
    )
    rollout.targets.filter(pk__in=push_ids).update(next_attempt_at=now)
    audit.add(
        "rollout.wave_opened",
        f"profile:{rollout.profile}",
        {"rollout": rollout.pk, "version": rollout.version.number, "wave": "general"},
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
    rollout_paused.send(sender=Rollout, rollout=rollout)


def _maybe_advance(rollout_id: int, wave: int, failed_canary: bool) -> None:
    """After a target settled: queue an advance if the rollout may now move on.

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
    document kept in Redis when the version was published, else built from PostgreSQL."""
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


def _mark_locked(*, deployment_id: int, profile_id: int) -> DeploymentDelivery:
    DeploymentDelivery.objects.bulk_create(
        [DeploymentDelivery(deployment_id=deployment_id, profile_id=profile_id)],
        ignore_conflicts=True,
    )
    return DeploymentDelivery.objects.select_for_update().get(
        deployment_id=deployment_id, profile_id=profile_id
    )


@dataclass(frozen=True)
class _Attempt:
    target_id: int
    number: int
    url: str
    body: bytes
    headers: dict[str, str]


def target_deliver(*, target_id: int) -> None:
    """One push attempt to one deployment; the next one is queued with backoff. Idempotent:
    a settled target, one whose wave is not open, or one already in flight is left alone."""
    attempt = _attempt_begin(target_id)
    if attempt is None:
        return
    result = push(
        url=attempt.url,
        body=attempt.body,
        headers=attempt.headers,
        timeout=_setting("TIMEOUT_SECONDS"),
    )
    _attempt_end(attempt, result)


def _attempt_begin(target_id: int) -> _Attempt | None:
    with transaction.atomic():
        target = (
            RolloutTarget.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("rollout__version", "rollout__profile", "deployment__tenant")
            .filter(pk=target_id)
            .first()
        )
        if target is None or target.status not in OPEN_TARGETS:
            return None
        rollout = target.rollout
        if (
            rollout.status != RolloutStatus.ACTIVE
            or target.wave > rollout.wave
            or target.mode != DeliveryMode.PUSH
        ):
            return None
        number = rollout.version.number
        now = timezone.now()
        mark = _mark_locked(deployment_id=target.deployment_id, profile_id=rollout.profile_id)
        if mark.sent_version >= number:
            audit = _AuditLater(target.deployment.tenant.slug)
            newer = mark.sent_version > number
            _settle(
                target,
                TargetStatus.SUPERSEDED if newer else TargetStatus.DELIVERED,
                f"version {mark.sent_version} was already sent" if newer else target.last_error,
                audit=audit,
                now=now,
            )
            audit.write()
            return None
        if mark.inflight_until and mark.inflight_until > now:
            if mark.inflight_version != number:
                _after_commit(
                    _queue, "rollout_target_deliver", target.pk, countdown=BUSY_RETRY_SECONDS
                )
            return None
        lease = now + timedelta(seconds=_setting("TIMEOUT_SECONDS")) + IN_FLIGHT_MARGIN
        mark.inflight_version = number
        mark.inflight_until = lease
        mark.save(update_fields=["inflight_version", "inflight_until"])
        target.status = TargetStatus.DELIVERING
        target.attempts += 1
        target.next_attempt_at = lease
        target.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
        body, signature = signed_document(rollout.version)
        return _Attempt(
            target_id=target.pk,
            number=target.attempts,
            url=target.deployment.webhook_url,
            body=body,
            headers={
                SIGNATURE_HEADER: signature,
                "Config-Version": str(number),
                "Idempotency-Key": idempotency_key(target),
            },
        )


def _attempt_end(attempt: _Attempt, result) -> None:
    with transaction.atomic():
        target = (
            RolloutTarget.objects.select_for_update(of=("self",))
            .select_related("rollout__version", "rollout__profile", "deployment__tenant")
            .get(pk=attempt.target_id)
        )
        rollout = target.rollout
        number = rollout.version.number
        now = timezone.now()
        mark = _mark_locked(deployment_id=target.deployment_id, profile_id=rollout.profile_id)
        if mark.inflight_version == number:
            mark.inflight_version = None
            mark.inflight_until = None
        if result.outcome == Outcome.DELIVERED and number > mark.sent_version:
            mark.sent_version = number
            mark.sent_at = now
        mark.save()
        current = target.status == TargetStatus.DELIVERING and target.attempts == attempt.number
        if not current:
            return  # settled meanwhile (an ack, a supersede) or taken over after a timeout
        audit = _AuditLater(target.deployment.tenant.slug)
        attempts_left = target.attempts < _setting("MAX_ATTEMPTS")
        if result.outcome == Outcome.DELIVERED:
            _settle(target, TargetStatus.DELIVERED, target.last_error, audit=audit, now=now)
        elif result.outcome == Outcome.FAIL or not attempts_left:
            reason = result.detail
            if result.outcome == Outcome.RETRY:
                reason += f" (gave up after {target.attempts} attempts)"
            _settle(target, TargetStatus.FAILED, reason, audit=audit, now=now)
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
            target.save(update_fields=["last_error", "next_attempt_at", "updated_at"])
            _after_commit(_queue, "rollout_target_deliver", target.pk, countdown=delay)
        audit.write()


def _settle(
    target: RolloutTarget, status: str, reason: str, *, audit: _AuditLater, now, via: str = "push"
) -> None:
    target.status = status
    target.last_error = reason
    target.settled_at = now
    target.next_attempt_at = None
    target.save(
        update_fields=["status", "last_error", "settled_at", "next_attempt_at", "updated_at"]
    )
    rollout = target.rollout
    if status in (TargetStatus.DELIVERED, TargetStatus.FAILED):
        audit.add(
            f"rollout_target.{status}",
            _target_label(target),
            {
                "rollout": rollout.pk,
                "profile": rollout.profile.name,
                "version": rollout.version.number,
                "via": via,
                "attempts": target.attempts,
                **({"error": reason} if status == TargetStatus.FAILED else {}),
            },
        )
    _after_commit(
        _maybe_advance,
        rollout.pk,
        target.wave,
        status == TargetStatus.FAILED and target.wave == Wave.CANARY,
    )


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
            RolloutTarget.objects.select_for_update(of=("self",))
            .select_related("rollout__version", "rollout__profile", "deployment__tenant")
            .filter(
                deployment_id=deployment_id,
                rollout__profile_id=profile_id,
                rollout__version__number=version,
            )
        )
        mark = _mark_locked(deployment_id=deployment_id, profile_id=profile_id)
        now = timezone.now()
        if version > mark.reported_version:
            mark.reported_version = version
            mark.reported_at = now
            mark.save(update_fields=["reported_version", "reported_at"])
        if not targets:
            return
        audit = _AuditLater(targets[0].deployment.tenant.slug)
        for target in targets:
            if acked and target.acked_version != version:
                target.acked_version = version
                target.save(update_fields=["acked_version", "updated_at"])
            if target.status in OPEN_TARGETS:
                _settle(
                    target,
                    TargetStatus.DELIVERED,
                    target.last_error,
                    audit=audit,
                    now=now,
                    via="ack" if acked else "fetch",
                )
        audit.write()


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
    audit = _AuditLater(tenant.slug)
    audit.add(
        "rollout.resumed",
        f"profile:{rollout.profile}",
        {
            "rollout": rollout.pk,
            "version": rollout.version.number,
            "was": previous,
            "reason": reason.strip(),
            "retried": len(retried),
        },
        actor=actor,
    )
    if rollout.wave == Wave.CANARY:
        _open_general_wave(rollout, audit, now=now)
    # Pushes that found the rollout paused stopped where they were: queue every open one.
    waiting = rollout.targets.filter(
        status__in=OPEN_TARGETS, mode=DeliveryMode.PUSH, released_at__isnull=False
    )
    _after_commit(_queue_deliveries, list(waiting.values_list("pk", flat=True)))
    _evaluate(rollout, audit)
    audit.write()
    return rollout


# Reconcile -----------------------------------------------------------------------------------


def rollouts_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Re-queue what is stuck, settle pull targets that reported or ran out of time, and
    advance every open rollout. Run by Celery beat; safe to run at any time, any number."""
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=_setting("STUCK_SECONDS"))
    result = {"started": 0, "requeued": 0, "reported": 0, "timed_out": 0}
    for rollout_id in Rollout.objects.filter(
        status=RolloutStatus.PENDING, created_at__lt=stuck_before
    ).values_list("pk", flat=True):
        rollout_advance(rollout_id=rollout_id)
        result["started"] += 1
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
            RolloutTarget.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("rollout__version", "rollout__profile", "deployment__tenant")
            .filter(pk=target_id, status__in=OPEN_TARGETS)
            .first()
        )
        if target is None:
            return
        audit = _AuditLater(target.deployment.tenant.slug)
        if delivered:
            reason = target.last_error
            _settle(target, TargetStatus.DELIVERED, reason, audit=audit, now=now, via="report")
        else:
            hours = _setting("PULL_DEADLINE_SECONDS") / 3600
            _settle(
                target,
                TargetStatus.FAILED,
                f"did not fetch or acknowledge version {target.rollout.version.number} "
                f"within {hours:g} h of its wave opening",
                audit=audit,
                now=now,
                via="pull",
            )
        audit.write()


# Reads -----------------------------------------------------------------------------------------


def rollouts_with_counts(queryset):
    """Annotate rollouts with their targets counted per status (one query)."""
    return queryset.select_related("profile", "version").annotate(
        **{
            f"n_{status}": Count("targets", filter=Q(targets__status=status))
            for status in TargetStatus.values
        }
    )


def rollout_progress(rollout: Rollout) -> dict:
    """Counts per status and per wave, ready for the API and the console."""
    by_wave = {name: dict.fromkeys(TargetStatus.values, 0) for name in WAVE_NAMES.values()}
    by_status = dict.fromkeys(TargetStatus.values, 0)
    for (wave, status), n in _counts(rollout).items():
        by_wave[WAVE_NAMES[wave]][status] = n
        by_status[status] += n
    return {"by_status": by_status, "by_wave": by_wave, "total": sum(by_status.values())}
