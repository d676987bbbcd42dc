"""GET /metrics: bearer token, Prometheus text, and each named series with exact values."""

from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

import config.metrics
from approvals.models import ChangeRequest, Channel, Decision, RequestStatus
from approvals.services import brake_pull, change_request_decide, change_request_submit
from tenants.models import Deployment
from tenants.services import deployment_token_issue
from tests.integration.config_api_support import bearer, fresh_serving  # noqa: F401
from tests.unit.approvals.conftest import frozen_clock, person
from toggles.models import Profile, Rollout, RolloutTarget, TargetStatus
from toggles.rollout import rollout_advance, rollout_record_ack

TOKEN = "metrics-token-for-the-tests"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics__no_or_wrong_token__401_and_unset_token__404(client, settings):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-it")
    assert (wrong.status_code, wrong["WWW-Authenticate"]) == (401, 'Bearer realm="metrics"')
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", **AUTH).status_code == 404


def test_metrics__config_fetches__counted_by_status_with_the_304_ratio(client, demo):
    deployment = Deployment.objects.get(tenant=demo.tenant, slug="analyst-unclass")
    _, token = deployment_token_issue(deployment=deployment)
    before = scrape(client)
    first = client.get("/api/v1/config", **bearer(token))
    assert first.status_code == 200
    for _ in range(3):
        again = client.get("/api/v1/config", HTTP_IF_NONE_MATCH=first["ETag"], **bearer(token))
        assert again.status_code == 304
    assert client.get("/api/v1/config", **bearer("rl_" + "x" * 43)).status_code == 401
    after = scrape(client)

    def delta(status):
        name = "redline_config_fetches_total"
        return value(after, name, endpoint="config", status=status) - value(
            before, name, endpoint="config", status=status
        )

    assert (delta("200"), delta("304"), delta("401")) == (1, 3, 1)
    fetched = {
        dict(labels)["status"]: count
        for (name, labels), count in after.items()
        if name == "redline_config_fetches_total" and ("endpoint", "config") in labels
    }
    assert value(after, "redline_config_not_modified_ratio", endpoint="config") == pytest.approx(
        fetched["304"] / sum(fetched.values())
    )
    latency = "redline_http_request_duration_seconds_count"
    assert (
        value(after, latency, view="api-config", method="GET")
        - value(before, latency, view="api-config", method="GET")
        == 5
    )


def test_metrics__pending_requests__by_tenant_and_age(client, demo, make_tenant):
    make_tenant("other")
    profile = Profile.objects.get(tenant=demo.tenant, name="default")

    def submit(changes):
        return change_request_submit(
            tenant=demo.tenant,
            profile=profile,
            actor=person("vendor-admin"),
            changes=changes,
            justification="exercise",
            base_version=1,
        )

    with frozen_clock(timezone.now() - timedelta(hours=30)):
        submit({"intel.foreign_analysis": "full"})
    with frozen_clock(timezone.now() - timedelta(hours=2)):
        submit({"cyber.live_target_interaction": True})
    submit({"logging.retention_days": 30})
    samples = scrape(client)
    name = "redline_change_requests_pending"
    assert [
        value(samples, name, tenant="demo", age=age)
        for age in ("under_1h", "1h_to_24h", "over_24h")
    ] == [1, 1, 1]
    assert (name, (("age", "under_1h"), ("tenant", "other"))) not in samples
    oldest = value(samples, "redline_change_request_oldest_pending_seconds", tenant="demo")
    assert 30 * 3600 <= oldest < 30 * 3600 + 120


def test_metrics__decisions__by_channel_and_verdict(client, demo):
    profile = Profile.objects.get(tenant=demo.tenant, name="default")
    for changes, reviewer, channel, verdict in [
        ({"intel.foreign_analysis": "full"}, "vendor-reviewer-1", Channel.EMAIL, "approve"),
        ({"logging.retention_days": 30}, "customer-reviewer-1", Channel.API, "reject"),
        ({"cyber.live_target_interaction": True}, "vendor-reviewer-2", Channel.EMAIL, "approve"),
    ]:
        cr = change_request_submit(
            tenant=demo.tenant,
            profile=profile,
            actor=person("customer-admin"),
            changes=changes,
            justification="exercise",
            base_version=1,
        )
        change_request_decide(
            change_request_id=cr.pk, actor=person(reviewer), verdict=verdict, channel=channel
        )
    samples = scrape(client)
    assert value(samples, "redline_decisions_total", channel="email", verdict="approve") == 2
    assert value(samples, "redline_decisions_total", channel="api", verdict="reject") == 1
    assert Decision.objects.count() == 3
    assert ChangeRequest.objects.filter(status=RequestStatus.REJECTED).count() == 1


def test_metrics__rollout_targets_and_delivery_latency(client, demo):
    brake_pull(tenant=demo.tenant, actor=person("vendor-admin"), reason="exercise")
    rollout = Rollout.objects.get(version__number=2)
    rollout_advance(rollout_id=rollout.pk)
    canary = Deployment.objects.get(tenant=demo.tenant, is_canary=True)
    rollout_record_ack(deployment=canary, version=2)
    samples = scrape(client)
    for status in TargetStatus.values:
        assert value(samples, "redline_rollout_targets", status=status) == (
            RolloutTarget.objects.filter(status=status).count()
        ), status
    assert value(samples, "redline_rollout_targets", status="delivered") == 1
    assert value(samples, "redline_rollout_delivery_seconds_count") == 1
    assert value(samples, "redline_rollout_delivery_seconds_bucket", le="+Inf") == 1
    assert value(samples, "redline_rollout_delivery_seconds_bucket", le="10.0") == 1


def test_metrics__celery_queue_length__is_the_broker_list_length(client, demo, settings):
    """On a Redis database of its own: the suite's broker is shared with running tests."""

    settings.CELERY_BROKER_URL = settings.REDIS_URL.rsplit("/", 1)[0] + "/15"
    config.metrics._redis = None
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    try:
        assert value(scrape(client), "redline_celery_queue_length", queue="celery") == 0
        broker.lpush("celery", b"one", b"two", b"three")
        assert value(scrape(client), "redline_celery_queue_length", queue="celery") == 3
    finally:
        broker.delete("celery")
        config.metrics._redis = None


def test_metrics__audit_chain_head__is_the_last_sequence(client, demo):
    from audit.models import AuditEvent

    samples = scrape(client)
    assert (
        value(samples, "redline_audit_chain_head")
        == AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    )
