"""OFREP over HTTP: POST /ofrep/v1/evaluate/flags/{key} and the bulk /ofrep/v1/evaluate/flags."""

import json

import pytest

from tenants.authentication import MISSING_TOKEN, UNKNOWN_TOKEN
from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.models import Capability, Profile, VersionKind
from toggles.services import profile_version_create

fresh_serving = support.fresh_serving
acme = support.acme


@pytest.fixture
def token(demo):
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    profile_version_create(
        profile=profile,
        changes={"logging.human_review_sample_rate": 1, "usage.max_agent_steps": 10},
        actor=None,
        reason="t",
        kind=VersionKind.TIGHTENING,
    )
    return demo.new_tokens["demo/analyst-unclass"]


def evaluate(client, key, token, body="{}", **headers):
    return client.post(
        f"/ofrep/v1/evaluate/flags/{key}",
        data=body,
        content_type="application/json",
        **{**bearer(token), **headers},
    )


def metadata(red_line, value_type, tier):
    return {
        "redLine": red_line,
        "valueType": value_type,
        "riskTier": tier,
        "tenant": "demo",
        "profile": "default",
        "version": 2,
    }


@pytest.mark.parametrize(
    ("key", "value", "reason", "variant", "meta"),
    [
        (
            "redline.mass_domestic_surveillance",
            False,
            "STATIC",
            "red_line",
            metadata(True, "bool", "critical"),
        ),
        ("usage.max_agent_steps", 10, "TARGETING_MATCH", "profile", metadata(False, "int", "high")),
        (
            "logging.human_review_sample_rate",
            1.0,
            "TARGETING_MATCH",
            "profile",
            metadata(False, "float", "high"),
        ),
        (
            "cyber.defence_detail",
            "detailed",
            "DEFAULT",
            "default",
            metadata(False, "enum", "high"),
        ),
        (
            "classified.banner_text",
            "UNCLASSIFIED",
            "DEFAULT",
            "default",
            metadata(False, "string", "low"),
        ),
    ],
    ids=["red-line", "int", "float", "enum", "string"],
)
def test_evaluate_flag__each_type__value_reason_variant_metadata(
    client, token, key, value, reason, variant, meta
):
    response = evaluate(client, key, token)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "key": key,
        "value": value,
        "reason": reason,
        "variant": variant,
        "metadata": meta,
    }


def test_evaluate_flag__float_whole_number__sent_with_decimal_point(client, token):
    response = evaluate(client, "logging.human_review_sample_rate", token)

    assert b'"value":1.0,' in response.content


def test_evaluate_flag__context_given__same_answer(client, token):
    plain = evaluate(client, "usage.max_agent_steps", token)
    with_context = evaluate(
        client,
        "usage.max_agent_steps",
        token,
        body=json.dumps({"context": {"targetingKey": "user-1", "team": "blue"}}),
    )

    assert with_context.content == plain.content


def test_evaluate_flag__empty_body__accepted(client, token):
    assert evaluate(client, "usage.max_agent_steps", token, body="").status_code == 200


def test_evaluate_flag__unknown_key__404_flag_not_found(client, token):
    response = evaluate(client, "no.such.flag", token)

    assert response.status_code == 404
    assert response.json() == {
        "key": "no.such.flag",
        "errorCode": "FLAG_NOT_FOUND",
        "errorDetails": "no capability 'no.such.flag' in the config of this deployment",
    }


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        ("{not json", "PARSE_ERROR", "the request body is not valid JSON"),
        ("[1, 2]", "PARSE_ERROR", "the request body must be a JSON object"),
        ('{"context": "user-1"}', "INVALID_CONTEXT", "context must be a JSON object"),
    ],
)
def test_evaluate_flag__bad_request__400_with_error_details(client, token, body, code, details):
    response = evaluate(client, "usage.max_agent_steps", token, body=body)

    assert response.status_code == 400
    assert response.json() == {
        "key": "usage.max_agent_steps",
        "errorCode": code,
        "errorDetails": details,
    }


def test_evaluate_flag__x_api_key__accepted(client, token):
    response = client.post(
        "/ofrep/v1/evaluate/flags/usage.max_agent_steps",
        data="{}",
        content_type="application/json",
        HTTP_X_API_KEY=token,
    )

    assert response.status_code == 200
    assert response.json()["value"] == 10


def test_evaluate_flag__no_token__401(client, token):
    response = client.post(
        "/ofrep/v1/evaluate/flags/usage.max_agent_steps", data="{}", content_type="application/json"
    )

    assert response.status_code == 401
    assert response.json() == {"errorDetails": MISSING_TOKEN}
    assert response["WWW-Authenticate"] == 'Bearer realm="redline"'


def test_evaluate_flag__revoked_or_unknown__401(client, demo):
    response = evaluate(client, "usage.max_agent_steps", "rl_" + "C" * 43)

    assert response.status_code == 401
    assert response.json() == {"errorDetails": UNKNOWN_TOKEN}


def test_evaluate_flag__get__405(client, token):
    response = client.get("/ofrep/v1/evaluate/flags/usage.max_agent_steps", **bearer(token))

    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_evaluate_flag__other_tenant__its_own_values(client, token, acme):
    _, _, acme_token = acme

    response = evaluate(client, "usage.max_agent_steps", acme_token)

    assert response.json()["value"] == 25
    assert response.json()["metadata"]["tenant"] == "acme"
    assert response.json()["metadata"]["version"] == 1


def test_evaluate_flag__over_rate__429_whole_seconds(client, token, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"deployment": "1/min"},
    }
    evaluate(client, "usage.max_agent_steps", token)

    response = evaluate(client, "usage.max_agent_steps", token)

    assert response.status_code == 429
    wait = response["Retry-After"]
    assert wait.isdigit() and 1 <= int(wait) <= 60
    assert response.json() == {
        "errorDetails": f"Request was throttled. Expected available in {wait} "
        f"second{'' if wait == '1' else 's'}."
    }


def bulk(client, token, body="{}", **headers):
    return client.post(
        "/ofrep/v1/evaluate/flags",
        data=body,
        content_type="application/json",
        **{**bearer(token), **headers},
    )


def test_evaluate_flags__bulk__every_flag_with_etag(client, token):
    response = bulk(client, token)

    assert response.status_code == 200
    assert response["ETag"].startswith('"') and len(response["ETag"]) == 66
    assert response["Cache-Control"] == "private, no-cache"
    flags = response.json()["flags"]
    assert [flag["key"] for flag in flags] == sorted(
        Capability.objects.values_list("key", flat=True)
    )
    single = evaluate(client, "usage.max_agent_steps", token).json()
    assert next(flag for flag in flags if flag["key"] == "usage.max_agent_steps") == single


def test_evaluate_flags__if_none_match__304(client, token):
    etag = bulk(client, token)["ETag"]

    response = bulk(client, token, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag


def test_evaluate_flags__new_version__new_etag(client, token, demo):
    etag = bulk(client, token)["ETag"]
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    profile_version_create(
        profile=profile,
        changes={"usage.max_agent_steps": 5},
        actor=None,
        reason="t",
        kind=VersionKind.TIGHTENING,
    )
    support.serving_forget()

    response = bulk(client, token, HTTP_IF_NONE_MATCH=etag)

    assert response.status_code == 200
    assert response["ETag"] != etag


def test_evaluate_flags__bad_context__400(client, token):
    response = bulk(client, token, body='{"context": [1]}')

    assert response.status_code == 400
    assert response.json() == {
        "errorCode": "INVALID_CONTEXT",
        "errorDetails": "context must be a JSON object",
    }


def test_evaluate_flag__key_with_slash__404_flag_not_found(client, token):
    response = evaluate(client, "usage/max_agent_steps", token)

    assert response.status_code == 404
    assert response.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert response.json()["key"] == "usage/max_agent_steps"
