"""Reads of change requests, their progress, and version history."""

from django.db.models import QuerySet

from approvals.models import ChangeRequest, RequestStatus
from approvals.policy import highest_tier, requirement_for
from approvals.services import change_request_tally, quorum_policy_for
from tenants.models import Tenant
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion
from toggles.services import validate_changes
from toggles.values import Direction, change_direction


def change_requests_for(*, tenant: Tenant, filters: dict | None = None) -> QuerySet[ChangeRequest]:
    """The tenant's requests, newest first; filters: status, kind, profile, requester."""
    filters = filters or {}
    requests = ChangeRequest.objects.filter(tenant=tenant).select_related(
        "tenant", "profile", "requester"
    )
    if status := filters.get("status"):
        requests = requests.filter(status=status)
    if kind := filters.get("kind"):
        requests = requests.filter(kind=kind)
    if profile := filters.get("profile"):
        requests = requests.filter(profile__name=profile)
    if requester := filters.get("requester"):
        requests = requests.filter(requester__username=requester)
    return requests.order_by("-created_at", "-pk")


def change_request_progress(cr: ChangeRequest) -> dict:
    """Quorum progress per party, as a reviewer reads it ("vendor 1 of 2")."""
    result = change_request_tally(cr)
    return {
        "vendor": {"approvals": result.vendor_approvals, "required": cr.required_vendor},
        "customer": {"approvals": result.customer_approvals, "required": cr.required_customer},
        "either_party": {"approvals": result.approvals, "required": cr.required_any},
        "rejections": {"count": result.rejections, "vetoes_required": cr.vetoes_required},
        "met": result.met,
        "summary": progress_summary(cr, result),
    }


def progress_summary(cr: ChangeRequest, result) -> str:
    if cr.required_any:
        return f"either party {result.approvals} of {cr.required_any}"
    return (
        f"vendor {result.vendor_approvals} of {cr.required_vendor}, "
        f"customer {result.customer_approvals} of {cr.required_customer}"
    )


def pending_count(tenant: Tenant) -> int:
    return ChangeRequest.objects.filter(tenant=tenant, status=RequestStatus.PENDING).count()


def versions_of(profile: Profile) -> QuerySet[ProfileVersion]:
    return (
        ProfileVersion.objects.filter(profile=profile)
        .select_related("created_by")
        .order_by("-number")
    )


def version_diff(*, profile: Profile, from_number: int, to_number: int) -> list[dict]:
    """Every capability whose effective value differs between two versions."""
    versions = {
        v.number: v
        for v in ProfileVersion.objects.filter(profile=profile, number__in=[from_number, to_number])
    }
    specs = [c.spec() for c in Capability.objects.all()]
    before = effective_values(specs, versions[from_number].values)
    after = effective_values(specs, versions[to_number].values)
    return [
        {"key": key, "from": before[key], "to": after[key]}
        for key in sorted(after)
        if before[key] != after[key] or type(before[key]) is not type(after[key])
    ]


def config_by_category(profile: Profile) -> list[dict]:
    """The profile's effective config grouped by category, red lines first."""
    version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    capabilities = list(Capability.objects.all())
    values = effective_values([c.spec() for c in capabilities], version.values)
    groups: dict[str, list[dict]] = {}
    for capability in sorted(capabilities, key=lambda c: (not c.is_red_line, c.category, c.key)):
        value = values[capability.key]
        groups.setdefault(capability.category, []).append(
            {
                "capability": capability,
                "value": value,
                "is_default": not capability.is_red_line and value == capability.default,
            }
        )
    return [{"category": name, "rows": rows} for name, rows in groups.items()]


def version_provenance(version: ProfileVersion) -> dict:
    """Who asked for a version and who approved it."""
    request = None
    if version.source.startswith("change_request:"):
        request = (
            ChangeRequest.objects.filter(pk=int(version.source.split(":", 1)[1]))
            .select_related("requester")
            .first()
        )
    approvers = []
    if request is not None:
        approvers = [
            {"username": d.reviewer.get_username(), "party": d.party, "channel": d.channel}
            for d in request.decisions.filter(verdict="approve").select_related("reviewer")
        ]
    return {"request": request, "approvers": approvers}


def change_preview(*, tenant: Tenant, profile: Profile, changes: dict) -> dict:
    """What a proposed change would be: each change classed, and the quorum it would need.

    Raises the same domain errors as submitting would.
    """
    clean = validate_changes(changes)
    capabilities = {c.key: c for c in Capability.objects.filter(key__in=list(clean))}
    version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    current = effective_values([c.spec() for c in capabilities.values()], version.values)
    rows = []
    for key, value in clean.items():
        spec = capabilities[key].spec()
        rows.append(
            {
                "capability": capabilities[key],
                "old": current[key],
                "new": value,
                "direction": change_direction(spec, current[key], value).value,
            }
        )
    moving = [row for row in rows if row["direction"] != Direction.UNCHANGED]
    if not moving:
        return {"rows": rows, "requirement": None, "tier": None, "loosening": False}
    tier = highest_tier(row["capability"].risk_tier for row in moving)
    loosening = any(row["direction"] == Direction.LOOSENING for row in moving)
    requirement = requirement_for(quorum_policy_for(tenant), tier=tier, loosening=loosening)
    return {"rows": rows, "requirement": requirement, "tier": tier, "loosening": loosening}
