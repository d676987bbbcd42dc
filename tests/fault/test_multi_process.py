"""More than one machine, in miniature: two web processes (each as the Procfile runs it, with
two worker processes) and two Celery workers (beat on one only) against one PostgreSQL and
one Redis, running a rollout end to end.

A brake pulled through the first web process writes a version; the workers push it to the
push deployments (an aiohttp receiver) and the pull deployments fetch it through the second
web process and acknowledge it through the first. The request id given to the brake follows
into the rollout tasks of both workers, and /metrics adds up the counts of a web process's
workers.
"""

import json
import os
import socket
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from knox.models import AuthToken
from prometheus_client.parser import text_string_to_metric_families

from tenants.models import Party, Role
from tenants.services import (
    deployment_create,
    deployment_token_issue,
    membership_set,
    tenant_create,
)
from tests.fault.processes import (
    BIN,
    ROOT,
    RedisServer,
    WebServer,
    Worker,
    app_environment,
    wait_until,
)
from tests.webhook_receiver import WebhookReceiver
from toggles.models import Rollout, RolloutStatus, RolloutTarget, TargetStatus
from toggles.services import profile_create
from toggles.signing import jwks, signature_verify

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PUSHED = 6
PULLED = 2
METRICS_TOKEN = "metrics-token-of-the-multi-process-test"


class ProductionWeb(WebServer):
    """The web process as the Procfile runs it (scripts/web.sh): two worker processes."""

    def __init__(self, env, log, metrics_dir):
        super().__init__(
            {
                **env,
                "WEB_CONCURRENCY": "2",
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "HOST": "127.0.0.1",
                "PATH": f"{BIN}:{os.environ['PATH']}",
            },
            log,
        )
        self.env["PORT"] = str(self.port)

    def start(self):
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 (a fixed command line)
                [str(ROOT / "scripts/web.sh")],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def listening():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout=20, what="the web process")
        return self


@pytest.fixture
def receiver():
    server = WebhookReceiver(delay=0.3).start()
    yield server
    server.stop()


@pytest.fixture
def fleet(catalog, receiver, make_user):
    tenant = tenant_create(slug="fleet", name="Fleet")
    profile_create(tenant=tenant)
    admin = make_user("fleet-admin")
    membership_set(tenant=tenant, user=admin, party=Party.CUSTOMER, role=Role.ADMIN)
    pushed = [f"push-{n}" for n in range(PUSHED)]
    for n, slug in enumerate(pushed):
        deployment_create(
            tenant=tenant, slug=slug, webhook_url=receiver.url(slug), is_canary=n == 0
        )
    tokens = {}
    for n in range(PULLED):
        deployment = deployment_create(tenant=tenant, slug=f"pull-{n}")
        tokens[deployment.slug] = deployment_token_issue(deployment=deployment)[1]
    _, api_token = AuthToken.objects.create(admin)
    return {"pushed": pushed, "tokens": tokens, "api_token": api_token}


@pytest.fixture
def machines(tmp_path, fleet):
    redis_server = RedisServer(tmp_path).start()
    env = app_environment(
        redis_server.url(),
        METRICS_TOKEN=METRICS_TOKEN,
        REDLINE_ROLLOUT_RECONCILE_SECONDS=1,
        REDLINE_ROLLOUT_STUCK_SECONDS=5,
    )
    webs = [
        ProductionWeb(env, tmp_path / f"web-{n}.log", tmp_path / f"metrics-{n}") for n in range(2)
    ]
    workers = [
        Worker(env, tmp_path / f"worker-{n}.log", concurrency=2, beat=n == 0) for n in range(2)
    ]
    try:
        for web in webs:
            web.start()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        yield webs, workers
    finally:
        for worker in workers:
            worker.stop()
        for web in webs:
            web.stop()
        redis_server.stop()
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-2000:]}")


def ack(web, token: str, attempts: int = 5) -> int:
    """Acknowledge version 2 as a deployment's client does: a 5xx is tried again.

    (An ack can meet a deadlock with a rollout task on the audit chain's lock; the database
    aborts one of the two and the client's retry goes through.)
    """
    for _ in range(attempts):
        answer = requests.post(
            web.url("/api/v1/config/ack"),
            json={"version": 2},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if answer.status_code < 500:
            return answer.status_code
    return answer.status_code


def json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_two_webs_two_workers__rollout_reaches_every_deployment_once(machines, fleet, receiver):
    (web_a, web_b), workers = machines
    trace = "brake-" + uuid.uuid4().hex
    pulled = requests.post(
        web_a.url("/api/v1/tenants/fleet/brake"),
        json={"capabilities": "all", "reason": "multi-process exercise"},
        headers={"Authorization": f"Bearer {fleet['api_token']}", "X-Request-ID": trace},
        timeout=30,
    )
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["versions"] == {"default": 2}

    for slug, token in fleet["tokens"].items():
        fetched = requests.get(
            web_b.url("/api/v1/config"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert fetched.status_code == 200
        assert fetched.json()["version"] == 2
        assert signature_verify(fetched.content, fetched.headers["Config-Signature"], jwks())
        assert ack(web_a, token) == 200, slug

    rollout = wait_until(
        lambda: Rollout.objects.filter(
            profile__tenant__slug="fleet", version__number=2, status=RolloutStatus.COMPLETED
        ).first(),
        timeout=60,
        what="the rollout to complete",
    )
    targets = RolloutTarget.objects.filter(rollout=rollout)
    assert targets.count() == PUSHED + PULLED
    assert set(targets.values_list("status", flat=True)) == {TargetStatus.DELIVERED}
    for slug in fleet["pushed"]:
        # Version 1 may arrive first: the reconciler starts its rollout once it looks stuck.
        assert receiver.applied[slug][-1] == 2, slug
        assert receiver.keys(slug)[f"fleet/{slug}:default:2"] == 1
    for received in receiver.received:
        assert signature_verify(received.body, received.signature, jwks())

    finished = [
        [line for line in json_lines(worker.log) if line.get("event") == "task.finished"]
        for worker in workers
    ]
    assert all(finished), "both workers ran tasks"
    traced = {line["task"] for lines in finished for line in lines if line["request_id"] == trace}
    assert {"toggles.tasks.rollout_advance", "toggles.tasks.rollout_targets_deliver"} <= traced


def test_two_web_workers__metrics_add_up_their_counts(machines):
    (web_a, _), _ = machines

    def hit(_):
        return requests.get(web_a.url("/healthz"), timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(hit, range(80))) == [200] * 80
    metrics_dir = Path(web_a.env["PROMETHEUS_MULTIPROC_DIR"])
    writers = {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}
    assert len(writers) == 2, writers
    scraped = requests.get(
        web_a.url("/metrics"), headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    assert scraped.status_code == 200
    healthz = [
        sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "redline_http_responses_total" and sample.labels["view"] == "healthz"
    ]
    assert healthz == [80.0]
