"""`make bench-rollout`: how fast a new version reaches 500 push deployments.

One asyncio HTTP receiver stands in for 500 deployments (one path each, five of them
canaries); one Celery worker with 2 worker processes delivers. The time is from the version's
commit until the last of the 500 targets is delivered, both as the database recorded them.
Target: under 10 seconds on the 2-core machine. Runs only with REDLINE_BENCH=1.
"""

import os
import time

import pytest
from django.db.models import Max

from tenants.models import Deployment, Tenant
from tests.fault.processes import RedisServer, Worker, app_environment, wait_until, write_versions
from tests.webhook_receiver import WebhookReceiver
from toggles.models import ProfileVersion, RolloutTarget, TargetStatus
from toggles.services import profile_create

DEPLOYMENTS = 500
CANARIES = 5
TARGET_SECONDS = 10.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("REDLINE_BENCH"), reason="set REDLINE_BENCH=1"),
]


def test_rollout_to_500_push_deployments(tmp_path, catalog):
    receiver = WebhookReceiver().start()
    redis_server = RedisServer(tmp_path).start()
    worker = None
    try:
        tenant = Tenant.objects.create(slug="bench", name="Bench")
        profile_create(tenant=tenant)
        Deployment.objects.bulk_create(
            Deployment(
                tenant=tenant,
                slug=f"d-{number:03d}",
                webhook_url=receiver.url(f"d-{number:03d}"),
                is_canary=number < CANARIES,
            )
            for number in range(DEPLOYMENTS)
        )
        env = app_environment(redis_server.url())
        worker = Worker(env, tmp_path / "worker.log", concurrency=2, beat=False).start()
        worker.wait_ready()

        write_versions(env, tenant="bench", limits=[700])
        targets = RolloutTarget.objects.filter(rollout__version__number=2)
        started = time.monotonic()
        wait_until(
            lambda: targets.filter(status=TargetStatus.DELIVERED).count() == DEPLOYMENTS,
            timeout=120,
            interval=0.2,
            what=f"{DEPLOYMENTS} deliveries",
        )
        waited = time.monotonic() - started
        applied = ProfileVersion.objects.get(profile__tenant=tenant, number=2).created_at
        last = targets.aggregate(last=Max("settled_at"))["last"]
        seconds = (last - applied).total_seconds()
    finally:
        if worker:
            worker.stop()
        redis_server.stop()
        receiver.stop()

    assert sorted(receiver.applied) == sorted(f"d-{n:03d}" for n in range(DEPLOYMENTS))
    assert all(versions == [2] for versions in receiver.applied.values())
    rate = DEPLOYMENTS / seconds
    print(
        f"\nrollout bench: {DEPLOYMENTS} push deployments ({CANARIES} canaries), "
        f"1 worker x 2 processes: {seconds:.2f} s from apply to the last delivery, "
        f"{rate:.0f} deliveries/s (observed by polling: {waited:.1f} s; "
        f"{len(receiver.received)} requests)"
    )
    assert seconds < TARGET_SECONDS, f"{seconds:.1f} s is over the {TARGET_SECONDS:.0f} s target"
