"""Shared fixtures. Tests run against the real local PostgreSQL and Redis (see Makefile)."""

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model

from approvals.demo import demo_seed
from tenants.models import Party, Role
from tenants.services import membership_set, tenant_create
from toggles.catalog import catalog_load, catalog_sync
from toggles.services import profile_create

DEMO_PASSWORD = "demo-password-for-tests"


@pytest.fixture
def catalog(db):
    """The shipped capability catalog, loaded as `make run` loads it."""
    return catalog_sync(catalog_load(settings.REDLINE_CATALOG_PATH))


@pytest.fixture
def demo(catalog):
    """The demo tenant with both parties, its default profile and three deployments."""
    return demo_seed(password=DEMO_PASSWORD)


@pytest.fixture
def make_user(db):
    def make(username: str, **extra):
        return get_user_model().objects.create_user(
            username=username, email=f"{username}@example.test", password=DEMO_PASSWORD, **extra
        )

    return make


@pytest.fixture
def make_tenant(catalog, make_user):
    """A tenant with a default profile and, per party, one admin and two reviewers."""

    def make(slug: str):
        tenant = tenant_create(slug=slug, name=slug.title())
        profile_create(tenant=tenant)
        for party in (Party.VENDOR, Party.CUSTOMER):
            membership_set(
                tenant=tenant, user=make_user(f"{slug}-{party}-admin"), party=party, role=Role.ADMIN
            )
            for number in (1, 2):
                membership_set(
                    tenant=tenant,
                    user=make_user(f"{slug}-{party}-reviewer-{number}"),
                    party=party,
                    role=Role.REVIEWER,
                )
        return tenant

    return make
