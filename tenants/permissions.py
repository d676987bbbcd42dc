"""Which object permissions each membership role grants on its tenant."""

from tenants.models import Role

VIEW_TENANT = "view_tenant"
PROPOSE_CHANGE = "propose_change"
REVIEW_CHANGE = "review_change"
MANAGE_DEPLOYMENTS = "manage_deployments"
VIEW_AUDIT = "view_audit"

TENANT_PERMISSIONS = (VIEW_TENANT, PROPOSE_CHANGE, REVIEW_CHANGE, MANAGE_DEPLOYMENTS, VIEW_AUDIT)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset({VIEW_TENANT, PROPOSE_CHANGE, MANAGE_DEPLOYMENTS, VIEW_AUDIT}),
    Role.REVIEWER: frozenset({VIEW_TENANT, PROPOSE_CHANGE, REVIEW_CHANGE}),
    Role.AUDITOR: frozenset({VIEW_TENANT, VIEW_AUDIT}),
    Role.VIEWER: frozenset({VIEW_TENANT}),
}
