"""Tenants, memberships and their object permissions, deployments and their tokens."""

import hashlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction
from guardian.shortcuts import get_user_perms

from audit.models import AuditEvent
from config.errors import Conflict, NotFound, ValidationFailed
from tenants.models import (
    Deployment,
    DeploymentToken,
    Membership,
    Party,
    Role,
    Tenant,
    TenantUserObjectPermission,
)
from tenants.permissions import ROLE_PERMISSIONS, TENANT_PERMISSIONS
from tenants.selectors import (
    deployment_by_path,
    deployment_for_token,
    party_of,
    reviewers_for,
    tenants_visible_to,
)
from tenants.services import (
    deployment_create,
    deployment_token_issue,
    deployment_token_revoke,
    membership_remove,
    membership_set,
    tenant_create,
)


def perms_of(user, tenant) -> set[str]:
    """The object permissions stored for the user on the tenant (no superuser shortcut)."""
    return set(get_user_perms(user, tenant)) & set(TENANT_PERMISSIONS)


@pytest.fixture
def tenant(db):
    return tenant_create(slug="acme", name="Acme Ministry")


@pytest.fixture
def other_tenant(db):
    return tenant_create(slug="other", name="Other Ministry")


# Memberships and permissions ---------------------------------------------------------------


@pytest.mark.parametrize("role", Role.values)
def test_membership_set__role__grants_exactly_that_roles_permissions(tenant, make_user, role):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.CUSTOMER, role=role)
    assert perms_of(user, tenant) == ROLE_PERMISSIONS[role]
    for perm in TENANT_PERMISSIONS:
        assert user.has_perm(f"tenants.{perm}", tenant) is (perm in ROLE_PERMISSIONS[role])


def test_membership_set__role_changes__permissions_follow_and_change_audited(tenant, make_user):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.REVIEWER)
    for role in (Role.ADMIN, Role.VIEWER, Role.AUDITOR, Role.REVIEWER):
        membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=role)
        assert perms_of(user, tenant) == ROLE_PERMISSIONS[role]
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.target, event.data) == (
        "membership.role_changed",
        "user:member",
        {"party": "vendor", "role": "reviewer", "previous_role": "auditor"},
    )


def test_membership_set__same_role_again__no_change_and_no_event(tenant, make_user):
    user = make_user("member")
    first = membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.ADMIN)
    events = AuditEvent.objects.count()
    again = membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.ADMIN)
    assert again.pk == first.pk
    assert AuditEvent.objects.count() == events


def test_membership_set__party_change__refused_and_membership_kept(tenant, make_user):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.REVIEWER)
    events = AuditEvent.objects.count()
    with pytest.raises(Conflict) as error:
        membership_set(tenant=tenant, user=user, party=Party.CUSTOMER, role=Role.REVIEWER)
    assert str(error.value) == (
        "member belongs to the vendor party of acme; a member's party cannot change: "
        "remove the membership and add it again"
    )
    assert list(Membership.objects.values_list("party", "role")) == [("vendor", "reviewer")]
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    ("party", "role", "message"),
    [
        ("government", Role.ADMIN, "party must be one of vendor, customer"),
        (Party.VENDOR, "owner", "role must be one of admin, reviewer, viewer, auditor"),
    ],
)
def test_membership_set__unknown_party_or_role__refused(tenant, make_user, party, role, message):
    with pytest.raises(ValidationFailed) as error:
        membership_set(tenant=tenant, user=make_user("member"), party=party, role=role)
    assert str(error.value) == message
    assert Membership.objects.count() == 0


def test_membership__second_row_for_the_same_user_and_tenant__refused_by_database(
    tenant, make_user
):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.REVIEWER)
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        Membership.objects.bulk_create(
            [Membership(user=user, tenant=tenant, party=Party.CUSTOMER, role=Role.REVIEWER)]
        )
    assert error.value.__cause__.diag.constraint_name == "one_membership_per_tenant"
    assert list(Membership.objects.values_list("party", flat=True)) == ["vendor"]


def test_membership__invalid_party_written_directly__refused_by_database(tenant, make_user):
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        Membership.objects.bulk_create(
            [Membership(user=make_user("m"), tenant=tenant, party="both", role=Role.ADMIN)]
        )
    assert error.value.__cause__.diag.constraint_name == "membership_party_valid"


def test_membership__same_user_in_two_tenants__may_be_of_different_parties(
    tenant, other_tenant, make_user
):
    user = make_user("consultant")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.REVIEWER)
    membership_set(tenant=other_tenant, user=user, party=Party.CUSTOMER, role=Role.VIEWER)
    assert party_of(user=user, tenant=tenant) == "vendor"
    assert party_of(user=user, tenant=other_tenant) == "customer"
    assert perms_of(user, tenant) == ROLE_PERMISSIONS[Role.REVIEWER]
    assert perms_of(user, other_tenant) == ROLE_PERMISSIONS[Role.VIEWER]


def test_membership_remove__member__permissions_revoked_and_audited(
    tenant, other_tenant, make_user
):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.ADMIN)
    membership_set(tenant=other_tenant, user=user, party=Party.VENDOR, role=Role.ADMIN)
    membership_remove(tenant=tenant, user=user)
    assert perms_of(user, tenant) == set()
    assert perms_of(user, other_tenant) == ROLE_PERMISSIONS[Role.ADMIN]
    assert list(tenants_visible_to(get_user_model().objects.get(pk=user.pk))) == [other_tenant]
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.tenant, event.data) == (
        "membership.removed",
        "acme",
        {"party": "vendor", "role": "admin"},
    )


def test_membership_remove__not_a_member__not_found(tenant, make_user):
    with pytest.raises(NotFound) as error:
        membership_remove(tenant=tenant, user=make_user("stranger"))
    assert str(error.value) == "stranger is not a member of acme"


def test_user_delete__member__memberships_and_permission_rows_cascade(tenant, make_user):
    user = make_user("leaver")
    stays = make_user("stays")
    membership_set(tenant=tenant, user=user, party=Party.CUSTOMER, role=Role.ADMIN)
    membership_set(tenant=tenant, user=stays, party=Party.CUSTOMER, role=Role.VIEWER)
    user_id = user.pk
    user.delete()
    assert not Membership.objects.filter(user_id=user_id).exists()
    assert not TenantUserObjectPermission.objects.filter(user_id=user_id).exists()
    assert perms_of(stays, tenant) == ROLE_PERMISSIONS[Role.VIEWER]


def test_membership_delete__directly__permissions_still_revoked(tenant, make_user):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.VENDOR, role=Role.REVIEWER)
    Membership.objects.get(user=user).delete()
    assert perms_of(user, tenant) == set()


# Visibility --------------------------------------------------------------------------------


def test_tenants_visible_to__superuser_without_membership__sees_nothing(tenant, make_user):
    root = make_user("root", is_superuser=True, is_staff=True)
    assert root.has_perm("tenants.view_tenant", tenant)
    assert list(tenants_visible_to(root)) == []


def test_tenants_visible_to__superuser_member__sees_only_their_tenants(
    tenant, other_tenant, make_user
):
    root = make_user("root", is_superuser=True, is_staff=True)
    membership_set(tenant=tenant, user=root, party=Party.VENDOR, role=Role.REVIEWER)
    assert perms_of(root, tenant) == ROLE_PERMISSIONS[Role.REVIEWER]
    assert list(tenants_visible_to(root)) == [tenant]
    assert list(tenants_visible_to(root, "view_audit")) == []
    membership_set(tenant=tenant, user=root, party=Party.VENDOR, role=Role.VIEWER)
    assert perms_of(root, tenant) == ROLE_PERMISSIONS[Role.VIEWER]
    assert list(tenants_visible_to(root, "review_change")) == []


def test_tenants_visible_to__member__own_tenants_per_permission(tenant, other_tenant, make_user):
    user = make_user("member")
    membership_set(tenant=tenant, user=user, party=Party.CUSTOMER, role=Role.AUDITOR)
    assert list(tenants_visible_to(user)) == [tenant]
    assert list(tenants_visible_to(user, "view_audit")) == [tenant]
    assert list(tenants_visible_to(user, "propose_change")) == []


def test_tenants_visible_to__anonymous__nothing(tenant):
    from django.contrib.auth.models import AnonymousUser

    assert list(tenants_visible_to(AnonymousUser())) == []


def test_reviewers_for__tenant__reviewer_memberships_of_active_users_per_party(tenant, make_user):
    for name, party, role in [
        ("v-rev", Party.VENDOR, Role.REVIEWER),
        ("v-admin", Party.VENDOR, Role.ADMIN),
        ("c-rev", Party.CUSTOMER, Role.REVIEWER),
        ("c-gone", Party.CUSTOMER, Role.REVIEWER),
    ]:
        membership_set(tenant=tenant, user=make_user(name), party=party, role=role)
    get_user_model().objects.filter(username="c-gone").update(is_active=False)
    names = lambda memberships: sorted(m.user.username for m in memberships)  # noqa: E731
    assert names(reviewers_for(tenant=tenant)) == ["c-rev", "v-rev"]
    assert names(reviewers_for(tenant=tenant, party=Party.VENDOR)) == ["v-rev"]


# Tenants and deployments -------------------------------------------------------------------


def test_tenant_create__duplicate_slug__conflict(tenant):
    with pytest.raises(Conflict) as error:
        tenant_create(slug="acme", name="Again")
    assert str(error.value) == "a tenant with slug 'acme' already exists; choose another slug"
    assert Tenant.objects.count() == 1


def test_tenant_create__fails_inside_a_transaction__no_tenant_and_no_event(db):
    events = AuditEvent.objects.count()
    with pytest.raises(RuntimeError, match=r"^later step failed$"), transaction.atomic():
        tenant_create(slug="acme", name="Acme")
        raise RuntimeError("later step failed")
    assert not Tenant.objects.filter(slug="acme").exists()
    assert AuditEvent.objects.count() == events


def test_deployment_create__duplicate_slug__conflict(tenant):
    deployment_create(tenant=tenant, slug="analyst")
    with pytest.raises(Conflict) as error:
        deployment_create(tenant=tenant, slug="analyst")
    assert str(error.value) == "deployment 'analyst' already exists in acme"
    assert Deployment.objects.count() == 1


# Deployment tokens -------------------------------------------------------------------------


@pytest.fixture
def deployment(tenant):
    return deployment_create(tenant=tenant, slug="analyst", environment="classified")


def test_deployment_token_issue__new_token__plain_returned_once_only_digest_stored(deployment):
    token, plain = deployment_token_issue(deployment=deployment)
    stored = DeploymentToken.objects.filter(pk=token.pk).values().get()
    assert stored["token_hash"] == hashlib.sha256(plain.encode()).hexdigest()
    assert stored["prefix"] == plain[:10]
    assert all(plain not in str(value) for value in stored.values())
    event = AuditEvent.objects.order_by("-sequence").first()
    assert event.action == "deployment_token.issued"
    assert plain not in str(event.data)
    assert deployment_for_token(plain) == deployment


def test_deployment_token__several_for_rotation__each_resolves_until_revoked(deployment):
    old, old_plain = deployment_token_issue(deployment=deployment)
    _, new_plain = deployment_token_issue(deployment=deployment)
    assert deployment_for_token(old_plain) == deployment
    assert deployment_for_token(new_plain) == deployment
    deployment_token_revoke(token=old)
    assert deployment_for_token(old_plain) is None
    assert deployment_for_token(new_plain) == deployment
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.data["token_id"]) == ("deployment_token.revoked", old.pk)


def test_deployment_token_revoke__twice__second_changes_nothing(deployment):
    token, _ = deployment_token_issue(deployment=deployment)
    first = deployment_token_revoke(token=token).revoked_at
    events = AuditEvent.objects.count()
    assert deployment_token_revoke(token=token).revoked_at == first
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    "token",
    [
        "",
        "rl_",
        "not-a-token",
        "rl_" + "x" * 200,
        "Bearer rl_abcdefghijklmnopqrstuvwxyz",
        "rl_ü" * 8,
    ],
)
def test_deployment_for_token__malformed__none(deployment, token):
    deployment_token_issue(deployment=deployment)
    assert deployment_for_token(token) is None


def test_deployment_for_token__well_formed_but_unknown__none(deployment):
    _, plain = deployment_token_issue(deployment=deployment)
    assert deployment_for_token(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None


def test_deployment_for_token__token_hash_itself__none(deployment):
    token, _ = deployment_token_issue(deployment=deployment)
    assert deployment_for_token(token.token_hash) is None


# issue_token command -----------------------------------------------------------------------


def test_issue_token__demo_deployment__prints_one_token_that_resolves(demo):
    out = StringIO()
    call_command("issue_token", "demo/analyst-unclass", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    found = deployment_for_token(lines[0])
    assert (found.tenant.slug, found.slug) == ("demo", "analyst-unclass")
    assert deployment_for_token(demo.new_tokens["demo/analyst-unclass"]) == found


@pytest.mark.parametrize("path", ["demo/nowhere", "nowhere/analyst-unclass", "demo", "/", ""])
def test_issue_token__bad_path__readable_command_error(demo, path):
    tokens = DeploymentToken.objects.count()
    with pytest.raises(CommandError) as error:
        call_command("issue_token", path)
    assert str(error.value) == (
        f"no deployment '{path}'; name it as <tenant>/<deployment>, e.g. demo/analyst-unclass"
    )
    assert DeploymentToken.objects.count() == tokens


def test_deployment_by_path__extra_slash__none(demo):
    assert deployment_by_path("demo/analyst-unclass/extra") is None
