"""What the signed-in person may see and do in a tenant, from their membership."""

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404

from tenants.models import Membership, Role, Tenant
from tenants.permissions import (
    MANAGE_DEPLOYMENTS,
    PROPOSE_CHANGE,
    REVIEW_CHANGE,
    ROLE_PERMISSIONS,
    VIEW_AUDIT,
)
from tenants.selectors import membership_of, tenant_visible_or_404


@dataclass(frozen=True)
class Access:
    """The actions the console offers. An offboarded tenant offers none: its records stay
    readable and nothing in it can change."""

    tenant: Tenant
    membership: Membership

    @property
    def is_offboarded(self) -> bool:
        return self.tenant.offboarded_at is not None

    def _has(self, perm: str) -> bool:
        return perm in ROLE_PERMISSIONS[self.membership.role]

    def _may(self, perm: str) -> bool:
        return not self.is_offboarded and self._has(perm)

    @property
    def can_propose(self) -> bool:
        return self._may(PROPOSE_CHANGE)

    @property
    def can_review(self) -> bool:
        return self._may(REVIEW_CHANGE)

    @property
    def can_brake(self) -> bool:
        return not self.is_offboarded and self.membership.role in (Role.ADMIN, Role.REVIEWER)

    @property
    def can_manage_deployments(self) -> bool:
        return self._may(MANAGE_DEPLOYMENTS)

    @property
    def can_view_audit(self) -> bool:
        return self._has(VIEW_AUDIT)

    def require(self, allowed: bool, refusal: str) -> None:
        """403 for an action not offered, saying why: the tenant left, or the role."""
        if self.is_offboarded:
            raise PermissionDenied(
                f"{self.tenant.slug} was offboarded on {self.tenant.offboarded_at:%Y-%m-%d %H:%M}"
                " UTC; its records are kept read-only and can no longer be changed"
            )
        if not allowed:
            raise PermissionDenied(refusal)


def access_for(request, slug: str) -> Access:
    """The caller's access to a tenant; 404 when they may not see it at all."""
    tenant = tenant_visible_or_404(request.user, slug)
    membership = membership_of(user=request.user, tenant=tenant)
    if membership is None:
        raise Http404("no such tenant")
    return Access(tenant=tenant, membership=membership)
