"""The role -> object permission table matches the permissions the Tenant model declares."""

from tenants.models import Role, Tenant
from tenants.permissions import (
    MANAGE_DEPLOYMENTS,
    PROPOSE_CHANGE,
    REVIEW_CHANGE,
    ROLE_PERMISSIONS,
    TENANT_PERMISSIONS,
    VIEW_AUDIT,
    VIEW_TENANT,
)


def test_role_permissions__every_role__has_an_entry():
    assert set(ROLE_PERMISSIONS) == set(Role.values)


def test_tenant_permissions__each__is_declared_on_the_tenant_model():
    declared = {codename for codename, _ in Tenant._meta.permissions}
    declared |= {f"{action}_tenant" for action in Tenant._meta.default_permissions}
    assert set(TENANT_PERMISSIONS) <= declared


def test_role_permissions__table__as_documented():
    documented = {
        Role.ADMIN: {VIEW_TENANT, PROPOSE_CHANGE, MANAGE_DEPLOYMENTS, VIEW_AUDIT},
        Role.REVIEWER: {VIEW_TENANT, PROPOSE_CHANGE, REVIEW_CHANGE},
        Role.AUDITOR: {VIEW_TENANT, VIEW_AUDIT},
        Role.VIEWER: {VIEW_TENANT},
    }
    assert documented == ROLE_PERMISSIONS


def test_role_permissions__only_reviewers__may_review():
    assert [role for role, perms in ROLE_PERMISSIONS.items() if REVIEW_CHANGE in perms] == [
        Role.REVIEWER
    ]
