"""Orderly offboarding of a tenant that leaves, and the bundle its auditors take away.

tenant_offboard, in one transaction: revoke every deployment token, withdraw every pending
change request with the reason, make approved ones stale, write a final version of every
profile with each adjustable capability at its safest value (a brake-kind version, so it
rolls out like any other), settle time-boxed grants, and mark the tenant offboarded. Its
records stay; tenants.services.tenant_ensure_active refuses every later change.

tenant_bundle_write writes the export bundle (format and offline checks: audit.export)
from one consistent snapshot of the database.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from django.db import connection, transaction
from django.utils import timezone

from approvals.errors import NotAllowed
from approvals.models import ChangeRequest, QuorumPolicy, RequestStatus
from approvals.services import _brake_targets, _move
from approvals.transitions import OPEN_STATUSES
from audit import export
from audit.chain import GENESIS_HASH
from audit.selectors import EventFilter, audit_events, chain_blocks, chain_head, event_json_blocks
from audit.services import audit_record
from config.errors import ValidationFailed
from tenants.models import DeploymentToken, Party, Role, Tenant
from tenants.selectors import membership_of
from tenants.services import TenantOffboarded, deployment_token_revoke
from toggles.documents import catalog_current, document_load
from toggles.effective import effective_values
from toggles.models import Profile, ProfileVersion, VersionKind
from toggles.services import profile_version_create
from toggles.signing import jwks, keyring

OFFBOARDING_SOURCE = "offboarding"


@dataclass
class Offboarding:
    tenant: Tenant
    offboarded_at: datetime
    revoked_tokens: list[int] = field(default_factory=list)
    withdrawn: list[int] = field(default_factory=list)
    made_stale: list[int] = field(default_factory=list)
    grants_settled: list[int] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


def offboard_allowed(*, user, tenant: Tenant) -> bool:
    """Only an active vendor admin of the tenant offboards it (from the console)."""
    membership = membership_of(user=user, tenant=tenant)
    return (
        membership is not None
        and user.is_active
        and membership.party == Party.VENDOR
        and membership.role == Role.ADMIN
    )


@transaction.atomic
def tenant_offboard(*, tenant: Tenant, actor, reason: str) -> Offboarding:
    """Offboard a tenant. `actor` is a vendor admin, or a label such as "command:…" for an
    operator at the shell. Every row is locked before the first audit event is written."""
    if not isinstance(actor, str) and not offboard_allowed(user=actor, tenant=tenant):
        raise NotAllowed(f"only vendor admins of {tenant.slug} may offboard it")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("a reason is required to offboard a tenant")
    reason = reason.strip()
    locked = Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)
    if locked.offboarded_at is not None:
        raise TenantOffboarded(
            f"{locked.slug} was already offboarded on {locked.offboarded_at:%Y-%m-%d %H:%M} UTC"
        )
    profiles = list(Profile.objects.select_for_update().filter(tenant=locked).order_by("pk"))
    list(QuorumPolicy.objects.select_for_update().filter(tenant=locked))
    requests = list(
        ChangeRequest.objects.select_for_update(of=("self",))
        .filter(tenant=locked, status__in=OPEN_STATUSES)
        .select_related("tenant", "profile")
        .order_by("pk")
    )
    grants = list(
        ChangeRequest.objects.select_for_update(of=("self",))
        .filter(tenant=locked, revert_at__isnull=False, reverted_at__isnull=True)
        .exclude(status__in=OPEN_STATUSES)
        .select_related("tenant")
        .order_by("pk")
    )
    tokens = list(
        DeploymentToken.objects.select_for_update(of=("self",))
        .filter(deployment__tenant=locked, revoked_at__isnull=True)
        .order_by("pk")
    )
    result = Offboarding(tenant=locked, offboarded_at=timezone.now())
    closing = f"the tenant is being offboarded: {reason}"
    for cr in requests:
        if cr.status == RequestStatus.PENDING:
            _move(cr, RequestStatus.WITHDRAWN, actor=actor, reason=closing)
            result.withdrawn.append(cr.pk)
    targets = _brake_targets(None)
    for profile in profiles:
        version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
        current = effective_values([spec for spec, _ in targets], version.values)
        changes = {spec.key: safe for spec, safe in targets if current[spec.key] != safe}
        if not changes:
            result.unchanged.append(profile.name)
            continue
        final = profile_version_create(
            profile=profile,
            changes=changes,
            actor=actor,
            reason=f"offboarding: every adjustable setting at its safest value ({reason})",
            kind=VersionKind.BRAKE,
            source=OFFBOARDING_SOURCE,
            base_version=version.number,
        )
        result.versions[profile.name] = final.number
    for cr in requests:
        if cr.status == RequestStatus.APPROVED:
            _move(cr, RequestStatus.STALE, actor=actor, reason=closing)
            result.made_stale.append(cr.pk)
    for cr in grants:
        cr.reverted_at = result.offboarded_at
        cr.save(update_fields=["reverted_at"])
        audit_record(
            actor=actor,
            action="grant.revert_skipped",
            tenant=locked.slug,
            target=f"change_request:{cr.pk}",
            data={"reason": "the tenant was offboarded; its final version is at the safest values"},
        )
        result.grants_settled.append(cr.pk)
    for token in tokens:
        deployment_token_revoke(token=token, actor=actor)
        result.revoked_tokens.append(token.pk)
    locked.offboarded_at = result.offboarded_at
    locked.save(update_fields=["offboarded_at"])
    audit_record(
        actor=actor,
        action="tenant.offboarded",
        tenant=locked.slug,
        target=f"tenant:{locked.slug}",
        data={
            "reason": reason,
            "tokens_revoked": len(result.revoked_tokens),
            "withdrawn": result.withdrawn,
            "made_stale": result.made_stale,
            "grants_settled": result.grants_settled,
            "versions": result.versions,
            "unchanged": result.unchanged,
        },
    )
    return result


@dataclass
class OffboardingPreview:
    active_tokens: int
    pending: list[ChangeRequest]
    approved: list[ChangeRequest]
    changes: dict[str, list[tuple[str, object, object]]]


def offboarding_preview(tenant: Tenant) -> OffboardingPreview:
    """What tenant_offboard would do now: tokens, requests, and per profile each setting
    that would move to its safest value (key, now, then)."""
    open_requests = list(
        ChangeRequest.objects.filter(tenant=tenant, status__in=OPEN_STATUSES).order_by("pk")
    )
    targets = _brake_targets(None)
    changes = {}
    for profile in Profile.objects.filter(tenant=tenant).order_by("name"):
        version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
        current = effective_values([spec for spec, _ in targets], version.values)
        changes[profile.name] = [
            (spec.key, current[spec.key], safe)
            for spec, safe in targets
            if current[spec.key] != safe
        ]
    return OffboardingPreview(
        active_tokens=DeploymentToken.objects.filter(
            deployment__tenant=tenant, revoked_at__isnull=True
        ).count(),
        pending=[cr for cr in open_requests if cr.status == RequestStatus.PENDING],
        approved=[cr for cr in open_requests if cr.status == RequestStatus.APPROVED],
        changes=changes,
    )


# The bundle ------------------------------------------------------------------------------------


@dataclass
class BundleSummary:
    directory: Path
    versions: int
    change_requests: int
    events: int
    chain_head: int


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _request_record(cr: ChangeRequest) -> dict:
    return {
        "id": cr.pk,
        "tenant": cr.tenant.slug,
        "kind": cr.kind,
        "profile": cr.profile.name if cr.profile_id else None,
        "base_version": cr.base_version,
        "changes": cr.changes,
        "previous": cr.previous,
        "directions": cr.directions,
        "risk_tier": cr.risk_tier,
        "is_loosening": cr.is_loosening,
        "required": {
            "vendor": cr.required_vendor,
            "customer": cr.required_customer,
            "any": cr.required_any,
        },
        "vetoes_required": cr.vetoes_required,
        "justification": cr.justification,
        "requester": cr.requester.get_username(),
        "time_box_seconds": int(cr.time_box.total_seconds()) if cr.time_box else None,
        "digest": cr.digest,
        "created_at": _iso(cr.created_at),
        "expires_at": _iso(cr.expires_at),
        "status": cr.status,
        "status_reason": cr.status_reason,
        "status_changed_at": _iso(cr.status_changed_at),
        "approved_at": _iso(cr.approved_at),
        "applied_at": _iso(cr.applied_at),
        "applied_version": cr.applied_version,
        "revert_at": _iso(cr.revert_at),
        "reverted_at": _iso(cr.reverted_at),
        "decisions": [
            {
                "reviewer": decision.reviewer.get_username(),
                "party": decision.party,
                "verdict": decision.verdict,
                "comment": decision.comment,
                "channel": decision.channel,
                "request_digest": decision.request_digest,
                "created_at": _iso(decision.created_at),
            }
            for decision in cr.decisions.all()
        ],
    }


def _version_records(writer: export.BundleWriter, tenant: Tenant):
    catalog = catalog_current()
    versions = (
        ProfileVersion.objects.filter(profile__tenant=tenant)
        .select_related("profile", "parent", "created_by")
        .order_by("profile__name", "number")
    )
    for version in versions.iterator(chunk_size=200):
        base = f"{export.VERSION_DIR}/{version.profile.name}/{version.number}"
        document = document_load(
            catalog=catalog, profile_id=version.profile_id, version=version.number
        )
        writer.write_bytes(f"{base}.json", document.body)
        writer.write_bytes(f"{base}.sig", document.signature.encode() + b"\n")
        yield export.json_line(
            {
                "profile": version.profile.name,
                "number": version.number,
                "parent": version.parent.number if version.parent_id else None,
                "kind": version.kind,
                "source": version.source,
                "reason": version.reason,
                "created_by": version.created_by.get_username() if version.created_by else None,
                "created_at": _iso(version.created_at),
                "values": version.values,
                "digest": version.digest,
                "document": f"{base}.json",
                "signature": f"{base}.sig",
            }
        )


def tenant_bundle_write(*, tenant: Tenant, directory: Path) -> BundleSummary:
    """Write the tenant's export bundle into an empty (or new) directory.

    Reads one snapshot (REPEATABLE READ), so versions, requests, events and the chain head
    agree while other tenants go on writing.
    """
    writer = export.BundleWriter(Path(directory))
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        tenant = Tenant.objects.get(pk=tenant.pk)
        head_sequence, head_hash = chain_head() or (0, GENESIS_HASH)
        versions = writer.write_text(export.VERSIONS, _version_records(writer, tenant))
        requests = (
            ChangeRequest.objects.filter(tenant=tenant)
            .select_related("tenant", "profile", "requester")
            .prefetch_related("decisions__reviewer")
            .order_by("pk")
        )
        request_count = writer.write_text(
            export.CHANGE_REQUESTS,
            (export.json_line(_request_record(cr)) for cr in requests.iterator(chunk_size=500)),
        )
        events = audit_events(EventFilter(tenants=(tenant.slug,)))
        event_count = writer.write_text(export.EVENTS, event_json_blocks(events))
        writer.write_text(export.CHAIN, chain_blocks(up_to=head_sequence))
    keys = jwks()
    writer.write_bytes(export.KEYS, json.dumps(keys, indent=2, sort_keys=True).encode() + b"\n")
    readme = export.README_TEXT.format(tenant=tenant.slug, head=f"#{head_sequence} {head_hash}")
    writer.write_bytes(export.README, readme.encode())
    writer.finish(
        manifest={
            "tenant": tenant.slug,
            "name": tenant.name,
            "exported_at": timezone.now().isoformat(),
            "offboarded_at": _iso(tenant.offboarded_at),
            "chain": {
                "head_sequence": head_sequence,
                "head_hash": head_hash,
                "tenant_events": event_count,
            },
            "counts": {"versions": versions, "change_requests": request_count},
            "signing_keys": [key["kid"] for key in keys["keys"]],
        },
        sign=keyring().sign,
    )
    return BundleSummary(
        directory=writer.directory,
        versions=versions,
        change_requests=request_count,
        events=event_count,
        chain_head=head_sequence,
    )
