"""What the signed-in person may see and do in a tenant, from their membership."""

from dataclasses import dataclass

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
    tenant: Tenant
    membership: Membership

    def _has(self, perm: str) -> bool:
        return perm in ROLE_PERMISSIONS[self.membership.role]

    @property
    def can_propose(self) -> bool:
        return self._has(PROPOSE_CHANGE)

    @property
    def can_review(self) -> bool:
        return self._has(REVIEW_CHANGE)

    @property
    def can_brake(self) -> bool:
        return self.membership.role in (Role.ADMIN, Role.REVIEWER)

    @property
    def can_manage_deployments(self) -> bool:
        return self._has(MANAGE_DEPLOYMENTS)

    @property
    def can_view_audit(self) -> bool:
        return self._has(VIEW_AUDIT)


def access_for(request, slug: str) -> Access:
    """The caller's access to a tenant; 404 when they may not see it at all."""
    tenant = tenant_visible_or_404(request.user, slug)
    membership = membership_of(user=request.user, tenant=tenant)
    if membership is None:
        raise Http404("no such tenant")
    return Access(tenant=tenant, membership=membership)
