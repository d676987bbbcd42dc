"""Prometheus metrics at GET /metrics, for a scraper holding the bearer token METRICS_TOKEN.

Two kinds of series:

* Counted per request by MetricsMiddleware, in each web process: request latency
  histograms and responses by view, method and status, and deployments' config fetches by
  endpoint and status. With several worker processes set PROMETHEUS_MULTIPROC_DIR
  (scripts/web.sh, the Procfile's web process, does): every worker writes its counts there
  and any worker's /metrics adds them up.
* Read from PostgreSQL and Redis when scraped, so every process (and machine) reports the
  same truth: the 304 ratio of config fetches, pending change requests by tenant and age,
  decisions by channel, rollout targets by status, the time from a target's wave opening to
  its delivery, the Celery queue length, and the audit chain's head.
"""

import logging
import os
import time
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from approvals.models import ChangeRequest, Decision, RequestStatus
from audit.models import AuditWebhookCursor
from audit.selectors import chain_head
from toggles.models import RolloutTarget, TargetStatus

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
PENDING_AGES = (("under_1h", timedelta(hours=1)), ("1h_to_24h", timedelta(hours=24)))
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The views deployments fetch their config from -> endpoint label. Their requests skip URL
# resolution (toggles.api.middleware), so they are recognised by path.
CONFIG_VIEWS = {
    "api-config": "config",
    "ofrep-evaluate-flags": "ofrep_bulk",
    "ofrep-evaluate-flag": "ofrep_flag",
}
CONFIG_PATHS = {"/api/v1/config": "api-config", "/ofrep/v1/evaluate/flags": "ofrep-evaluate-flags"}
FLAG_PREFIX = "/ofrep/v1/evaluate/flags/"
CELERY_QUEUE = "celery"
# Kombu's Redis transport keeps a list per priority step next to the queue's own list.
CELERY_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

REQUEST_LATENCY = Histogram(
    "redline_http_request_duration_seconds",
    "Time to answer an HTTP request, by view and method",
    ["view", "method"],
    buckets=LATENCY_BUCKETS,
)
RESPONSES = Counter(
    "redline_http_responses",
    "HTTP responses by view, method and status",
    ["view", "method", "status"],
)
CONFIG_FETCHES = Counter(
    "redline_config_fetches",
    "Config fetches by deployments, by endpoint and status (304: not modified)",
    ["endpoint", "status"],
)


class MetricsMiddleware:
    """Times and counts every request by the view it resolved to.

    The labelled series are kept per label set: prometheus_client's labels() lookup costs
    more than the count itself on the config hot path.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.series: dict[tuple[str, str, str], tuple] = {}

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        view = view_label(request)
        method = request.method if request.method in METHODS else "other"
        key = (view, method, str(response.status_code))
        series = self.series.get(key) or self._series(key)
        series[0].observe(elapsed)
        for counter in series[1:]:
            counter.inc()
        return response

    def _series(self, key: tuple[str, str, str]) -> tuple:
        view, method, status = key
        series = (REQUEST_LATENCY.labels(view, method), RESPONSES.labels(view, method, status))
        if view in CONFIG_VIEWS:
            series += (CONFIG_FETCHES.labels(CONFIG_VIEWS[view], status),)
        self.series[key] = series
        return series


def view_label(request) -> str:
    match = request.resolver_match
    if match is not None:
        return match.view_name
    path = request.path_info
    if path in CONFIG_PATHS:
        return CONFIG_PATHS[path]
    return "ofrep-evaluate-flag" if path.startswith(FLAG_PREFIX) else "unresolved"


# Scrape ----------------------------------------------------------------------------------------


class _Families:
    """A registry-like holder of metric families collected once per scrape."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def _process_families() -> list:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return list(registry.collect())
    return list(REGISTRY.collect())


def not_modified_ratio(families) -> GaugeMetricFamily:
    """Share of config fetches answered 304, per endpoint, from the fetch counters."""
    totals: dict[str, float] = {}
    not_modified: dict[str, float] = {}
    for family in families:
        if family.name != "redline_config_fetches":
            continue
        for sample in family.samples:
            if sample.name != "redline_config_fetches_total":
                continue
            endpoint = sample.labels["endpoint"]
            totals[endpoint] = totals.get(endpoint, 0) + sample.value
            if sample.labels["status"] == "304":
                not_modified[endpoint] = not_modified.get(endpoint, 0) + sample.value
    gauge = GaugeMetricFamily(
        "redline_config_not_modified_ratio",
        "Share of config fetches answered 304 Not Modified since the processes started",
        labels=["endpoint"],
    )
    for endpoint, total in sorted(totals.items()):
        gauge.add_metric([endpoint], not_modified.get(endpoint, 0) / total if total else 0.0)
    return gauge


def state_families() -> list:
    """Series read from PostgreSQL and Redis at scrape time."""
    now = timezone.now()
    pending = GaugeMetricFamily(
        "redline_change_requests_pending",
        "Pending change requests by tenant and age",
        labels=["tenant", "age"],
    )
    oldest = GaugeMetricFamily(
        "redline_change_request_oldest_pending_seconds",
        "Age of the oldest pending change request, by tenant",
        labels=["tenant"],
    )
    (young_name, young), (middle_name, middle) = PENDING_AGES
    rows = (
        ChangeRequest.objects.filter(status=RequestStatus.PENDING)
        .values("tenant__slug")
        .annotate(
            young=Count("pk", filter=Q(created_at__gt=now - young)),
            middle=Count("pk", filter=Q(created_at__lte=now - young, created_at__gt=now - middle)),
            old=Count("pk", filter=Q(created_at__lte=now - middle)),
            first=Min("created_at"),
        )
        .order_by("tenant__slug")
    )
    for row in rows:
        tenant = row["tenant__slug"]
        pending.add_metric([tenant, young_name], row["young"])
        pending.add_metric([tenant, middle_name], row["middle"])
        pending.add_metric([tenant, "over_24h"], row["old"])
        oldest.add_metric([tenant], (now - row["first"]).total_seconds())

    decisions = CounterMetricFamily(
        "redline_decisions",
        "Decisions on change requests by channel and verdict",
        labels=["channel", "verdict"],
    )
    for row in (
        Decision.objects.values("channel", "verdict")
        .annotate(n=Count("pk"))
        .order_by("channel", "verdict")
    ):
        decisions.add_metric([row["channel"], row["verdict"]], row["n"])

    targets = GaugeMetricFamily(
        "redline_rollout_targets", "Rollout targets by status", labels=["status"]
    )
    counted = dict(RolloutTarget.objects.values_list("status").annotate(n=Count("pk")))
    for status in TargetStatus.values:
        targets.add_metric([status], counted.get(status, 0))

    families = [pending, oldest, decisions, targets, _delivery_latency()]
    last = chain_head()
    head = last[0] if last else 0
    chain = GaugeMetricFamily("redline_audit_chain_head", "Sequence of the last audit event")
    chain.add_metric([], head)
    families.append(chain)
    if settings.REDLINE_AUDIT_WEBHOOK_URL:
        families.append(_audit_webhook_behind(head))
    queue = _celery_queue_length()
    if queue is not None:
        families.append(queue)
    return families


def _delivery_latency() -> HistogramMetricFamily:
    """Seconds from a target's wave opening to its delivery, over every delivered target."""
    took = ExpressionWrapper(F("settled_at") - F("released_at"), output_field=DurationField())
    delivered = RolloutTarget.objects.filter(
        status=TargetStatus.DELIVERED, released_at__isnull=False, settled_at__isnull=False
    ).annotate(took=took)
    counts = delivered.aggregate(
        **{
            f"le_{i}": Count("pk", filter=Q(took__lte=timedelta(seconds=bound)))
            for i, bound in enumerate(DELIVERY_BUCKETS)
        },
        total=Count("pk"),
        sum=Sum("took"),
    )
    buckets = [(str(bound), counts[f"le_{i}"]) for i, bound in enumerate(DELIVERY_BUCKETS)] + [
        ("+Inf", counts["total"])
    ]
    total_seconds = counts["sum"].total_seconds() if counts["sum"] else 0.0
    return HistogramMetricFamily(
        "redline_rollout_delivery_seconds",
        "Time from a rollout target's wave opening to its delivery",
        buckets=buckets,
        sum_value=total_seconds,
    )


def _audit_webhook_behind(head: int) -> GaugeMetricFamily:
    """Events the SIEM has not had yet (the URL is no label: it may hold credentials)."""
    cursor = AuditWebhookCursor.objects.filter(url=settings.REDLINE_AUDIT_WEBHOOK_URL).first()
    behind = GaugeMetricFamily(
        "redline_audit_webhook_behind_events", "Audit events not yet accepted by the webhook"
    )
    behind.add_metric([], head - (cursor.last_sequence if cursor else 0))
    return behind


_redis = None


def _celery_queue_length() -> GaugeMetricFamily | None:
    global _redis
    try:
        if _redis is None:
            _redis = redis.Redis.from_url(
                settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1
            )
        pipe = _redis.pipeline()
        for suffix in CELERY_PRIORITY_SUFFIXES:
            pipe.llen(CELERY_QUEUE + suffix)
        length = sum(pipe.execute())
    except redis.RedisError as error:
        log.warning("metrics: the Celery queue length is unknown: %s", error)
        return None
    gauge = GaugeMetricFamily(
        "redline_celery_queue_length", "Tasks waiting in the Celery queue", labels=["queue"]
    )
    gauge.add_metric([CELERY_QUEUE], length)
    return gauge


def metrics_scrape() -> bytes:
    families = _process_families()
    return generate_latest(_Families([*families, not_modified_ratio(families), *state_families()]))


@require_GET
def metrics_view(request):
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponse(
            "metrics are off: set METRICS_TOKEN\n", status=404, content_type="text/plain"
        )
    if not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        response = HttpResponse(
            "a bearer token is required\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_scrape(), content_type=CONTENT_TYPE_LATEST)
