"""POST /api/v1/config/ack, GET /api/v1/signing-keys, and the per-token rate limit."""

import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured

from audit.models import AuditEvent
from tenants.authentication import MISSING_TOKEN, UNKNOWN_TOKEN
from tenants.models import Deployment
from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create
from toggles.signing import PublicKey, keyring, signature_verify
from toggles.throttling import rate_limiter

fresh_serving = support.fresh_serving
acme = support.acme


@pytest.fixture
def token(demo):
    return demo.new_tokens["demo/analyst-unclass"]


def ack(client, token, body):
    return client.post(
        "/api/v1/config/ack",
        data=json.dumps(body),
        content_type="application/json",
        **bearer(token),
    )


def new_version(demo):
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    profile_version_create(
        profile=profile,
        changes={"usage.max_agent_steps": 10},
        actor=None,
        reason="t",
        kind=VersionKind.TIGHTENING,
    )


def test_ack__current_version__recorded_and_audited(client, token, demo):
    response = ack(client, token, {"version": 1})

    deployment = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    assert response.status_code == 200
    assert response.json() == {
        "deployment": "demo/analyst-unclass",
        "profile": "default",
        "acked_version": 1,
        "acked_at": deployment.acked_at.isoformat().replace("+00:00", "Z"),
    }
    assert deployment.acked_version == 1
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.actor, event.target) == (
        "deployment.config_acked",
        "deployment:demo/analyst-unclass",
        "deployment:demo/analyst-unclass",
    )
    assert event.data == {"profile": "default", "version": 1, "previous": None}


def test_ack__same_version_again__unchanged_and_not_audited(client, token, demo):
    first = ack(client, token, {"version": 1})
    events = AuditEvent.objects.count()

    second = ack(client, token, {"version": 1})

    assert second.status_code == 200
    assert second.json() == first.json()
    assert AuditEvent.objects.count() == events


def test_ack__version_not_reached__409(client, token, demo):
    response = ack(client, token, {"version": 2})

    assert response.status_code == 409
    assert response.json() == {
        "error": "conflict",
        "detail": "demo/default is at version 1; version 2 does not exist yet",
    }
    assert Deployment.objects.get(slug="analyst-unclass").acked_version is None


def test_ack__older_than_acknowledged__409(client, token, demo):
    new_version(demo)
    assert ack(client, token, {"version": 2}).status_code == 200

    response = ack(client, token, {"version": 1})

    assert response.status_code == 409
    assert response.json() == {
        "error": "conflict",
        "detail": "demo/analyst-unclass already acknowledged version 2; versions only increase",
    }
    assert Deployment.objects.get(slug="analyst-unclass").acked_version == 2


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "version: This field is required."),
        ({"version": 0}, "version: Ensure this value is greater than or equal to 1."),
        ({"version": "two"}, "version: A valid integer is required."),
        ({"version": True}, "version: A valid integer is required."),
    ],
)
def test_ack__invalid_body__400(client, token, demo, body, detail):
    response = ack(client, token, body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid"
    assert response.json()["detail"] == detail


def test_ack__no_token__401(client, demo):
    response = client.post(
        "/api/v1/config/ack", data={"version": 1}, content_type="application/json"
    )

    assert response.status_code == 401
    assert response.json() == {"error": "not_authenticated", "detail": MISSING_TOKEN}
    assert response["WWW-Authenticate"] == 'Bearer realm="redline"'


def test_ack__unknown_token__401(client, demo):
    response = ack(client, "rl_" + "B" * 43, {"version": 1})

    assert response.status_code == 401
    assert response.json() == {"error": "authentication_failed", "detail": UNKNOWN_TOKEN}


def test_ack__other_tenants_token__records_its_own_deployment(client, token, demo, acme):
    _, acme_deployment, acme_token = acme

    assert ack(client, acme_token, {"version": 1}).json()["deployment"] == "acme/acme-assistant"
    assert Deployment.objects.get(pk=acme_deployment.pk).acked_version == 1
    assert Deployment.objects.get(slug="analyst-unclass").acked_version is None


def test_signing_keys__current_key__one_okp_jwk(client, db):
    response = client.get("/api/v1/signing-keys")

    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    [jwk] = response.json()["keys"]
    assert jwk == keyring().current.jwk()
    assert {k: jwk[k] for k in ("kty", "crv", "use", "alg")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "use": "sig",
        "alg": "EdDSA",
    }


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_signing_keys__rotated__old_key_listed_new_key_signs(client, token, settings, tmp_path):
    old = tmp_path / "old.pem"
    old.write_bytes(pem(Ed25519PrivateKey.generate()))
    new = Ed25519PrivateKey.generate()
    settings.REDLINE_SIGNING_KEY = pem(new).decode()
    settings.REDLINE_SIGNING_PUBLISHED_KEYS = [str(old)]
    support.serving_forget()

    keys = client.get("/api/v1/signing-keys").json()
    response = client.get("/api/v1/config", **bearer(token))

    kids = [jwk["kid"] for jwk in keys["keys"]]
    assert kids[0] == PublicKey.of(new.public_key()).kid
    assert len(kids) == 2
    assert f'kid="{kids[0]}"' in response["Config-Signature"]
    assert signature_verify(response.content, response["Config-Signature"], keys) is True
    only_old = {"keys": keys["keys"][1:]}
    assert signature_verify(response.content, response["Config-Signature"], only_old) is False


def test_signing_key__missing_and_not_generated__clear_error(settings, tmp_path):
    path = tmp_path / "absent.pem"
    settings.REDLINE_SIGNING_KEY_FILE = path
    settings.REDLINE_SIGNING_KEY_GENERATE = False

    with pytest.raises(ImproperlyConfigured) as error:
        keyring()

    assert str(error.value) == (
        "no config signing key: set REDLINE_SIGNING_KEY to an Ed25519 private key (PEM) or "
        f"create {path} (openssl genpkey -algorithm ed25519 -out {path})"
    )


def test_signing_key__generated__private_file(settings, tmp_path):
    settings.REDLINE_SIGNING_KEY_FILE = tmp_path / "keys" / "signing-key.pem"

    generated = keyring().current

    assert os.stat(settings.REDLINE_SIGNING_KEY_FILE).st_mode & 0o777 == 0o600
    keyring.cache_clear()
    assert keyring().current == generated


def test_signing_key__not_a_pem_key__clear_error(settings):
    settings.REDLINE_SIGNING_KEY = "not a key"

    with pytest.raises(ImproperlyConfigured) as error:
        keyring()

    assert str(error.value).startswith("REDLINE_SIGNING_KEY is not a PEM private key: ")


@pytest.fixture
def three_per_minute(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"deployment": "3/min"},
    }


def test_rate_limit__over_rate__429_with_whole_seconds(client, token, three_per_minute):
    statuses = [client.get("/api/v1/config", **bearer(token)).status_code for _ in range(3)]

    response = client.get("/api/v1/config", **bearer(token))

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    wait = response["Retry-After"]
    assert wait.isdigit() and 1 <= int(wait) <= 60
    assert response.json() == {
        "error": "throttled",
        "detail": f"Request was throttled. Expected available in {wait} "
        f"second{'' if wait == '1' else 's'}.",
    }


def test_rate_limit__counted_in_redis__shared_by_processes(client, token, three_per_minute):
    client.get("/api/v1/config", **bearer(token))
    client.get("/api/v1/config", **bearer(token))
    rate_limiter.reset()  # as another process would start, with no count of its own

    third = client.get("/api/v1/config", **bearer(token))
    fourth = client.get("/api/v1/config", **bearer(token))

    assert (third.status_code, fourth.status_code) == (200, 429)


def test_rate_limit__per_token__other_token_unaffected(client, token, demo, three_per_minute):
    for _ in range(4):
        client.get("/api/v1/config", **bearer(token))

    other = client.get("/api/v1/config", **bearer(demo.new_tokens["demo/cyber-defence"]))

    assert other.status_code == 200


def test_rate_limit__ack_and_ofrep__share_the_budget(client, token, demo, three_per_minute):
    client.get("/api/v1/config", **bearer(token))
    client.post("/ofrep/v1/evaluate/flags", content_type="application/json", **bearer(token))
    ack(client, token, {"version": 1})

    response = ack(client, token, {"version": 1})

    assert response.status_code == 429
    wait = response["Retry-After"]
    assert response.json() == {
        "error": "throttled",
        "detail": f"Request was throttled. Expected available in {wait} "
        f"second{'' if wait == '1' else 's'}.",
    }
