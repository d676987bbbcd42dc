"""The stock OpenFeature Python SDK and OFREP provider, unchanged, against a live server."""

from datetime import UTC, datetime

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from tests.integration import config_api_support as support
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

fresh_serving = support.fresh_serving


@pytest.fixture
def token(demo):
    profile_version_create(
        profile=Profile.objects.get(tenant=demo.tenant, name="default"),
        changes={"logging.human_review_sample_rate": 1, "usage.max_agent_steps": 10},
        actor=None,
        reason="values of every type",
        kind=VersionKind.TIGHTENING,
    )
    return demo.new_tokens["demo/analyst-unclass"]


def openfeature_client(base_url: str, headers: dict[str, str]):
    provider = OFREPProvider(base_url, headers_factory=lambda: headers)
    api.set_provider(provider, domain="redline")
    return api.get_client(domain="redline"), provider


@pytest.fixture
def client_for(live_server):
    def make(headers):
        return openfeature_client(live_server.url, headers)

    yield make
    api.clear_providers()


@pytest.fixture
def flags(client_for, token):
    client, _ = client_for({"Authorization": f"Bearer {token}"})
    return client


def test_provider__red_line__static_with_red_line_metadata(flags):
    details = flags.get_boolean_details("redline.fully_autonomous_weapons", True)

    assert details.error_code is None
    assert details.value is False
    assert details.reason == Reason.STATIC
    assert details.variant == "red_line"
    assert details.flag_metadata == {
        "redLine": True,
        "valueType": "bool",
        "riskTier": "critical",
        "tenant": "demo",
        "profile": "default",
        "version": 2,
    }


@pytest.mark.parametrize(
    ("method", "key", "default", "value", "reason"),
    [
        ("get_boolean_details", "intel.domestic_pii_redaction", False, True, Reason.DEFAULT),
        ("get_integer_details", "usage.max_agent_steps", 0, 10, Reason.TARGETING_MATCH),
        ("get_integer_details", "logging.retention_days", 0, 365, Reason.DEFAULT),
        (
            "get_float_details",
            "logging.human_review_sample_rate",
            0.5,
            1.0,
            Reason.TARGETING_MATCH,
        ),
        ("get_float_details", "redteam.eval_pass_threshold", 0.0, 0.95, Reason.DEFAULT),
        ("get_string_details", "cyber.offensive_detail", "", "conceptual", Reason.DEFAULT),
        ("get_string_details", "classified.banner_text", "", "UNCLASSIFIED", Reason.DEFAULT),
    ],
    ids=["bool", "int-set", "int-default", "float-whole", "float", "enum", "string"],
)
def test_provider__every_capability_type__value_and_reason(
    flags, method, key, default, value, reason
):
    details = getattr(flags, method)(key, default, EvaluationContext(targeting_key="analyst-7"))

    assert details.error_code is None
    assert details.value == value
    assert type(details.value) is type(value)
    assert details.reason == reason
    assert details.flag_metadata["redLine"] is False


def test_provider__unknown_flag__default_and_flag_not_found(flags):
    details = flags.get_boolean_details("no.such.flag", True)

    assert details.value is True
    assert details.error_code == ErrorCode.FLAG_NOT_FOUND
    assert details.error_message == "no capability 'no.such.flag' in the config of this deployment"


def test_provider__wrong_type_asked__default_and_type_mismatch(flags):
    details = flags.get_boolean_details("usage.max_agent_steps", False)

    assert details.value is False
    assert details.error_code == ErrorCode.TYPE_MISMATCH


def test_provider__x_api_key__authenticates(client_for, token):
    client, _ = client_for({"X-API-Key": token})

    assert client.get_integer_value("usage.max_agent_steps", 0) == 10


def test_provider__bad_token__default_and_general_error(client_for, demo):
    client, _ = client_for({"Authorization": "Bearer rl_" + "D" * 43})

    details = client.get_integer_details("usage.max_agent_steps", 7)

    assert details.value == 7
    assert details.error_code == ErrorCode.GENERAL
    assert details.error_message == "unauthorized"


def test_provider__rate_limited__pauses_until_retry_after(client_for, token, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"deployment": "1/min"},
    }
    client, provider = client_for({"Authorization": f"Bearer {token}"})

    first = client.get_integer_details("usage.max_agent_steps", 0)
    limited = client.get_integer_details("usage.max_agent_steps", 0)
    paused = client.get_integer_details("usage.max_agent_steps", 0)

    assert first.value == 10
    assert (limited.value, limited.error_code) == (0, ErrorCode.GENERAL)
    assert limited.error_message.startswith("Rate limited, retry after: ")
    seconds = int(limited.error_message.removeprefix("Rate limited, retry after: "))
    assert 1 <= seconds <= 60
    assert provider.retry_after > datetime.now(UTC)
    assert paused.error_message.startswith("OFREP evaluation paused due to TooManyRequests until ")
