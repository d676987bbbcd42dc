"""seed_demo: the demo tenant of both parties, idempotent, passwords shown only in DEBUG."""

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from approvals.demo import DEMO_DEPLOYMENTS, DEMO_USERS
from audit.models import AuditEvent
from tenants.models import Deployment, DeploymentToken, Membership, Tenant
from tenants.permissions import ROLE_PERMISSIONS
from tenants.selectors import deployment_for_token, tenants_visible_to
from toggles.models import Profile, ProfileVersion


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            Tenant,
            get_user_model(),
            Membership,
            Deployment,
            DeploymentToken,
            Profile,
            ProfileVersion,
            AuditEvent,
        )
    }


@pytest.fixture
def seeded_twice(catalog):
    first = seed()
    after_first = counts()
    second = seed()
    return first, after_first, second


def test_seed_demo__run_twice__second_run_creates_nothing(seeded_twice):
    _, after_first, _ = seeded_twice
    assert counts() == after_first
    assert after_first["Tenant"] == 1
    assert after_first["Membership"] == len(DEMO_USERS) == 7
    assert after_first["Deployment"] == len(DEMO_DEPLOYMENTS) == 3
    assert after_first["DeploymentToken"] == 3
    assert after_first["ProfileVersion"] == 1


def test_seed_demo__run_twice__tokens_printed_only_the_first_time(seeded_twice):
    first, _, second = seeded_twice
    token_lines = [line.split() for line in first.splitlines() if " rl_" in line]
    assert sorted(path for path, _ in token_lines) == [
        "demo/analyst-classified",
        "demo/analyst-unclass",
        "demo/cyber-defence",
    ]
    for path, token in token_lines:
        assert str(deployment_for_token(token)) == path
    assert "deployment tokens" in first
    assert "deployment tokens" not in second
    assert " rl_" not in second


def test_seed_demo__run_twice__audit_chain_verifies(seeded_twice):
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue() == f"audit chain verifies: {AuditEvent.objects.count()} events\n"


def test_seed_demo__demo_tenant__both_parties_roles_and_one_canary(seeded_twice):
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.name == "Department of Example"
    memberships = {
        m.user.username: (m.party, m.role) for m in Membership.objects.filter(tenant=tenant)
    }
    assert memberships == {
        "vendor-admin": ("vendor", "admin"),
        "vendor-reviewer-1": ("vendor", "reviewer"),
        "vendor-reviewer-2": ("vendor", "reviewer"),
        "customer-admin": ("customer", "admin"),
        "customer-reviewer-1": ("customer", "reviewer"),
        "customer-reviewer-2": ("customer", "reviewer"),
        "auditor": ("customer", "auditor"),
    }
    for username, (_, role) in memberships.items():
        user = get_user_model().objects.get(username=username)
        assert list(tenants_visible_to(user)) == [tenant]
        assert {p for p in ROLE_PERMISSIONS[role] if user.has_perm(f"tenants.{p}", tenant)} == (
            ROLE_PERMISSIONS[role]
        )
    assert list(
        Deployment.objects.filter(tenant=tenant)
        .order_by("slug")
        .values_list("slug", "environment", "is_canary")
    ) == [
        ("analyst-classified", "classified", False),
        ("analyst-unclass", "unclassified", True),
        ("cyber-defence", "unclassified", False),
    ]


@override_settings(DEBUG=True)
def test_seed_demo__debug_on__prints_the_development_password_which_works(catalog):
    output = seed()
    password = settings.REDLINE_DEMO_PASSWORD
    assert f"password '{password}'" in output
    for username, *_ in DEMO_USERS:
        assert username in output
        assert get_user_model().objects.get(username=username).check_password(password)


@override_settings(DEBUG=False)
def test_seed_demo__debug_off__no_password_printed_and_users_get_random_ones(catalog):
    output = seed()
    password = settings.REDLINE_DEMO_PASSWORD
    assert password not in output
    assert "password '" not in output
    assert "users created with random passwords" in output
    hashes = set()
    for username, *_ in DEMO_USERS:
        user = get_user_model().objects.get(username=username)
        assert not user.check_password(password)
        assert user.has_usable_password()
        hashes.add(user.password)
    assert len(hashes) == len(DEMO_USERS)


@override_settings(DEBUG=True)
def test_seed_demo__existing_user__password_never_reset(catalog, make_user):
    make_user("vendor-admin")
    seed()
    user = get_user_model().objects.get(username="vendor-admin")
    assert not user.check_password(settings.REDLINE_DEMO_PASSWORD)
    assert Membership.objects.get(user=user).role == "admin"
