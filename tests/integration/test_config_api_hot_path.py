"""The hot path's database work, pinned: nothing on a cache hit, a bounded few on a miss."""

import pytest

from tenants.services import deployment_token_issue
from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create
from toggles.serving import config_cache

fresh_serving = support.fresh_serving


@pytest.fixture
def token(demo):
    return demo.new_tokens["demo/analyst-unclass"]


def new_version(demo, django_capture_on_commit_callbacks, changes):
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    with django_capture_on_commit_callbacks(execute=True):
        profile_version_create(
            profile=profile, changes=changes, actor=None, reason="t", kind=VersionKind.TIGHTENING
        )


def test_config__cold_process_and_empty_redis__three_queries(
    client, token, django_assert_num_queries
):
    # The catalog, the token's binding, the version's values.
    with django_assert_num_queries(3):
        response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 200


def test_config__cold_process_document_in_redis__two_queries(
    client, token, demo, django_capture_on_commit_callbacks, django_assert_num_queries
):
    new_version(demo, django_capture_on_commit_callbacks, {"usage.max_agent_steps": 10})
    config_cache.reset()

    # The catalog and the token's binding; the document built at commit comes from Redis.
    with django_assert_num_queries(2):
        response = client.get("/api/v1/config", **bearer(token))

    assert response.json()["version"] == 2


def test_config__cache_hit__no_query(client, token, django_assert_num_queries):
    first = client.get("/api/v1/config", **bearer(token))

    with django_assert_num_queries(0):
        second = client.get("/api/v1/config", **bearer(token))
        not_modified = client.get(
            "/api/v1/config", HTTP_IF_NONE_MATCH=first["ETag"], **bearer(token)
        )

    assert second.content == first.content
    assert not_modified.status_code == 304


def test_config__second_token_same_profile__one_query(
    client, token, demo, django_assert_num_queries
):
    client.get("/api/v1/config", **bearer(token))
    _, other = deployment_token_issue(deployment=demo.tenant.deployments.get(slug="cyber-defence"))

    with django_assert_num_queries(1):
        response = client.get("/api/v1/config", **bearer(other))

    assert response.status_code == 200


def test_config__after_new_version__rebinds_in_two_queries(
    client, token, demo, django_capture_on_commit_callbacks, django_assert_num_queries
):
    client.get("/api/v1/config", **bearer(token))
    new_version(demo, django_capture_on_commit_callbacks, {"usage.max_agent_steps": 10})

    with django_assert_num_queries(2):
        response = client.get("/api/v1/config", **bearer(token))
    with django_assert_num_queries(0):
        again = client.get("/api/v1/config", **bearer(token))

    assert response.json()["version"] == again.json()["version"] == 2


def test_ofrep__cache_hit__no_query(client, token, django_assert_num_queries):
    client.get("/api/v1/config", **bearer(token))

    with django_assert_num_queries(0):
        single = client.post(
            "/ofrep/v1/evaluate/flags/usage.max_agent_steps",
            data={},
            content_type="application/json",
            **bearer(token),
        )
        bulk = client.post(
            "/ofrep/v1/evaluate/flags", data={}, content_type="application/json", **bearer(token)
        )

    assert single.status_code == bulk.status_code == 200


def test_config__recheck_interval_not_due__no_redis_and_no_query(
    client, token, settings, django_assert_num_queries
):
    settings.REDLINE_CONFIG_RECHECK_SECONDS = 3600
    client.get("/api/v1/config", **bearer(token))

    with django_assert_num_queries(0):
        response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 200
