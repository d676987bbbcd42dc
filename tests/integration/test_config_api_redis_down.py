"""With Redis stopped, the config API keeps answering from PostgreSQL and says so.

The test runs a Redis server of its own on a free port, so stopping it disturbs no one else.
"""

import logging
import shutil
import socket
import subprocess
import time

import pytest
import redis

from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.models import Profile, VersionKind
from toggles.services import profile_version_create

pytestmark = pytest.mark.slow

fresh_serving = support.fresh_serving


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process = None

    def start(self):
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command line)
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def own_redis(settings, tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    shared = settings.CACHES
    settings.CACHES = {
        "default": {**shared["default"], "LOCATION": f"redis://127.0.0.1:{server.port}/0"}
    }
    yield server
    settings.CACHES = shared
    if server.process.poll() is None:
        server.stop()


@pytest.fixture
def token(demo):
    return demo.new_tokens["demo/analyst-unclass"]


def test_redis_stopped__config_served_from_postgres__and_back_to_memory_when_it_returns(
    client,
    token,
    demo,
    own_redis,
    caplog,
    django_assert_num_queries,
    django_capture_on_commit_callbacks,
):
    caplog.set_level(logging.WARNING, logger="toggles.serving")
    before = client.get("/api/v1/config", **bearer(token))
    own_redis.stop()

    with django_assert_num_queries(1):  # the token's binding, with its current version
        during = client.get("/api/v1/config", **bearer(token))

    assert during.status_code == 200
    assert during.content == before.content
    assert [r.getMessage() for r in caplog.records if "PostgreSQL" in r.getMessage()] == [
        "Redis cannot be reached (Error 111 connecting to 127.0.0.1:"
        f"{own_redis.port}. Connection refused.): config is served from PostgreSQL until it is"
    ]

    with django_capture_on_commit_callbacks(execute=True):
        profile_version_create(
            profile=Profile.objects.get(tenant=demo.tenant, name="default"),
            changes={"usage.max_agent_steps": 10},
            actor=None,
            reason="written while Redis is down",
            kind=VersionKind.TIGHTENING,
        )
    with django_assert_num_queries(2):  # the binding, then the new version's values
        newer = client.get("/api/v1/config", **bearer(token))
    with django_assert_num_queries(1):
        again = client.get("/api/v1/config", **bearer(token))

    assert newer.json()["version"] == again.json()["version"] == 2
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "down": ["redis"],
        "checks": {"postgres": True, "redis": False},
    }

    own_redis.start()
    back = client.get("/api/v1/config", **bearer(token))
    with django_assert_num_queries(0):
        cached = client.get("/api/v1/config", **bearer(token))

    assert back.content == cached.content == newer.content
    assert "Redis answers again: config is served from memory" in caplog.messages


def test_redis_stopped__ofrep_answers__and_rate_limit_counts_in_process(
    client, token, own_redis, settings
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"deployment": "2/min"},
    }
    own_redis.stop()

    statuses = [
        client.post(
            "/ofrep/v1/evaluate/flags/usage.max_agent_steps",
            data="{}",
            content_type="application/json",
            **bearer(token),
        ).status_code
        for _ in range(3)
    ]

    assert statuses == [200, 200, 429]
