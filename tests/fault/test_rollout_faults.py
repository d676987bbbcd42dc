"""Rollout through real processes while things break: a Celery worker killed with SIGKILL,
Redis restarted, receivers that fail, time out or stay down, versions in quick succession.

Each test runs its own redis-server (broker and cache) so restarting it disturbs no other
test, Celery workers with beat on the test database, and an aiohttp receiver standing in
for the deployments' webhooks. Timings are shortened through the REDLINE_ROLLOUT_* settings.
"""

import json
import urllib.request

import pytest
from rest_framework.test import APIClient

from tenants.models import Deployment, Party, Role
from tenants.services import (
    deployment_create,
    deployment_token_issue,
    membership_set,
    tenant_create,
)
from tests.fault.processes import (
    RedisServer,
    WebServer,
    Worker,
    app_environment,
    free_port,
    wait_until,
    write_versions,
)
from tests.webhook_receiver import TIMEOUT, WebhookReceiver
from toggles.models import Rollout, RolloutStatus, RolloutTarget, TargetStatus
from toggles.services import profile_create
from toggles.signing import jwks, signature_verify

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = {
    "REDLINE_ROLLOUT_TIMEOUT_SECONDS": 2,
    "REDLINE_ROLLOUT_BACKOFF_SECONDS": 0.2,
    "REDLINE_ROLLOUT_BACKOFF_MAX_SECONDS": 1,
    "REDLINE_ROLLOUT_MAX_ATTEMPTS": 6,
    "REDLINE_ROLLOUT_STUCK_SECONDS": 2,
    "REDLINE_ROLLOUT_RECONCILE_SECONDS": 1,
}


class Stack:
    def __init__(self, tmp_path, receiver: WebhookReceiver):
        self.tmp_path = tmp_path
        self.receiver = receiver
        self.redis = RedisServer(tmp_path).start()
        self.env = app_environment(self.redis.url(), **FAST)
        self.workers: list[Worker] = []
        self.web: WebServer | None = None

    def start_worker(self) -> Worker:
        worker = Worker(self.env, self.tmp_path / f"worker-{len(self.workers)}.log").start()
        self.workers.append(worker)
        return worker

    def start_web(self) -> WebServer:
        self.web = WebServer(self.env, self.tmp_path / "web.log").start()
        return self.web

    def write_versions(self, tenant: str, *limits: int) -> None:
        write_versions(self.env, tenant=tenant, limits=list(limits))

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.web:
            self.web.stop()
        self.redis.stop()


@pytest.fixture
def receiver():
    server = WebhookReceiver(delay=0.05, hang_seconds=3).start()
    yield server
    server.stop()


@pytest.fixture
def stack(tmp_path, receiver, catalog):
    running = Stack(tmp_path, receiver)
    yield running
    running.close()
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def fleet(receiver, slug: str, size: int, canaries: int = 1) -> list[str]:
    """A tenant whose `size` deployments are all pushed to the receiver; returns paths."""
    tenant = tenant_create(slug=slug, name=slug.title())
    profile_create(tenant=tenant)
    paths = []
    for number in range(size):
        path = f"{slug}-{number:03d}"
        deployment_create(
            tenant=tenant,
            slug=path,
            webhook_url=receiver.url(path),
            is_canary=number < canaries,
        )
        paths.append(path)
    return paths


def targets_of(tenant: str, version: int):
    return RolloutTarget.objects.filter(
        rollout__profile__tenant__slug=tenant, rollout__version__number=version
    )


def all_delivered(tenant: str, version: int, count: int):
    def check():
        statuses = list(targets_of(tenant, version).values_list("status", flat=True))
        return len(statuses) == count and set(statuses) == {TargetStatus.DELIVERED}

    return check


def assert_applied_once_each(receiver, paths, tenant: str, newest: int) -> None:
    """Every receiver ends on `newest`, applied each version at most once, in order, and
    every request for one version to one deployment carried the same idempotency key."""
    for path in paths:
        applied = receiver.applied[path]
        assert applied and applied[-1] == newest, (path, applied)
        assert applied == sorted(set(applied)), (path, applied)
        keys = receiver.keys(path)
        assert set(keys) == {f"{tenant}/{path}:default:{version}" for version in applied}


def test_worker_killed_mid_rollout__new_worker_delivers_everything_once(stack, receiver):
    receiver.delay = 1.0
    paths = fleet(receiver, "kill", 150)  # pushed 50 at a time: at most 100 in flight
    victim = paths[5]
    receiver.slow(victim, 3.0)  # answers 200 and applies, but only after the worker is gone
    stack.write_versions("kill", 700)
    first = stack.start_worker()
    wait_until(lambda: victim in receiver.arrived, timeout=30, what="the slow request")
    first.kill()
    in_flight = RolloutTarget.objects.get(deployment__slug=victim, status=TargetStatus.DELIVERING)
    assert in_flight.attempts == 1
    assert len(receiver.arrived) <= 101

    stack.start_worker()
    wait_until(all_delivered("kill", 2, 150), timeout=90, what="every target delivered")

    assert_applied_once_each(receiver, paths, "kill", newest=2)
    assert receiver.keys(victim) == {f"kill/{victim}:default:2": 2}  # re-sent, applied once
    assert receiver.applied[victim] == [2]
    rollout = Rollout.objects.get(profile__tenant__slug="kill", version__number=2)
    wait_until(
        lambda: Rollout.objects.get(pk=rollout.pk).status == RolloutStatus.COMPLETED,
        timeout=10,
        what="the rollout to complete",
    )


def test_redis_restarted_mid_rollout__rollout_completes(stack, receiver):
    receiver.delay = 0.5
    paths = fleet(receiver, "restart", 200)  # pushed 50 at a time: at most 100 in flight
    stack.write_versions("restart", 700)
    stack.start_worker()
    wait_until(lambda: len(receiver.arrived) >= 2, timeout=30, what="the general wave")
    stack.redis.stop()  # its queue (pushes not yet taken by the worker) is lost with it
    not_yet_sent = 200 - len(receiver.arrived)
    stack.redis.start()
    assert not_yet_sent >= 99

    wait_until(all_delivered("restart", 2, 200), timeout=90, what="every target delivered")
    assert_applied_once_each(receiver, paths, "restart", newest=2)
    wait_until(
        lambda: (
            Rollout.objects.get(profile__tenant__slug="restart", version__number=2).status
            == RolloutStatus.COMPLETED
        ),
        timeout=10,
        what="the rollout to complete",
    )


def test_receivers_failing_for_a_while_recover__one_that_stays_down_fails_visibly(
    stack, receiver, make_user
):
    paths = fleet(receiver, "flaky", 4)
    canary, errors, slow, down = paths
    receiver.script(errors, [500, 503, 500])
    receiver.script(slow, [TIMEOUT, TIMEOUT])
    nobody_listens = f"http://127.0.0.1:{free_port()}/{down}"
    Deployment.objects.filter(slug=down).update(webhook_url=nobody_listens)
    stack.write_versions("flaky", 700)
    stack.start_worker()

    def settled():
        # One query: checked in two, the targets could be written between them.
        statuses = list(targets_of("flaky", 2).values_list("status", flat=True))
        return len(statuses) == 4 and not {TargetStatus.PENDING, TargetStatus.DELIVERING} & set(
            statuses
        )

    wait_until(settled, timeout=60, what="every target to settle")
    outcome = {
        t.deployment.slug: (t.status, t.attempts)
        for t in targets_of("flaky", 2).select_related("deployment")
    }
    assert outcome == {
        canary: (TargetStatus.DELIVERED, 1),
        errors: (TargetStatus.DELIVERED, 4),
        slow: (TargetStatus.DELIVERED, 3),
        down: (TargetStatus.FAILED, 6),
    }
    assert [r.answer for r in receiver.received if r.path == errors] == [500, 503, 500, 200]
    assert receiver.applied[errors] == receiver.applied[slow] == [2]
    for request in receiver.received:
        assert signature_verify(request.body, request.signature, jwks())

    rollout = wait_until(
        lambda: Rollout.objects.filter(
            profile__tenant__slug="flaky", version__number=2, status=RolloutStatus.FAILED
        ).first(),
        timeout=10,
        what="the rollout to finish",
    )
    assert rollout.status_reason == "1 of 4 deployments failed"
    tenant = rollout.profile.tenant
    viewer = make_user("flaky-viewer")
    membership_set(tenant=tenant, user=viewer, party=Party.CUSTOMER, role=Role.VIEWER)
    client = APIClient()
    client.force_authenticate(viewer)
    detail = client.get(f"/api/v1/tenants/flaky/rollouts/{rollout.pk}/").json()
    assert detail["status"] == "failed"
    assert detail["counts"] == {
        "pending": 0,
        "delivering": 0,
        "delivered": 3,
        "failed": 1,
        "superseded": 0,
    }
    failed = [t for t in detail["targets"] if t["status"] == "failed"]
    assert [t["deployment"] for t in failed] == [down]
    assert failed[0]["attempts"] == 6
    assert failed[0]["last_error"].startswith("NewConnectionError: ")
    assert failed[0]["last_error"].endswith("(gave up after 6 attempts)")


def test_two_versions_in_quick_succession__no_receiver_ends_on_the_older(stack, receiver):
    paths = fleet(receiver, "quick", 20, canaries=2)
    stack.start_worker()
    stack.write_versions("quick", 700, 800)
    wait_until(all_delivered("quick", 3, 20), timeout=60, what="version 3 everywhere")
    assert_applied_once_each(receiver, paths, "quick", newest=3)
    for path in paths:
        arrivals = [r.version for r in receiver.received if r.path == path]
        assert arrivals == sorted(arrivals), (path, arrivals)
    older = Rollout.objects.get(profile__tenant__slug="quick", version__number=2)
    assert older.status == RolloutStatus.SUPERSEDED
    assert (
        not targets_of("quick", 2)
        .filter(status__in=(TargetStatus.PENDING, TargetStatus.DELIVERING))
        .exists()
    )


def test_pull_deployments__delivered_by_fetching_and_acking_through_the_web_process(stack):
    tenant = tenant_create(slug="pull", name="Pull")
    profile_create(tenant=tenant)
    tokens = {}
    for slug, canary in (("p-canary", True), ("p-one", False), ("p-two", False)):
        deployment = deployment_create(tenant=tenant, slug=slug, is_canary=canary)
        tokens[slug] = deployment_token_issue(deployment=deployment)[1]
    web = stack.start_web()
    stack.start_worker()
    stack.write_versions("pull", 700)
    wait_until(lambda: targets_of("pull", 2).count() == 3, timeout=30, what="the plan")

    def call(slug: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(  # noqa: S310 (the loopback web process)
            web.url(path),
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {tokens[slug]}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    assert call("p-canary", "/api/v1/config")["version"] == 2
    canary = targets_of("pull", 2).filter(deployment__slug="p-canary")
    wait_until(
        lambda: canary.filter(status=TargetStatus.DELIVERED).exists(),
        timeout=30,
        what="the canary's fetch to be recorded",
    )
    for slug in ("p-one", "p-two"):
        call(slug, "/api/v1/config/ack", {"version": 2})
    rollout = Rollout.objects.get(profile__tenant__slug="pull", version__number=2)
    wait_until(
        lambda: Rollout.objects.get(pk=rollout.pk).status == RolloutStatus.COMPLETED,
        timeout=30,
        what="the rollout to complete",
    )
    acked = dict(targets_of("pull", 2).values_list("deployment__slug", "acked_version"))
    assert acked == {"p-canary": None, "p-one": 2, "p-two": 2}
