"""Fixtures and helpers shared by the config API and OFREP tests."""

import pytest
from django.core.cache import cache

from tenants.services import deployment_create, deployment_token_issue
from toggles.serving import config_cache
from toggles.throttling import rate_limiter


def serving_forget() -> None:
    """Forget what this process serves and every config document kept in Redis."""
    config_cache.reset()
    rate_limiter.reset()
    client = cache._cache.get_client(write=True)
    for key in client.scan_iter(match=cache.make_key("config:*")):
        client.delete(key)


@pytest.fixture(autouse=True)
def fresh_serving(settings):
    """Each test starts like a new process that asks Redis on every request."""
    settings.REDLINE_CONFIG_RECHECK_SECONDS = 0
    settings.REDLINE_THROTTLE_SYNC_SECONDS = 0
    serving_forget()
    yield
    serving_forget()


@pytest.fixture
def acme(make_tenant):
    """A second tenant with one deployment and its token: (tenant, deployment, token)."""
    tenant = make_tenant("acme")
    deployment = deployment_create(tenant=tenant, slug="acme-assistant")
    _, token = deployment_token_issue(deployment=deployment)
    return tenant, deployment, token


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
