"""The demo tenant: Department of Example, both parties, three deployments. Idempotent."""

from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.crypto import get_random_string

from tenants.models import Deployment, Environment, Membership, Party, Role, Tenant
from tenants.services import (
    deployment_create,
    deployment_token_issue,
    membership_set,
    tenant_create,
)
from toggles.models import Profile
from toggles.services import profile_create

DEMO_TENANT = "demo"
DEMO_TENANT_NAME = "Department of Example"

DEMO_USERS = [
    ("vendor-admin", "Vera", "Vendor-Admin", Party.VENDOR, Role.ADMIN),
    ("vendor-reviewer-1", "Victor", "Vendor-Reviewer", Party.VENDOR, Role.REVIEWER),
    ("vendor-reviewer-2", "Valerie", "Vendor-Reviewer", Party.VENDOR, Role.REVIEWER),
    ("customer-admin", "Carmen", "Customer-Admin", Party.CUSTOMER, Role.ADMIN),
    ("customer-reviewer-1", "Chris", "Customer-Reviewer", Party.CUSTOMER, Role.REVIEWER),
    ("customer-reviewer-2", "Casey", "Customer-Reviewer", Party.CUSTOMER, Role.REVIEWER),
    ("auditor", "Avery", "Inspector-General", Party.CUSTOMER, Role.AUDITOR),
]

DEMO_DEPLOYMENTS = [
    ("analyst-unclass", "Analyst assistant (unclassified)", Environment.UNCLASSIFIED, True),
    ("analyst-classified", "Analyst assistant (classified)", Environment.CLASSIFIED, False),
    ("cyber-defence", "Cyber-defence copilot", Environment.UNCLASSIFIED, False),
]


@dataclass
class DemoSeed:
    tenant: Tenant
    created_users: list[str] = field(default_factory=list)
    new_tokens: dict[str, str] = field(default_factory=dict)


@transaction.atomic
def demo_seed(*, password: str | None = None) -> DemoSeed:
    """Create what is missing of the demo; never duplicates, never resets a password."""
    tenant = Tenant.objects.filter(slug=DEMO_TENANT).first() or tenant_create(
        slug=DEMO_TENANT, name=DEMO_TENANT_NAME
    )
    seed = DemoSeed(tenant=tenant)
    if tenant.offboarded_at is not None:
        return seed  # kept read-only as it was offboarded; nothing may be added to it
    user_model = get_user_model()
    for username, first, last, party, role in DEMO_USERS:
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model(
                username=username,
                first_name=first,
                last_name=last,
                email=f"{username}@{'vendor' if party == Party.VENDOR else 'customer'}.example",
            )
            user.set_password(password or get_random_string(24))
            user.save()
            seed.created_users.append(username)
        if not Membership.objects.filter(user=user, tenant=tenant).exists():
            membership_set(tenant=tenant, user=user, party=party, role=role)
    if not Profile.objects.filter(tenant=tenant, name="default").exists():
        profile_create(tenant=tenant, name="default")
    for slug, name, environment, canary in DEMO_DEPLOYMENTS:
        deployment = Deployment.objects.filter(tenant=tenant, slug=slug).first()
        if deployment is None:
            deployment = deployment_create(
                tenant=tenant, slug=slug, name=name, environment=environment, is_canary=canary
            )
        if not deployment.tokens.filter(revoked_at__isnull=True).exists():
            _, plain = deployment_token_issue(deployment=deployment)
            seed.new_tokens[f"{tenant.slug}/{slug}"] = plain
    return seed


def demo_password() -> str | None:
    """The shared development password; none outside DEBUG (each user then gets a random one)."""
    return settings.REDLINE_DEMO_PASSWORD if settings.DEBUG else None
