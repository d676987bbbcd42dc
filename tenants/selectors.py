"""Reads about tenants, parties and deployments."""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from guardian.shortcuts import get_objects_for_user

from tenants.models import Deployment, DeploymentToken, Membership, Tenant
from tenants.permissions import REVIEW_CHANGE, ROLE_PERMISSIONS, VIEW_TENANT
from tenants.tokens import token_digest, token_looks_valid


def tenants_visible_to(user, perm: str = VIEW_TENANT) -> QuerySet[Tenant]:
    """Tenants on which the user holds the object permission; superusers get no free pass."""
    if not user.is_authenticated:
        return Tenant.objects.none()
    return get_objects_for_user(
        user, f"tenants.{perm}", klass=Tenant, with_superuser=False, accept_global_perms=False
    )


def tenant_visible_or_404(user, slug: str) -> Tenant:
    """The tenant, if the user may see it; a 404 otherwise, whether or not it exists."""
    return get_object_or_404(tenants_visible_to(user), slug=slug)


def membership_of(*, user, tenant: Tenant) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(user=user, tenant=tenant).first()


def party_of(*, user, tenant: Tenant) -> str | None:
    membership = membership_of(user=user, tenant=tenant)
    return membership.party if membership else None


def reviewers_for(*, tenant: Tenant, party: str | None = None) -> QuerySet[Membership]:
    """Memberships whose role may review changes, taken from roles, never from has_perm."""
    roles = [role for role, perms in ROLE_PERMISSIONS.items() if REVIEW_CHANGE in perms]
    memberships = Membership.objects.filter(tenant=tenant, role__in=roles).select_related("user")
    if party:
        memberships = memberships.filter(party=party)
    return memberships.filter(user__is_active=True)


def deployment_for_token(token: str) -> Deployment | None:
    """The deployment an active bearer token belongs to, or None."""
    if not token_looks_valid(token):
        return None
    row = (
        DeploymentToken.objects.select_related("deployment__tenant")
        .filter(token_hash=token_digest(token), revoked_at__isnull=True)
        .first()
    )
    return row.deployment if row else None


def deployment_by_path(path: str) -> Deployment | None:
    """Find '<tenant>/<deployment>'."""
    tenant_slug, _, deployment_slug = path.partition("/")
    if not tenant_slug or not deployment_slug:
        return None
    return (
        Deployment.objects.select_related("tenant")
        .filter(tenant__slug=tenant_slug, slug=deployment_slug)
        .first()
    )


def membership_allowing(*, user, tenant: Tenant, perm: str) -> Membership | None:
    """The user's membership if its role grants `perm` on the tenant.

    Decided from the membership's role, never from has_perm: Django and guardian say
    yes to a superuser for everything.
    """
    membership = membership_of(user=user, tenant=tenant)
    if membership is None or not user.is_active:
        return None
    return membership if perm in ROLE_PERMISSIONS[membership.role] else None
