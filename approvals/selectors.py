"""Reads of change requests, their progress, and version history."""

from django.db.models import QuerySet

from approvals.models import ChangeRequest, RequestStatus
from approvals.services import change_request_tally
from tenants.models import Tenant
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion


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
