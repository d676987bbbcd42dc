"""GET /api/v1/config: the signed effective config of the calling deployment."""

import dataclasses
import hashlib
import json

import pytest
from django.test import Client
from django.utils import timezone

from audit.chain import canonical_json
from tenants.authentication import MALFORMED_TOKEN, MISSING_TOKEN, UNKNOWN_TOKEN
from tenants.models import DeploymentToken
from tenants.services import deployment_create, deployment_token_issue, deployment_token_revoke
from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.catalog import catalog_load, catalog_sync
from toggles.models import Profile, ProfileVersion, VersionKind
from toggles.selectors import effective_config
from toggles.services import profile_version_create
from toggles.serving import config_cache
from toggles.signing import signature_verify

fresh_serving = support.fresh_serving
acme = support.acme

RED_LINES = ["redline.fully_autonomous_weapons", "redline.mass_domestic_surveillance"]


@pytest.fixture
def token(demo):
    return demo.new_tokens["demo/analyst-unclass"]


@pytest.fixture
def profile(demo):
    return Profile.objects.get(tenant=demo.tenant, name="default")


def new_version(profile, changes):
    return profile_version_create(
        profile=profile, changes=changes, actor=None, reason="test", kind=VersionKind.TIGHTENING
    )


def test_config__valid_token__effective_config_of_its_profile(client, token, profile):
    response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Config-Version"] == "1"
    document = json.loads(response.content)
    assert list(document) == [
        "tenant",
        "profile",
        "version",
        "issued_at",
        "values",
        "red_lines",
        "digest",
    ]
    expected = effective_config(profile=profile)
    assert document["tenant"] == "demo"
    assert document["profile"] == "default"
    assert document["version"] == 1
    assert document["values"] == expected["values"]
    assert document["red_lines"] == RED_LINES
    assert document["values"]["redline.mass_domestic_surveillance"] is False
    created = ProfileVersion.objects.get(profile=profile, number=1).created_at
    assert document["issued_at"] == created.astimezone(timezone.UTC).isoformat().replace(
        "+00:00", "Z"
    )


def test_config__digest__covers_the_document_without_digest(client, token, demo):
    response = client.get("/api/v1/config", **bearer(token))

    document = json.loads(response.content)
    digest = document.pop("digest")
    assert digest == "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()
    assert response["ETag"] == f'"{digest.removeprefix("sha256:")}"'


def test_config__float_capability__sent_as_float(client, token, profile):
    new_version(profile, {"logging.human_review_sample_rate": 1})

    response = client.get("/api/v1/config", **bearer(token))

    assert b'"logging.human_review_sample_rate":1.0' in response.content
    assert b'"logging.retention_days":365,' in response.content


def test_config__signature__verifies_with_published_key(client, token, demo):
    response = client.get("/api/v1/config", **bearer(token))
    keys = client.get("/api/v1/signing-keys").json()

    assert signature_verify(response.content, response["Config-Signature"], keys) is True


def test_config__one_byte_changed__signature_fails(client, token, demo):
    response = client.get("/api/v1/config", **bearer(token))
    keys = client.get("/api/v1/signing-keys").json()
    body = bytearray(response.content)
    body[body.index(b"false")] = ord("F")

    assert signature_verify(bytes(body), response["Config-Signature"], keys) is False


def test_config__signature_header__names_key_and_algorithm(client, token, demo):
    response = client.get("/api/v1/config", **bearer(token))
    kid = client.get("/api/v1/signing-keys").json()["keys"][0]["kid"]

    header = response["Config-Signature"]
    assert header.startswith(f'kid="{kid}", alg="Ed25519", sig="')
    unknown_kid = header.replace(kid, "another-key")
    assert signature_verify(response.content, unknown_kid, {"keys": []}) is False


def test_config__x_api_key__same_document(client, token, demo):
    with_bearer = client.get("/api/v1/config", **bearer(token))
    with_api_key = client.get("/api/v1/config", HTTP_X_API_KEY=token)

    assert with_api_key.status_code == 200
    assert with_api_key.content == with_bearer.content


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
    ids=["exact", "weak", "list", "star"],
)
def test_config__if_none_match_current__304_without_body(client, token, demo, if_none_match):
    etag = client.get("/api/v1/config", **bearer(token))["ETag"]

    response = client.get(
        "/api/v1/config", HTTP_IF_NONE_MATCH=if_none_match.format(etag=etag), **bearer(token)
    )

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "private, no-cache"


def test_config__if_none_match_other__200(client, token, demo):
    response = client.get("/api/v1/config", HTTP_IF_NONE_MATCH='"not-it"', **bearer(token))

    assert response.status_code == 200


def test_config__new_version_committed__served_with_new_etag(
    client, token, profile, django_capture_on_commit_callbacks
):
    before = client.get("/api/v1/config", **bearer(token))
    with django_capture_on_commit_callbacks(execute=True):
        new_version(profile, {"usage.max_agent_steps": 10})

    after = client.get("/api/v1/config", HTTP_IF_NONE_MATCH=before["ETag"], **bearer(token))

    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]
    assert after["Config-Version"] == "2"
    assert after.json()["version"] == 2
    assert after.json()["values"]["usage.max_agent_steps"] == 10


def test_config__red_line_added_to_catalog__same_version_new_document(
    client, token, demo, settings, django_capture_on_commit_callbacks
):
    before = client.get("/api/v1/config", **bearer(token)).json()
    definitions = catalog_load(settings.REDLINE_CATALOG_PATH)
    added = {**definitions[0], "key": "redline.added_in_test", "title": "Added in a test"}
    with django_capture_on_commit_callbacks(execute=True):
        catalog_sync([*definitions, added])

    after = client.get("/api/v1/config", **bearer(token)).json()

    assert after["version"] == before["version"] == 1
    assert after["red_lines"] == sorted([*RED_LINES, "redline.added_in_test"])
    assert after["values"]["redline.added_in_test"] is False
    assert after["digest"] != before["digest"]


def test_config__stale_binding__never_older_than_served(token, profile):
    new_version(profile, {"usage.max_agent_steps": 10})
    current = config_cache.binding(token)
    served = config_cache.document(current)
    older = dataclasses.replace(current, version=1)

    assert served.version == 2
    assert config_cache.document(older).version == 2


def test_config__no_token__401(client, demo):
    response = client.get("/api/v1/config")

    assert response.status_code == 401
    assert response.json() == {"error": "not_authenticated", "detail": MISSING_TOKEN}
    assert response["WWW-Authenticate"] == 'Bearer realm="redline"'


def test_config__other_scheme__401(client, token):
    response = client.get("/api/v1/config", HTTP_AUTHORIZATION=f"Basic {token}")

    assert response.status_code == 401
    assert response.json() == {"error": "not_authenticated", "detail": MISSING_TOKEN}


@pytest.mark.parametrize("token", ["abc", "rl_short", "rl_" + "x" * 120, "rl_" + "é" * 30])
def test_config__malformed_token__401(client, demo, token):
    response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 401
    assert response.json() == {"error": "authentication_failed", "detail": MALFORMED_TOKEN}
    assert response["WWW-Authenticate"] == 'Bearer realm="redline"'


def test_config__unknown_token__401(client, demo):
    response = client.get("/api/v1/config", **bearer("rl_" + "A" * 43))

    assert response.status_code == 401
    assert response.json() == {"error": "authentication_failed", "detail": UNKNOWN_TOKEN}


def test_config__token_revoked_after_use__401(
    client, token, demo, django_capture_on_commit_callbacks
):
    assert client.get("/api/v1/config", **bearer(token)).status_code == 200
    row = DeploymentToken.objects.get(prefix=token[:10])
    with django_capture_on_commit_callbacks(execute=True):
        deployment_token_revoke(token=row)

    response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 401
    assert response.json() == {"error": "authentication_failed", "detail": UNKNOWN_TOKEN}


def test_config__two_tenants__each_token_sees_only_its_own(client, token, profile, acme):
    tenant, _, acme_token = acme
    new_version(Profile.objects.get(tenant=tenant, name="default"), {"usage.max_agent_steps": 5})

    demo_document = client.get("/api/v1/config", **bearer(token)).json()
    acme_document = client.get("/api/v1/config", **bearer(acme_token)).json()

    assert (demo_document["tenant"], demo_document["version"]) == ("demo", 1)
    assert demo_document["values"]["usage.max_agent_steps"] == 25
    assert (acme_document["tenant"], acme_document["version"]) == ("acme", 2)
    assert acme_document["values"]["usage.max_agent_steps"] == 5


def test_config__deployment_follows_missing_profile__404(client, demo):
    deployment = deployment_create(tenant=demo.tenant, slug="orphan", profile_name="nope")
    _, token = deployment_token_issue(deployment=deployment)

    response = client.get("/api/v1/config", **bearer(token))

    assert response.status_code == 404
    assert response.json() == {
        "error": "profile_not_found",
        "detail": (
            "deployment demo/orphan follows profile 'nope', which does not exist in its tenant"
        ),
    }


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_config__other_method__405(token, method):
    client = Client(enforce_csrf_checks=True)

    response = getattr(client, method)("/api/v1/config", **bearer(token))

    assert response.status_code == 405
    assert response["Allow"] == "GET"


def test_config__console_middleware_skipped__security_headers_kept(client, token):
    response = client.get("/api/v1/config", **bearer(token))

    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response
    assert "X-Frame-Options" not in response
    assert response.cookies == {}
    assert "Content-Security-Policy" in client.get("/login/")


def test_config__host_not_allowed__400(client, token):
    response = client.get("/api/v1/config", HTTP_HOST="evil.example", **bearer(token))

    assert response.status_code == 400
