"""Every write of the approval engine: submit, decide, withdraw, apply, expire, revert, brake.

Lock order, everywhere: the profile (or quorum policy) row first, then change requests,
and every row lock before the first audit event (the audit chain's lock is global).
"""

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from approvals import notifications
from approvals.errors import (
    AlreadyDecided,
    DigestMismatch,
    NotAllowed,
    RequestNotPending,
    SelfApprovalForbidden,
)
from approvals.models import (
    ChangeRequest,
    Decision,
    QuorumPolicy,
    RequestKind,
    RequestStatus,
    Verdict,
)
from approvals.policy import (
    highest_tier,
    policy_apply_values,
    policy_change_direction,
    policy_validate_changes,
    policy_values,
    requirement_for,
)
from approvals.quorum import Requirement, Tally, Vote, tally
from approvals.transitions import OPEN_STATUSES, can_move
from audit.chain import canonical_json
from audit.services import audit_record
from config.errors import RedLineViolation, ValidationFailed
from tenants.models import Role, Tenant
from tenants.permissions import PROPOSE_CHANGE, REVIEW_CHANGE
from tenants.selectors import membership_allowing, membership_of, reviewers_for
from tenants.services import tenant_ensure_active
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion, VersionKind, red_line_message
from toggles.services import NoChange, StaleBaseVersion, profile_version_create, validate_changes
from toggles.values import Direction, RiskTier, ValueType, change_direction, safest_value

log = logging.getLogger(__name__)

MAX_TIME_BOX = timedelta(days=30)
MIN_TIME_BOX = timedelta(minutes=1)
BRAKE_ROLES = (Role.ADMIN, Role.REVIEWER)
# Moves that end a request; the requester and both parties are told of each.
CLOSED_STATUSES = frozenset(
    {
        RequestStatus.APPLIED,
        RequestStatus.REJECTED,
        RequestStatus.EXPIRED,
        RequestStatus.STALE,
        RequestStatus.WITHDRAWN,
    }
)


def _username(user) -> str:
    return user.get_username() if user is not None else "system"


# Policy ----------------------------------------------------------------------------


def quorum_policy_for(tenant: Tenant) -> QuorumPolicy:
    """The tenant's policy, created at the defaults the first time it is needed."""
    policy = QuorumPolicy.objects.filter(tenant=tenant).first()
    if policy is not None:
        return policy
    with transaction.atomic():
        policy, created = QuorumPolicy.objects.get_or_create(tenant=tenant)
        if created:
            audit_record(
                actor=None,
                action="quorum_policy.created",
                tenant=tenant.slug,
                target=f"policy:{tenant.slug}",
                data=policy_values(policy),
            )
    return policy


# Submit ----------------------------------------------------------------------------


def change_request_digest(cr: ChangeRequest) -> str:
    """Covers everything a reviewer sees, so a decision binds to exactly that content."""
    document = {
        "tenant": cr.tenant.slug,
        "kind": cr.kind,
        "profile": cr.profile.name if cr.profile_id else None,
        "base_version": cr.base_version,
        "changes": cr.changes,
        "previous": cr.previous,
        "directions": cr.directions,
        "risk_tier": cr.risk_tier,
        "required": [cr.required_vendor, cr.required_customer, cr.required_any],
        "vetoes_required": cr.vetoes_required,
        "justification": cr.justification,
        "requester": cr.requester.get_username(),
        "time_box_seconds": int(cr.time_box.total_seconds()) if cr.time_box else None,
        "created_at": cr.created_at.isoformat(),
        "expires_at": cr.expires_at.isoformat(),
    }
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class _Proposal:
    base_version: int
    changes: dict[str, Any]
    previous: dict[str, Any]
    directions: dict[str, str]
    risk_tier: str


def _profile_proposal(profile: Profile, changes: Any, base_version: int) -> _Proposal:
    clean = validate_changes(changes)
    # Locked, so no version lands between this check and the commit of the request.
    profile = Profile.objects.select_for_update().get(pk=profile.pk)
    if base_version != profile.current_version:
        raise StaleBaseVersion(
            f"{profile} is at version {profile.current_version}, not {base_version}; "
            "rebuild the change on the current version"
        )
    capabilities = {c.key: c for c in Capability.objects.filter(key__in=list(clean))}
    version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    current = effective_values([c.spec() for c in capabilities.values()], version.values)
    no_ops = [key for key, value in clean.items() if current[key] == value]
    if no_ops:
        raise NoChange(
            f"'{no_ops[0]}' is already {clean[no_ops[0]]!r} in version {version.number}; "
            "leave it out of the request"
        )
    directions = {
        key: change_direction(capabilities[key].spec(), current[key], value).value
        for key, value in clean.items()
    }
    return _Proposal(
        base_version=version.number,
        changes=clean,
        previous={key: current[key] for key in clean},
        directions=directions,
        risk_tier=highest_tier(capabilities[key].risk_tier for key in clean),
    )


def _policy_proposal(policy: QuorumPolicy, changes: Any, base_version: int) -> _Proposal:
    policy = QuorumPolicy.objects.select_for_update().get(pk=policy.pk)
    clean = policy_validate_changes(policy, changes)
    if base_version != policy.version:
        raise StaleBaseVersion(
            f"the quorum policy is at version {policy.version}, not {base_version}; "
            "rebuild the change on the current version"
        )
    current = policy_values(policy)
    no_ops = [key for key, value in clean.items() if current[key] == value]
    if no_ops:
        raise NoChange(f"'{no_ops[0]}' is already {clean[no_ops[0]]}; leave it out of the request")
    return _Proposal(
        base_version=policy.version,
        changes=clean,
        previous={key: current[key] for key in clean},
        directions={k: policy_change_direction(k, current[k], v).value for k, v in clean.items()},
        risk_tier=RiskTier.CRITICAL.value,
    )


@transaction.atomic
def change_request_submit(
    *,
    tenant: Tenant,
    actor,
    changes: Any,
    justification: str,
    base_version: int,
    profile: Profile | None = None,
    time_box: timedelta | None = None,
) -> ChangeRequest:
    """Open a request on a profile, or on the quorum policy when no profile is given."""
    tenant_ensure_active(tenant)
    if membership_allowing(user=actor, tenant=tenant, perm=PROPOSE_CHANGE) is None:
        raise NotAllowed(f"{_username(actor)} may not propose changes in {tenant.slug}")
    if not isinstance(justification, str) or not justification.strip():
        raise ValidationFailed("a justification is required: say why the change is needed")
    policy = quorum_policy_for(tenant)
    if profile is not None:
        if profile.tenant_id != tenant.pk:
            raise ValidationFailed(f"profile '{profile.name}' is not a profile of {tenant.slug}")
        proposal = _profile_proposal(profile, changes, base_version)
        kind = RequestKind.PROFILE
    else:
        proposal = _policy_proposal(policy, changes, base_version)
        kind = RequestKind.POLICY
    loosening = Direction.LOOSENING.value in proposal.directions.values()
    if time_box is not None:
        _check_time_box(time_box, kind=kind, directions=proposal.directions)
    requirement = requirement_for(policy, tier=proposal.risk_tier, loosening=loosening)
    now = timezone.now()
    cr = ChangeRequest(
        tenant=tenant,
        kind=kind,
        profile=profile,
        base_version=proposal.base_version,
        changes=proposal.changes,
        previous=proposal.previous,
        directions=proposal.directions,
        risk_tier=proposal.risk_tier,
        is_loosening=loosening,
        required_vendor=requirement.vendor,
        required_customer=requirement.customer,
        required_any=requirement.any_party,
        vetoes_required=requirement.vetoes,
        justification=justification.strip(),
        requester=actor,
        time_box=time_box,
        created_at=now,
        expires_at=now + policy.pending_lifetime,
        status_changed_at=now,
    )
    cr.digest = change_request_digest(cr)
    cr.save()
    audit_record(
        actor=actor,
        action="change_request.submitted",
        tenant=tenant.slug,
        target=f"change_request:{cr.pk}",
        data={
            "kind": kind,
            "profile": profile.name if profile else None,
            "base_version": cr.base_version,
            "changes": cr.changes,
            "previous": cr.previous,
            "directions": cr.directions,
            "risk_tier": cr.risk_tier,
            "required": {
                "vendor": cr.required_vendor,
                "customer": cr.required_customer,
                "any": cr.required_any,
            },
            "time_box_seconds": int(time_box.total_seconds()) if time_box else None,
            "digest": cr.digest,
        },
    )
    notifications.notify_review_requested(cr)
    return cr


def _check_time_box(time_box: timedelta, *, kind: str, directions: dict[str, str]) -> None:
    if kind != RequestKind.PROFILE:
        raise ValidationFailed("a time box applies to profile changes, not to the quorum policy")
    if any(direction != Direction.LOOSENING for direction in directions.values()):
        raise ValidationFailed(
            "a time box is for grants that only loosen: reverting a tightening would loosen "
            "without quorum; split the request"
        )
    text = sorted(
        Capability.objects.filter(
            key__in=list(directions), value_type=ValueType.STRING
        ).values_list("key", flat=True)
    )
    if text:
        raise ValidationFailed(
            f"a time box cannot cover '{text[0]}': text has no safer side, so putting it back "
            "would be a change of its own that needs both parties; split the request"
        )
    if not MIN_TIME_BOX <= time_box <= MAX_TIME_BOX:
        raise ValidationFailed("a time box must be between 1 minute and 30 days")


# Locking ---------------------------------------------------------------------------


def _lock_request(change_request_id: int) -> ChangeRequest:
    """Lock the request's profile (or policy) first, then the request itself."""
    unlocked = (
        ChangeRequest.objects.filter(pk=change_request_id)
        .values("kind", "profile_id", "tenant_id")
        .first()
    )
    if unlocked is None:
        raise ChangeRequest.DoesNotExist(f"no change request #{change_request_id}")
    if unlocked["kind"] == RequestKind.PROFILE:
        Profile.objects.select_for_update().get(pk=unlocked["profile_id"])
    else:
        QuorumPolicy.objects.select_for_update().get(tenant_id=unlocked["tenant_id"])
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("tenant", "profile", "requester")
        .get(pk=change_request_id)
    )


def _move(cr: ChangeRequest, status: str, *, actor, reason: str = "", data=None) -> None:
    if not can_move(cr.status, status):
        raise RequestNotPending(
            f"change request #{cr.pk} is {cr.status}; it cannot become {status}"
        )
    now = timezone.now()
    previous = cr.status
    cr.status = status
    cr.status_reason = reason
    cr.status_changed_at = now
    fields = ["status", "status_reason", "status_changed_at"]
    if status == RequestStatus.APPROVED:
        cr.approved_at = now
        fields.append("approved_at")
    cr.save(update_fields=fields)
    audit_record(
        actor=actor,
        action=f"change_request.{status}",
        tenant=cr.tenant.slug,
        target=f"change_request:{cr.pk}",
        data={"from": previous, "reason": reason, **(data or {})},
    )
    if status in CLOSED_STATUSES:
        notifications.notify_request_closed(cr)


# Decide ----------------------------------------------------------------------------


def change_request_tally(cr: ChangeRequest) -> Tally:
    """Where the request stands, counted against the tenant's current reviewers."""
    roster = {m.user_id: m.party for m in reviewers_for(tenant=cr.tenant)}
    votes = [
        Vote(reviewer_id=d.reviewer_id, party=d.party, approve=d.verdict == Verdict.APPROVE)
        for d in cr.decisions.all()
    ]
    requirement = Requirement(
        vendor=cr.required_vendor,
        customer=cr.required_customer,
        any_party=cr.required_any,
        vetoes=cr.vetoes_required,
    )
    return tally(requirement=requirement, requester_id=cr.requester_id, votes=votes, roster=roster)


def change_request_decide(
    *,
    change_request_id: int,
    actor,
    verdict: str,
    channel: str,
    comment: str = "",
    seen_digest: str | None = None,
) -> ChangeRequest:
    """Record one reviewer's decision; apply or reject the request when it settles.

    A request found past its lifetime is marked expired; the refusal is raised after that
    transaction, so the expiry is kept.
    """
    cr = _decide(
        change_request_id=change_request_id,
        actor=actor,
        verdict=verdict,
        channel=channel,
        comment=comment,
        seen_digest=seen_digest,
    )
    if cr.status == RequestStatus.EXPIRED:
        raise RequestNotPending(
            f"change request #{cr.pk} expired at {cr.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return cr


@transaction.atomic
def _decide(
    *,
    change_request_id: int,
    actor,
    verdict: str,
    channel: str,
    comment: str,
    seen_digest: str | None,
) -> ChangeRequest:
    cr = _lock_request(change_request_id)
    if _expire_if_due(cr):
        return cr
    if cr.status != RequestStatus.PENDING:
        raise RequestNotPending(
            f"change request #{cr.pk} is {cr.status}; only pending requests take decisions"
        )
    if actor.pk == cr.requester_id:
        raise SelfApprovalForbidden(
            "you requested this change; the requester never decides on their own request"
        )
    membership = membership_allowing(user=actor, tenant=cr.tenant, perm=REVIEW_CHANGE)
    if membership is None:
        raise NotAllowed(f"{_username(actor)} is not a reviewer of {cr.tenant.slug}")
    if verdict not in Verdict.values:
        raise ValidationFailed("verdict must be 'approve' or 'reject'")
    if seen_digest is not None and seen_digest != cr.digest:
        raise DigestMismatch(
            f"change request #{cr.pk} is not the content you reviewed; reload it and decide again"
        )
    if Decision.objects.filter(change_request=cr, reviewer=actor).exists():
        raise AlreadyDecided(f"{_username(actor)} has already decided on change request #{cr.pk}")
    decision = Decision.objects.create(
        change_request=cr,
        reviewer=actor,
        party=membership.party,
        verdict=verdict,
        comment=comment.strip(),
        channel=channel,
        request_digest=cr.digest,
    )
    audit_record(
        actor=actor,
        action=f"decision.{verdict}",
        tenant=cr.tenant.slug,
        target=f"change_request:{cr.pk}",
        data={
            "party": decision.party,
            "channel": channel,
            "comment": decision.comment,
            "digest": cr.digest,
        },
    )
    _settle(cr, actor=actor)
    return cr


def _settle(cr: ChangeRequest, *, actor) -> None:
    result = change_request_tally(cr)
    if result.vetoed:
        rejections = cr.decisions.filter(
            verdict=Verdict.REJECT, reviewer_id__in=result.rejected_by
        ).select_related("reviewer")
        reason = "; ".join(
            f"rejected by {d.reviewer.get_username()} ({d.party})"
            + (f": {d.comment}" if d.comment else "")
            for d in rejections
        )
        _move(cr, RequestStatus.REJECTED, actor=actor, reason=reason)
    elif result.met:
        _move(
            cr,
            RequestStatus.APPROVED,
            actor=actor,
            data={
                "vendor_approvals": result.vendor_approvals,
                "customer_approvals": result.customer_approvals,
            },
        )
        _apply(cr, actor=actor)


# Apply -----------------------------------------------------------------------------


def _apply(cr: ChangeRequest, *, actor) -> None:
    """Apply an approved, locked request, or mark it stale if its base has moved on."""
    if cr.kind == RequestKind.POLICY:
        _apply_policy(cr, actor=actor)
        return
    profile = cr.profile
    profile.refresh_from_db(fields=["current_version"])
    if profile.current_version != cr.base_version:
        _move(cr, RequestStatus.STALE, actor=actor, reason=_moved_on(profile.current_version, cr))
        return
    others = _lock_open_requests(profile, excluding=cr.pk)
    try:
        version = profile_version_create(
            profile=profile,
            changes=cr.changes,
            actor=cr.requester,
            reason=cr.justification,
            kind=VersionKind.CHANGE_REQUEST,
            source=f"change_request:{cr.pk}",
            base_version=cr.base_version,
        )
    except (ValidationFailed, RedLineViolation) as error:
        # The catalog changed under an approved request; it waits for its apply window.
        cr.status_reason = f"not applied: {error}"
        cr.save(update_fields=["status_reason"])
        audit_record(
            actor=actor,
            action="change_request.apply_failed",
            tenant=cr.tenant.slug,
            target=f"change_request:{cr.pk}",
            data={"error": str(error)},
        )
        return
    _mark_applied(cr, version_number=version.number, actor=actor)
    _stale_all(others, profile=profile, actor=actor)


def _apply_policy(cr: ChangeRequest, *, actor) -> None:
    policy = QuorumPolicy.objects.select_for_update().get(tenant=cr.tenant)
    if policy.version != cr.base_version:
        _move(
            cr,
            RequestStatus.STALE,
            actor=actor,
            reason=_policy_moved_on(policy.version),
        )
        return
    others = list(
        ChangeRequest.objects.select_for_update(of=("self",))
        .filter(tenant=cr.tenant, kind=RequestKind.POLICY, status__in=OPEN_STATUSES)
        .exclude(pk=cr.pk)
        .select_related("tenant")
    )
    before = policy_values(policy)
    policy_apply_values(policy, cr.changes)
    policy.version += 1
    policy.save()
    audit_record(
        actor=actor,
        action="quorum_policy.changed",
        tenant=cr.tenant.slug,
        target=f"policy:{cr.tenant.slug}",
        data={
            "version": policy.version,
            "change_request": cr.pk,
            "changes": {k: {"from": before[k], "to": v} for k, v in cr.changes.items()},
        },
    )
    _mark_applied(cr, version_number=policy.version, actor=actor)
    for other in others:
        _move(
            other,
            RequestStatus.STALE,
            actor=actor,
            reason=_policy_moved_on(policy.version),
        )


def _mark_applied(cr: ChangeRequest, *, version_number: int, actor) -> None:
    now = timezone.now()
    cr.applied_at = now
    cr.applied_version = version_number
    cr.revert_at = now + cr.time_box if cr.time_box else None
    cr.save(update_fields=["applied_at", "applied_version", "revert_at"])
    _move(
        cr,
        RequestStatus.APPLIED,
        actor=actor,
        data={
            "version": version_number,
            "revert_at": cr.revert_at.isoformat() if cr.revert_at else None,
        },
    )


def _policy_moved_on(version: int) -> str:
    return f"the quorum policy moved to version {version} before the request was applied"


def _moved_on(current_version: int, cr: ChangeRequest) -> str:
    return (
        f"{cr.profile} moved to version {current_version} before the request "
        f"(built on version {cr.base_version}) was applied"
    )


def _lock_open_requests(profile: Profile, *, excluding: int | None = None) -> list[ChangeRequest]:
    """Lock the profile's open requests before a new version makes them stale."""
    requests = (
        ChangeRequest.objects.select_for_update(of=("self",))
        .filter(profile=profile, status__in=OPEN_STATUSES)
        .select_related("tenant", "profile")
        .order_by("pk")
    )
    if excluding is not None:
        requests = requests.exclude(pk=excluding)
    return list(requests)


def _stale_all(requests: list[ChangeRequest], *, profile: Profile, actor) -> None:
    for cr in requests:
        _move(cr, RequestStatus.STALE, actor=actor, reason=_moved_on(profile.current_version, cr))


# Withdraw --------------------------------------------------------------------------


@transaction.atomic
def change_request_withdraw(*, change_request_id: int, actor, reason: str = "") -> ChangeRequest:
    cr = _lock_request(change_request_id)
    if actor.pk != cr.requester_id:
        raise NotAllowed("only the requester may withdraw a change request")
    if cr.status != RequestStatus.PENDING:
        raise RequestNotPending(
            f"change request #{cr.pk} is {cr.status}; only pending requests can be withdrawn"
        )
    _move(cr, RequestStatus.WITHDRAWN, actor=actor, reason=reason.strip() or "withdrawn")
    return cr


# Time: expiry, apply retries, grant reverts ----------------------------------------


def _expire_if_due(cr: ChangeRequest, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    if cr.status == RequestStatus.PENDING and cr.expires_at <= now:
        _move(
            cr,
            RequestStatus.EXPIRED,
            actor=None,
            reason=f"no quorum before {cr.expires_at.isoformat()}",
        )
        return True
    if cr.status == RequestStatus.APPROVED:
        window = quorum_policy_for(cr.tenant).apply_window
        if cr.approved_at + window <= now:
            _move(
                cr,
                RequestStatus.EXPIRED,
                actor=None,
                reason=f"approved but not applied within {window}",
            )
            return True
    return False


@dataclass
class SweepResult:
    expired: list[int] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    reverted: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def change_requests_sweep(*, now: datetime | None = None) -> SweepResult:
    """Expire what is past its time, retry approved requests, revert due grants.

    Each request in its own transaction, so one failure never holds back the rest: it is
    logged, listed in `failed` and tried again by the next sweep.
    """
    now = now or timezone.now()
    result = SweepResult()

    def expire(pk: int) -> None:
        if _expire_if_due(_lock_request(pk), now):
            result.expired.append(pk)

    def expire_or_apply(pk: int) -> None:
        cr = _lock_request(pk)
        if _expire_if_due(cr, now):
            result.expired.append(pk)
        elif cr.status == RequestStatus.APPROVED:
            _apply(cr, actor=None)
            if cr.status == RequestStatus.APPLIED:
                result.applied.append(pk)

    def revert(pk: int) -> None:
        if grant_revert(_lock_request(pk), now=now):
            result.reverted.append(pk)

    steps = [
        (expire, ChangeRequest.objects.filter(status=RequestStatus.PENDING, expires_at__lte=now)),
        (expire_or_apply, ChangeRequest.objects.filter(status=RequestStatus.APPROVED)),
        (
            revert,
            ChangeRequest.objects.filter(
                status=RequestStatus.APPLIED, revert_at__lte=now, reverted_at__isnull=True
            ),
        ),
    ]
    for step, due in steps:
        for pk in due.values_list("pk", flat=True):
            try:
                with transaction.atomic():
                    step(pk)
            except Exception:
                log.exception("sweep: change request #%s failed; the next sweep retries it", pk)
                result.failed.append(pk)
    return result


def grant_revert(cr: ChangeRequest, *, now: datetime) -> bool:
    """Restore what a time-boxed grant loosened, where the grant's value still stands.

    A setting changed since (a brake, say) is left alone: reverting it could loosen it.
    """
    if cr.reverted_at is not None or cr.revert_at is None or cr.revert_at > now:
        return False
    profile = cr.profile
    profile.refresh_from_db(fields=["current_version"])
    others = _lock_open_requests(profile)
    version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    specs = [c.spec() for c in Capability.objects.filter(key__in=list(cr.changes))]
    current = effective_values(specs, version.values)
    restore = {
        key: cr.previous[key] for key, granted in cr.changes.items() if current.get(key) == granted
    }
    cr.reverted_at = now
    cr.save(update_fields=["reverted_at"])
    if not restore:
        audit_record(
            actor=None,
            action="grant.revert_skipped",
            tenant=cr.tenant.slug,
            target=f"change_request:{cr.pk}",
            data={"reason": "every granted setting has changed since"},
        )
        return True
    new_version = profile_version_create(
        profile=profile,
        changes=restore,
        actor=None,
        reason=f"time box of change request #{cr.pk} ended",
        kind=VersionKind.GRANT_REVERT,
        source=f"change_request:{cr.pk}",
        base_version=version.number,
    )
    audit_record(
        actor=None,
        action="grant.reverted",
        tenant=cr.tenant.slug,
        target=f"change_request:{cr.pk}",
        data={"version": new_version.number, "restored": restore},
    )
    _stale_all(others, profile=profile, actor=None)
    return True


# Emergency brake -------------------------------------------------------------------


@dataclass
class BrakeResult:
    versions: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


@transaction.atomic
def brake_pull(
    *,
    tenant: Tenant,
    actor,
    reason: str,
    keys: list[str] | None = None,
    profiles: list[Profile] | None = None,
) -> BrakeResult:
    """Set chosen adjustable capabilities (all when `keys` is None) to their safest values.

    Applied at once by one person of either party: it only ever tightens.
    """
    tenant_ensure_active(tenant)
    membership = membership_of(user=actor, tenant=tenant)
    if membership is None or membership.role not in BRAKE_ROLES or not actor.is_active:
        raise NotAllowed(f"only admins and reviewers of {tenant.slug} may pull the brake")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("a reason is required to pull the brake")
    targets = _brake_targets(keys)
    chosen = (
        profiles
        if profiles is not None
        else list(Profile.objects.filter(tenant=tenant).order_by("name"))
    )
    result = BrakeResult()
    for profile in chosen:
        if profile.tenant_id != tenant.pk:
            raise ValidationFailed(f"profile '{profile.name}' is not a profile of {tenant.slug}")
    # Every profile is locked before the first audit event takes the chain's lock.
    locked_by_pk = {
        p.pk: p
        for p in Profile.objects.select_for_update()
        .filter(pk__in=[p.pk for p in chosen])
        .order_by("pk")
    }
    for profile in chosen:
        locked = locked_by_pk[profile.pk]
        others = _lock_open_requests(locked)
        version = ProfileVersion.objects.get(profile=locked, number=locked.current_version)
        current = effective_values([spec for spec, _ in targets], version.values)
        changes = {spec.key: safe for spec, safe in targets if current[spec.key] != safe}
        if not changes:
            # Nothing to tighten, but an approval given before the brake must not loosen
            # the profile after it: open requests are voided all the same.
            result.unchanged.append(locked.name)
            for cr in others:
                _move(
                    cr,
                    RequestStatus.STALE,
                    actor=actor,
                    reason=f"an emergency brake was pulled on {locked} before the request "
                    "was applied",
                )
            continue
        new_version = profile_version_create(
            profile=locked,
            changes=changes,
            actor=actor,
            reason=f"emergency brake: {reason.strip()}",
            kind=VersionKind.BRAKE,
            source=f"brake:{membership.party}",
            base_version=version.number,
        )
        result.versions[locked.name] = new_version.number
        _stale_all(others, profile=locked, actor=actor)
    event = audit_record(
        actor=actor,
        action="brake.pulled",
        tenant=tenant.slug,
        target=f"tenant:{tenant.slug}",
        data={
            "party": membership.party,
            "reason": reason.strip(),
            "capabilities": sorted(spec.key for spec, _ in targets) if keys else "all",
            "versions": result.versions,
            "unchanged": result.unchanged,
        },
    )
    notifications.notify_brake_pulled(tenant=tenant, event_id=event.pk)
    return result


def _brake_targets(keys: list[str] | None):
    """(spec, safest value) for each capability the brake sets."""
    if keys is None:
        capabilities = Capability.objects.filter(is_red_line=False)
    else:
        if not isinstance(keys, list) or not keys:
            raise ValidationFailed("name the capabilities to brake, or brake all of them")
        capabilities = Capability.objects.filter(key__in=keys)
        known = {c.key: c for c in capabilities}
        for key in keys:
            if key not in known:
                raise ValidationFailed(f"unknown capability '{key}'")
            if known[key].is_red_line:
                raise RedLineViolation(
                    red_line_message(key) + "; it is already fixed at its safe value"
                )
            if safest_value(known[key].spec()) is None:
                raise ValidationFailed(
                    f"'{key}' is text and has no safer side; a brake cannot set it"
                )
    targets = []
    for capability in capabilities:
        spec = capability.spec()
        safe = safest_value(spec)
        if safe is not None:
            targets.append((spec, safe))
    return targets
