"""Every write to tenants, memberships, deployments and their tokens."""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, get_user_perms, remove_perm

from audit.services import audit_record
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.models import Deployment, DeploymentToken, Environment, Membership, Party, Role, Tenant
from tenants.permissions import ROLE_PERMISSIONS, TENANT_PERMISSIONS
from tenants.tokens import token_digest, token_generate


class TenantOffboarded(Conflict):
    code = "tenant_offboarded"


def tenant_ensure_active(tenant: Tenant) -> None:
    """Refuse any change to a tenant that has been offboarded.

    Takes a share lock on the tenant row for the rest of the transaction: offboarding locks
    it for update, so it waits for changes in flight, and a change that comes after it
    sees the mark.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("tenant_ensure_active must run inside the change's transaction")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT offboarded_at FROM tenants_tenant WHERE id = %s FOR SHARE", [tenant.pk]
        )
        row = cursor.fetchone()
    if row is not None and row[0] is not None:
        raise TenantOffboarded(
            f"{tenant.slug} was offboarded on {row[0]:%Y-%m-%d %H:%M} UTC; "
            "its records are kept read-only and can no longer be changed"
        )


def membership_sync_permissions(*, user: AbstractBaseUser, tenant: Tenant) -> None:
    """Make the user's object permissions on the tenant exactly those of their role."""
    membership = Membership.objects.filter(user=user, tenant=tenant).first()
    wanted = ROLE_PERMISSIONS[membership.role] if membership else frozenset()
    # The rows actually stored: get_perms would claim every permission for a superuser.
    held = {perm for perm in get_user_perms(user, tenant) if perm in TENANT_PERMISSIONS}
    for perm in wanted - held:
        assign_perm(perm, user, tenant)
    for perm in held - wanted:
        remove_perm(perm, user, tenant)


@transaction.atomic
def tenant_create(*, slug: str, name: str, actor=None) -> Tenant:
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"a tenant with slug '{slug}' already exists; choose another slug")
    tenant = Tenant(slug=slug, name=name)
    tenant.full_clean()
    tenant.save()
    audit_record(
        actor=actor,
        action="tenant.created",
        tenant=slug,
        target=f"tenant:{slug}",
        data={"name": name},
    )
    return tenant


@transaction.atomic
def membership_set(*, tenant: Tenant, user, party: str, role: str, actor=None) -> Membership:
    """Add a member or change their role. A member's party never changes: remove and re-add."""
    tenant_ensure_active(tenant)
    if party not in Party.values:
        raise ValidationFailed(f"party must be one of {', '.join(Party.values)}")
    if role not in Role.values:
        raise ValidationFailed(f"role must be one of {', '.join(Role.values)}")
    membership = Membership.objects.select_for_update().filter(user=user, tenant=tenant).first()
    if membership is None:
        membership = Membership.objects.create(user=user, tenant=tenant, party=party, role=role)
        action, data = "membership.added", {"party": party, "role": role}
    elif membership.party != party:
        raise Conflict(
            f"{user.get_username()} belongs to the {membership.party} party of {tenant.slug}; "
            "a member's party cannot change: remove the membership and add it again"
        )
    elif membership.role != role:
        data = {"party": party, "role": role, "previous_role": membership.role}
        membership.role = role
        membership.save(update_fields=["role"])
        action = "membership.role_changed"
    else:
        return membership
    audit_record(
        actor=actor,
        action=action,
        tenant=tenant.slug,
        target=f"user:{user.get_username()}",
        data=data,
    )
    return membership


@transaction.atomic
def membership_remove(*, tenant: Tenant, user, actor=None) -> None:
    tenant_ensure_active(tenant)
    membership = Membership.objects.select_for_update().filter(user=user, tenant=tenant).first()
    if membership is None:
        raise NotFound(f"{user.get_username()} is not a member of {tenant.slug}")
    data = {"party": membership.party, "role": membership.role}
    membership.delete()
    audit_record(
        actor=actor,
        action="membership.removed",
        tenant=tenant.slug,
        target=f"user:{user.get_username()}",
        data=data,
    )


@transaction.atomic
def deployment_create(
    *,
    tenant: Tenant,
    slug: str,
    name: str = "",
    environment: str = Environment.UNCLASSIFIED,
    profile_name: str = "default",
    webhook_url: str = "",
    is_canary: bool = False,
    actor=None,
) -> Deployment:
    tenant_ensure_active(tenant)
    if Deployment.objects.filter(tenant=tenant, slug=slug).exists():
        raise Conflict(f"deployment '{slug}' already exists in {tenant.slug}")
    deployment = Deployment(
        tenant=tenant,
        slug=slug,
        name=name,
        environment=environment,
        profile_name=profile_name,
        webhook_url=webhook_url,
        is_canary=is_canary,
    )
    deployment.full_clean()
    deployment.save()
    audit_record(
        actor=actor,
        action="deployment.created",
        tenant=tenant.slug,
        target=f"deployment:{tenant.slug}/{slug}",
        data={
            "environment": environment,
            "profile": profile_name,
            "webhook": bool(webhook_url),
            "canary": is_canary,
        },
    )
    return deployment


@transaction.atomic
def deployment_token_issue(*, deployment: Deployment, actor=None) -> tuple[DeploymentToken, str]:
    """Create a token; the plain value is returned once and never stored."""
    tenant_ensure_active(deployment.tenant)
    plain = token_generate()
    token = DeploymentToken.objects.create(
        deployment=deployment,
        token_hash=token_digest(plain),
        prefix=plain[:10],
        created_by=str(actor.get_username()) if actor else "system",
    )
    audit_record(
        actor=actor,
        action="deployment_token.issued",
        tenant=deployment.tenant.slug,
        target=f"deployment:{deployment}",
        data={"token_id": token.pk, "prefix": token.prefix},
    )
    return token, plain


@transaction.atomic
def deployment_token_revoke(*, token: DeploymentToken, actor=None) -> DeploymentToken:
    token = DeploymentToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at"])
    audit_record(
        actor=actor,
        action="deployment_token.revoked",
        tenant=token.deployment.tenant.slug,
        target=f"deployment:{token.deployment}",
        data={"token_id": token.pk, "prefix": token.prefix},
    )
    return token


@transaction.atomic
def deployment_webhook_set(*, deployment: Deployment, webhook_url: str, actor=None) -> Deployment:
    """Point a deployment at a webhook (push), or clear it (the deployment pulls)."""
    tenant_ensure_active(deployment.tenant)
    locked = Deployment.objects.select_for_update().select_related("tenant").get(pk=deployment.pk)
    webhook_url = webhook_url.strip()
    if webhook_url == locked.webhook_url:
        return locked
    previous = locked.webhook_url
    locked.webhook_url = webhook_url
    try:
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise ValidationError("not http(s)")
        locked.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError:
        raise ValidationFailed(
            f"'{webhook_url}' is not a valid http(s) URL, e.g. https://deployment.example/redline"
        ) from None
    locked.save(update_fields=["webhook_url"])
    audit_record(
        actor=actor,
        action="deployment.webhook_changed",
        tenant=locked.tenant.slug,
        target=f"deployment:{locked}",
        data={"from": previous, "to": webhook_url},
    )
    return locked
